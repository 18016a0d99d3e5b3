#!/usr/bin/env bash
# Owns: installing MariaDB from Debian packages and running private, throw-away
# MariaDB instances (own data dir, socket and port on 127.0.0.1) for local
# development and tests. No system service is used or touched.
#
#   mariadb.sh install
#       apt-get install mariadb-server + mariadb-client unless mariadbd is on PATH.
#   mariadb.sh start DIR PORT [extra mariadbd args...]
#       Initialise DIR/data if needed, start mariadbd in the background with
#       CDC-ready binlog settings, wait until it answers, then ensure accounts:
#         root / root     (socket and TCP 127.0.0.1, all privileges)
#         binlake / binlake  (the CDC privileges only)
#       Extra args come last, so they override the defaults
#       (e.g. --binlog-format=STATEMENT).
#       If BINLAKE_OWNER_PID is set, a watcher stops the instance once that
#       process is gone (so killed test runs do not leak servers).
#   mariadb.sh stop DIR
#       SIGTERM the instance from DIR/mysqld.pid, SIGKILL after 30 s.
set -euo pipefail

ROOT_PASSWORD=root
CDC_USER=binlake
CDC_PASSWORD=binlake
# REPLICATION CLIENT is an alias of BINLOG MONITOR since MariaDB 10.5; SHOW GRANTS
# prints BINLOG MONITOR only.
CDC_PRIVILEGES="SELECT, RELOAD, LOCK TABLES, SHOW VIEW, REPLICATION SLAVE, BINLOG MONITOR"

die() { echo "mariadb.sh: $*" >&2; exit 1; }

cmd_install() {
    # /usr/sbin is not on a non-root PATH on Debian.
    if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; then
        return 0
    fi
    local pkgs=(mariadb-server mariadb-client)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # This image has an apt hook that deletes downloaded .debs between dpkg runs,
    # so dpkg can fail with "archive missing": repair and try again.
    local attempt
    for attempt in 1 2 3; do
        if apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; then
            break
        fi
        [ "$attempt" = 3 ] && die "apt-get install ${pkgs[*]} failed"
        apt-get -f install -y -qq >/dev/null || true
    done
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || die "mariadbd missing after install"
}

# Run SQL on stdin as root over the instance socket. Works both before the root
# password is set (fresh instance) and after (restarted instance).
# Extra arguments go to the mariadb client.
root_sql() {
    local sock=$1/mysqld.sock sql
    shift
    sql=$(cat)
    mariadb --no-defaults --socket="$sock" -uroot -p"$ROOT_PASSWORD" \
        --default-character-set=utf8mb4 "$@" -e "$sql" 2>/dev/null && return 0
    mariadb --no-defaults --socket="$sock" -uroot \
        --default-character-set=utf8mb4 "$@" -e "$sql"
}

# True if the process exists and is not a zombie (an unreaped zombie would
# otherwise make stop wait for the full timeout).
alive() {
    kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]
}

is_running() {
    local pid
    [ -f "$1/mysqld.pid" ] && pid=$(cat "$1/mysqld.pid" 2>/dev/null) && [ -n "$pid" ] &&
        alive "$pid"
}

cmd_start() {
    [ $# -ge 2 ] || die "usage: start DIR PORT [extra mariadbd args...]"
    local dir=$1 port=$2
    shift 2
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)

    if is_running "$dir"; then
        die "an instance is already running in $dir (pid $(cat "$dir/mysqld.pid"))"
    fi

    # A private tmpdir: bootstraps running in parallel with the shared /tmp
    # collide on their temporary table files ("Error on delete of
    # '/tmp/#sql-temptable-...'") and fail now and then.
    mkdir -p "$dir/tmp"
    if [ ! -d "$dir/data/mysql" ]; then
        mariadb-install-db --no-defaults --user=root --datadir="$dir/data" \
            --tmpdir="$dir/tmp" \
            --auth-root-authentication-method=normal --skip-test-db \
            >"$dir/install-db.log" 2>&1 ||
            { cat "$dir/install-db.log" >&2; die "mariadb-install-db failed"; }
    fi

    rm -f "$dir/mysqld.pid"
    # Settings a CDC reader needs (ROW + FULL image + FULL metadata, GTIDs),
    # plus test-speed settings (no fsync per commit). Stdio is fully detached:
    # callers that capture our output (e.g. Rust's Command::output) would
    # otherwise wait for the server to exit.
    /usr/sbin/mariadbd --no-defaults --user=root \
        --datadir="$dir/data" --tmpdir="$dir/tmp" \
        --port="$port" --bind-address=127.0.0.1 \
        --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
        --log-error="$dir/error.log" \
        --server-id=1 --log-bin="$dir/data/mysql-bin" \
        --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
        --binlog-checksum=CRC32 --gtid-strict-mode=1 --log-slave-updates=1 \
        --character-set-server=utf8mb4 --skip-name-resolve \
        --max-allowed-packet=256M \
        --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 \
        "$@" </dev/null >>"$dir/mariadbd.out" 2>&1 &
    local server_pid=$!

    local waited=0
    until mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot \
        --connect-timeout=2 ping >/dev/null 2>&1; do
        if ! alive "$server_pid" || [ "$waited" -ge 600 ]; then
            echo "mariadb.sh: mariadbd in $dir did not come up; error log tail:" >&2
            tail -n 30 "$dir/error.log" "$dir/mariadbd.out" >&2 2>/dev/null || true
            kill -KILL "$server_pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done

    # Accounts. skip-name-resolve: TCP clients from 127.0.0.1 match host
    # '127.0.0.1' or '%', never 'localhost' (that is the socket).
    # mariadb-install-db --auth-root-authentication-method=normal creates root at
    # localhost, 127.0.0.1, ::1 and the machine's host name, all without a
    # password. Give each the password; drop the host-name one, which
    # --skip-name-resolve ignores anyway (ALTER USER on it fails with 1396).
    local hosts host alter=""
    hosts=$(root_sql "$dir" --batch --skip-column-names \
        <<<"SELECT Host FROM mysql.user WHERE User = 'root'")
    for host in $hosts; do
        if [ "$host" = localhost ] || [[ "$host" =~ ^[0-9a-fA-F.:%]+$ ]]; then
            alter+="ALTER USER root@'$host' IDENTIFIED BY '$ROOT_PASSWORD';"$'\n'
        else
            alter+="DROP USER root@'$host';"$'\n'
        fi
    done
    # sql_log_bin=0: keep account changes out of the binlog, so a fresh instance
    # starts with an empty GTID position and no events a CDC test must skip.
    root_sql "$dir" <<SQL
SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS root@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;
$alter
CREATE USER IF NOT EXISTS '$CDC_USER'@'%' IDENTIFIED BY '$CDC_PASSWORD';
GRANT $CDC_PRIVILEGES ON *.* TO '$CDC_USER'@'%';
SQL

    if [ -n "${BINLAKE_OWNER_PID:-}" ]; then
        # Stop the server when the owning process disappears without cleaning up.
        local self
        self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
        (
            while alive "$BINLAKE_OWNER_PID" && alive "$server_pid"; do
                sleep 1
            done
            alive "$server_pid" && bash "$self" stop "$dir"
        ) </dev/null >/dev/null 2>&1 &
        disown
    fi
}

cmd_stop() {
    [ $# -eq 1 ] || die "usage: stop DIR"
    local dir=$1 pid
    [ -f "$dir/mysqld.pid" ] || return 0
    pid=$(cat "$dir/mysqld.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || { rm -f "$dir/mysqld.pid"; return 0; }
    local waited=0
    while alive "$pid"; do
        if [ "$waited" -ge 300 ]; then
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$dir/mysqld.pid"
}

case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) die "usage: $0 install | start DIR PORT [mariadbd args...] | stop DIR" ;;
esac
