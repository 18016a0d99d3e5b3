#!/usr/bin/env bash
# Owns: the static checks of the deployment files under deploy/ (docker-compose.yml, the
# systemd units, the Kubernetes manifests). Run by tests/deploy_files.rs; the binlake TOML
# files themselves are loaded by that test with binlake's own config loader.
# Nothing here starts a container, a unit or a pod: see deploy/README.md for what that leaves
# unchecked.
#
#   check.sh install
#       apt-get install what the checks need, when missing: Debian's docker-compose (1.29.2,
#       validates a Compose file without a Docker engine) unless `docker compose` works,
#       systemd (for systemd-analyze); PyYAML from PyPI.
#   check.sh [--binary PATH]
#       1. `docker compose config -q` (or `docker-compose config -q`) on docker-compose.yml;
#       2. `systemd-analyze verify` on deploy/systemd/*.service, failing on any warning too
#          (verify exits 0 on unknown keys), and `systemd-analyze security --offline` with
#          an exposure threshold of 2.0;
#       3. every YAML document in deploy/k8s parses, has apiVersion, kind and metadata.name,
#          and kustomization.yaml lists exactly the other files.
#       verify needs each ExecStart binary to exist and be executable. The units name
#       /usr/local/bin/binlake; with --binary PATH (a built binlake, e.g.
#       target/debug/binlake) they are verified as copies whose ExecStart names PATH instead,
#       nothing else changed. Without it /usr/local/bin/binlake must exist.
#       A missing tool is an error, never a skipped check. Exit 0 only when all pass.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UNIT_BINARY=/usr/local/bin/binlake

die() { echo "check.sh: $*" >&2; exit 1; }

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose "$@"
    elif command -v docker-compose >/dev/null 2>&1; then
        docker-compose "$@"
    else
        die "neither \`docker compose\` nor docker-compose found: run \`bash deploy/check.sh install\`"
    fi
}

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # Some images delete downloaded .debs between dpkg runs (see deploy/local/mariadb.sh):
    # repair and try again.
    local attempt
    for attempt in 1 2 3; do
        if apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
            return 0
        fi
        [ "$attempt" = 3 ] && die "apt-get install $* failed"
        apt-get -f install -y -qq >/dev/null || true
    done
}

cmd_install() {
    local pkgs=()
    if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
        pkgs+=(docker-compose)
    fi
    command -v systemd-analyze >/dev/null 2>&1 || pkgs+=(systemd)
    # PyYAML from PyPI: python3 may not be Debian's (here it is pyenv's), so python3-yaml
    # would not reach it.
    python3 -c 'import yaml' >/dev/null 2>&1 || python3 -m pip install --quiet 'PyYAML==6.0.3'
    [ ${#pkgs[@]} -eq 0 ] && return 0
    apt_install "${pkgs[@]}"
    # Fail now rather than in the test.
    docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 ||
        die "docker-compose missing after install"
    command -v systemd-analyze >/dev/null 2>&1 || die "systemd-analyze missing after install"
    python3 -c 'import yaml' || die "PyYAML missing after install"
}

check_compose() {
    echo "== compose: $(compose version --short 2>/dev/null || compose version | head -n 1)"
    compose -f "$HERE/docker-compose.yml" config -q
    echo "ok   deploy/docker-compose.yml"
}

check_systemd() {
    local binary=$1 dir out unit
    command -v systemd-analyze >/dev/null 2>&1 ||
        die "systemd-analyze not found: run \`bash deploy/check.sh install\`"
    echo "== systemd: $(systemd-analyze --version | head -n 1)"
    dir=$WORK/systemd
    mkdir "$dir"
    if [ -n "$binary" ]; then
        [ -x "$binary" ] || die "--binary $binary is not an executable file"
        binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
        for unit in "$HERE"/systemd/*.service; do
            grep -q "^ExecStart=$UNIT_BINARY " "$unit" ||
                die "${unit#"$HERE"/}: ExecStart does not start with $UNIT_BINARY"
            sed "s#^ExecStart=$UNIT_BINARY #ExecStart=$binary #" "$unit" >"$dir/$(basename "$unit")"
        done
        echo "     (copies with ExecStart=$binary instead of $UNIT_BINARY)"
    else
        [ -x "$UNIT_BINARY" ] ||
            die "$UNIT_BINARY does not exist, and systemd-analyze verify fails on a missing ExecStart binary: pass --binary PATH to a built binlake"
        cp "$HERE"/systemd/*.service "$dir/"
    fi
    for unit in "$dir"/*.service; do
        # verify reports unknown keys and bad values as warnings with exit status 0: any
        # output is a failure.
        if ! out=$(systemd-analyze verify "$unit" 2>&1) || [ -n "$out" ]; then
            printf '%s\n' "$out" >&2
            die "systemd-analyze verify deploy/systemd/$(basename "$unit") failed"
        fi
        # Hardening regression guard: exposure (0-10, lower is better) at most 2.0.
        if ! out=$(systemd-analyze security --offline=yes --threshold=20 "$unit" 2>&1); then
            printf '%s\n' "$out" >&2
            die "deploy/systemd/$(basename "$unit"): exposure above 2.0"
        fi
        echo "ok   deploy/systemd/$(basename "$unit") ($(printf '%s\n' "$out" | grep -o 'exposure level for [^ ]*: [0-9.]*' | sed 's/.*: /exposure /'))"
    done
}

check_k8s() {
    python3 -c 'import yaml' >/dev/null 2>&1 ||
        die "python3 yaml module not found: run \`bash deploy/check.sh install\`"
    echo "== kubernetes manifests (YAML and kustomization only; no cluster, no schema)"
    python3 - "$HERE/k8s" <<'PY'
import os, sys, yaml
root = sys.argv[1]
files = sorted(f for f in os.listdir(root) if f.endswith((".yaml", ".yml")))
bad = []
for f in files:
    with open(os.path.join(root, f)) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    if not docs:
        bad.append(f"{f}: no YAML document")
    for d in docs:
        if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind"):
            bad.append(f"{f}: a document without apiVersion or kind")
        elif d["kind"] != "Kustomization" and not (d.get("metadata") or {}).get("name"):
            bad.append(f"{f}: {d['kind']} without metadata.name")
    if f == "kustomization.yaml":
        listed = set(docs[0].get("resources", []))
        others = set(files) - {f}
        for r in sorted(listed - others):
            bad.append(f"kustomization.yaml lists {r}, which does not exist")
        for r in sorted(others - listed):
            bad.append(f"kustomization.yaml does not list {r}")
if "kustomization.yaml" not in files:
    bad.append("kustomization.yaml missing")
for b in bad:
    print(b, file=sys.stderr)
if bad:
    sys.exit(1)
for f in files:
    print(f"ok   deploy/k8s/{f}")
PY
}

main() {
    local binary=
    case "${1:-}" in
    install)
        cmd_install
        return
        ;;
    --binary)
        [ $# -eq 2 ] || die "usage: check.sh install | check.sh [--binary PATH]"
        binary=$2
        ;;
    "") ;;
    *) die "usage: check.sh install | check.sh [--binary PATH]" ;;
    esac
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    check_compose
    check_systemd "$binary"
    check_k8s
    echo "deploy checks passed"
}

main "$@"
