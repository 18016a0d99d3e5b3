#!/usr/bin/env bash
# Owns: installing Apicurio Registry 3 from Maven Central and running private, throw-away
# registry instances for local development and tests: in-memory storage (Apicurio's default
# SQL storage on an H2 in-memory database, so no broker or database is needed; everything
# is gone when the process ends), HTTP and management ports on 127.0.0.1 only. The
# Confluent-compatible API is at http://127.0.0.1:PORT/apis/ccompat/v7. No Docker, no
# system service.
#
#   apicurio.sh install
#       Idempotent; reuses what exists. Fetches the packaged Quarkus app (the `all` tar.gz
#       attached to io.apicurio:apicurio-registry-app:$APICURIO_VERSION; the plain jar does
#       not run) with mvn through deploy/local/apicurio/pom.xml and unpacks it into
#       $APICURIO_CACHE/quarkus-app. Installs maven and a JDK from Debian only if missing.
#   apicurio.sh start DIR PORT [extra JVM args...]
#       Starts the registry in the background (pid in DIR/apicurio.pid, output in
#       DIR/apicurio.log), waits until GET /apis/ccompat/v7/subjects answers 200, checks
#       that the JVM listens on 127.0.0.1 only. On failure or timeout: log tail, non-zero.
#       Extra args come last, so they override the defaults (e.g.
#       -Dapicurio.rules.global.compatibility=NONE).
#       If BINLAKE_OWNER_PID is set, a watcher stops the instance once that process is gone.
#   apicurio.sh stop DIR
#       SIGTERM the instance from DIR/apicurio.pid, SIGKILL after 20 s.
#
# Defaults passed at start, chosen to behave like a Confluent Schema Registry:
#   -Dapicurio.rules.global.compatibility=BACKWARD   (Apicurio's own default is NONE;
#       Confluent's is BACKWARD). A global config PUT through /config overrides it.
#   -Dapicurio.ccompat.use-canonical-hash=true   lookups (POST /subjects/{s}) and
#       re-registration under the same subject match the Avro schema by canonical form
#       (3.3.3 already did so without it in every case tried). Note what no setting
#       changes: ids are content ids keyed by the raw text, so the same schema with other
#       whitespace or key order registered under a *different* subject gets a new id
#       (Confluent would reuse the id). Send byte-identical schema text.
#   -Dapicurio.ccompat.legacy-id-mode.enabled=false   ids are content ids, shared by every
#       subject that registers the same schema (Confluent semantics; true = one id per
#       version).
#   -Dapicurio.ccompat.max-subjects=100000   GET /subjects is capped at 1000 by default.
#
# Environment (defaults in brackets):
#   APICURIO_VERSION [3.3.3]   3.3.x needs Java 21+ (3.0/3.1: 17+, untested). Only 3.3.3 resolves with
#       mvn here: the 3.0.9 and 3.3.2 tarballs are on Maven Central, but their parent pom
#       io.apicurio:apicurio-registry is not, so mvn cannot read the artifact descriptor.
#   APICURIO_CACHE [~/.cache/binlake/apicurio-$APICURIO_VERSION]
#   APICURIO_JAVA  the java binary to run the registry with [first Java >= the version's
#                  minimum among $JAVA_HOME, /usr/lib/jvm/*, PATH]
#   APICURIO_HEAP [256m] -Xmx   APICURIO_START_TIMEOUT [120] seconds
#   APICURIO_MANAGEMENT_PORT [0 = any free port; always on 127.0.0.1]
# (Not BINLAKE_*: those names are binlake's configuration overrides.)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
APICURIO_VERSION=${APICURIO_VERSION:-3.3.3}
APICURIO_CACHE=${APICURIO_CACHE:-$HOME/.cache/binlake/apicurio-$APICURIO_VERSION}
APP_DIR="$APICURIO_CACHE/quarkus-app"

die() { echo "apicurio.sh: $*" >&2; exit 1; }

# Minimum Java major version of the configured release (3.2+ is built for Java 21).
min_java() {
    case "$APICURIO_VERSION" in
        3.0.* | 3.1.*) echo 17 ;;
        *) echo 21 ;;
    esac
}

java_major() {
    local v
    v=$("$1" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
    [ -n "$v" ] || { echo 0; return; }
    case "$v" in
        1.*) v=${v#1.}; echo "${v%%.*}" ;;
        *) v=${v%%[.+-]*}; echo "$v" ;;
    esac
}

# Prints the java binary to run the registry with, or nothing.
find_java() {
    local need j
    need=$(min_java)
    if [ -n "${APICURIO_JAVA:-}" ]; then
        echo "$APICURIO_JAVA"
        return
    fi
    for j in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} /usr/lib/jvm/*/bin/java \
        "$(command -v java 2>/dev/null || true)"; do
        [ -n "$j" ] && [ -x "$j" ] || continue
        if [ "$(java_major "$j")" -ge "$need" ]; then
            echo "$j"
            return
        fi
    done
}

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # Same repair-and-retry as mariadb.sh: an apt hook here can delete downloaded .debs.
    local attempt
    for attempt in 1 2 3; do
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null && return 0
        [ "$attempt" = 3 ] && die "apt-get install $* failed"
        apt-get -f install -y -qq >/dev/null || true
    done
}

install_tools() {
    local pkgs=()
    command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
    if [ -z "$(find_java)" ]; then
        # Debian bookworm ships 17 only; newer Debian releases ship 21 and later.
        local need cand found=""
        need=$(min_java)
        apt-get update -qq >/dev/null
        for cand in 25 21 17; do
            [ "$cand" -ge "$need" ] || continue
            if [ -n "$(apt-cache policy "openjdk-$cand-jre-headless" 2>/dev/null |
                sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]; then
                found="openjdk-$cand-jre-headless"
                break
            fi
        done
        [ -n "$found" ] || die "Apicurio $APICURIO_VERSION needs Java $need+, none found" \
            "(set APICURIO_JAVA) and Debian has no openjdk-$need package here"
        pkgs+=("$found")
    fi
    if [ ${#pkgs[@]} -gt 0 ]; then
        echo "apt-get install ${pkgs[*]}"
        apt_install "${pkgs[@]}"
    fi
    [ -n "$(find_java)" ] || die "no Java >= $(min_java) after install"
}

cmd_install() {
    install_tools
    if [ -f "$APP_DIR/quarkus-run.jar" ]; then
        echo "apicurio $APICURIO_VERSION: $APP_DIR (reused); java: $(find_java)"
        return 0
    fi
    mkdir -p "$APICURIO_CACHE"
    local tgz="$APICURIO_CACHE/apicurio-registry-app-all.tar.gz"
    echo "apicurio $APICURIO_VERSION: fetching io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all"
    # The copy comes from ~/.m2 when it is already there.
    mvn -q -B -f "$HERE/apicurio/pom.xml" validate \
        -Dapicurio.version="$APICURIO_VERSION" -Dapicurio.out="$APICURIO_CACHE" ||
        die "mvn could not fetch io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all"
    rm -rf "$APP_DIR.tmp"
    mkdir -p "$APP_DIR.tmp"
    tar -xzf "$tgz" -C "$APP_DIR.tmp"
    [ -f "$APP_DIR.tmp/quarkus-run.jar" ] || die "no quarkus-run.jar in $tgz"
    rm -rf "$APP_DIR"
    mv "$APP_DIR.tmp" "$APP_DIR"
    rm -f "$tgz" # ~/.m2 keeps a copy
    echo "apicurio $APICURIO_VERSION: $APP_DIR; java: $(find_java)"
}

# True if the process exists and is not a zombie.
alive() {
    kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]
}

is_running() {
    local pid
    [ -f "$1/apicurio.pid" ] && pid=$(cat "$1/apicurio.pid" 2>/dev/null) && [ -n "$pid" ] &&
        alive "$pid"
}

# Local addresses of the TCP/UDP sockets the process listens on, one per line.
listen_addrs() {
    ss -Hltnup 2>/dev/null | grep -F "pid=$1," | awk '{print $5}'
}

cmd_start() {
    [ $# -ge 2 ] || die "usage: start DIR PORT [extra JVM args...]"
    local dir=$1 port=$2
    shift 2
    [ -f "$APP_DIR/quarkus-run.jar" ] || die "not installed: run $SELF install"
    local java
    java=$(find_java)
    [ -n "$java" ] || die "no Java >= $(min_java) found (set APICURIO_JAVA)"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if is_running "$dir"; then
        die "an instance is already running in $dir (pid $(cat "$dir/apicurio.pid"))"
    fi
    rm -f "$dir/apicurio.pid"
    mkdir -p "$dir/tmp"
    # Otherwise the readiness poll below could be answered by whatever holds the port.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "127.0.0.1:$port is already in use"
    fi

    local started=$SECONDS
    # Stdio fully detached: callers that capture our output would otherwise wait for the
    # JVM to exit.
    "$java" -Xmx"${APICURIO_HEAP:-256m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Djava.io.tmpdir="$dir/tmp" -Dvertx.cacheDirBase="$dir/tmp/vertx-cache" \
        -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
        -Dquarkus.management.host=127.0.0.1 \
        -Dquarkus.management.port="${APICURIO_MANAGEMENT_PORT:-0}" \
        -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
        -Dapicurio.datasource.jdbc.initial-size=2 -Dapicurio.datasource.jdbc.min-size=2 \
        -Dapicurio.datasource.jdbc.max-size=20 \
        -Dapicurio.storage.snapshot.location="$dir/tmp" -Dapicurio.import.work-dir="$dir/tmp" \
        -Dapicurio.rules.global.compatibility=BACKWARD \
        -Dapicurio.ccompat.use-canonical-hash=true \
        -Dapicurio.ccompat.legacy-id-mode.enabled=false \
        -Dapicurio.ccompat.max-subjects=100000 \
        "$@" -jar "$APP_DIR/quarkus-run.jar" </dev/null >>"$dir/apicurio.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/apicurio.pid"

    local timeout=${APICURIO_START_TIMEOUT:-120} code=""
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            "http://127.0.0.1:$port/apis/ccompat/v7/subjects" 2>/dev/null) || true
        [ "$code" = 200 ] && alive "$pid" && break
        if ! alive "$pid" || [ $((SECONDS - started)) -ge "$timeout" ]; then
            echo "apicurio.sh: registry in $dir did not come up (last HTTP status ${code:-none});" \
                "log tail:" >&2
            tail -n 40 "$dir/apicurio.log" >&2 || true
            kill -KILL "$pid" 2>/dev/null || true
            rm -f "$dir/apicurio.pid"
            exit 1
        fi
        sleep 0.2
    done

    # Invariant: nothing but 127.0.0.1 (IPv4-mapped ::ffff:127.0.0.1 is the same socket).
    if command -v ss >/dev/null 2>&1; then
        local addr bad=""
        for addr in $(listen_addrs "$pid"); do
            case "$addr" in
                127.0.0.1:* | "[::ffff:127.0.0.1]:"*) ;;
                *) bad+=" $addr" ;;
            esac
        done
        if [ -n "$bad" ]; then
            kill -KILL "$pid" 2>/dev/null || true
            rm -f "$dir/apicurio.pid"
            die "registry listened on non-loopback addresses:$bad (killed)"
        fi
    fi

    if [ -n "${BINLAKE_OWNER_PID:-}" ]; then
        (
            while alive "$BINLAKE_OWNER_PID" && alive "$pid"; do
                sleep 1
            done
            alive "$pid" && bash "$SELF" stop "$dir"
        ) </dev/null >/dev/null 2>&1 &
        disown
    fi
    echo "apicurio $APICURIO_VERSION: pid $pid, http://127.0.0.1:$port/apis/ccompat/v7" \
        "(up in $((SECONDS - started)) s)"
}

cmd_stop() {
    [ $# -eq 1 ] || die "usage: stop DIR"
    local dir=$1 pid
    [ -f "$dir/apicurio.pid" ] || return 0
    pid=$(cat "$dir/apicurio.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || { rm -f "$dir/apicurio.pid"; return 0; }
    local waited=0
    while alive "$pid"; do
        if [ "$waited" -ge 200 ]; then
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$dir/apicurio.pid"
}

case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) die "usage: $0 install | start DIR PORT [extra JVM args...] | stop DIR" ;;
esac
