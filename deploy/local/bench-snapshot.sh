#!/usr/bin/env bash
# Owns: the snapshot benchmark of BENCHMARKS.md. Starts a private MariaDB, loads ROWS rows
# into a 10-column table, then times `binlake tail --snapshot --format none` until it has
# emitted them all (three runs), reporting rows/s and peak RSS.
# Usage: deploy/local/bench-snapshot.sh [ROWS=1000000] [PARALLELISM=4] [CHUNK=8192] [PORT=33097]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROWS=${1:-1000000}
PAR=${2:-4}
CHUNK=${3:-8192}
PORT=${4:-33097}
source deploy/local/bench-common.sh
bench_start "$PORT"
{ echo "SET sql_log_bin = 0;"; bench_insert 1 "$ROWS"; echo "ANALYZE TABLE bench.t;"; } |
  $SQL bench >/dev/null
cat > "$DIR/bench.toml" <<TOML
[mysql]
port = $PORT
password = "binlake"
[snapshot]
parallelism = $PAR
chunk_size = $CHUNK
TOML
for run in 1 2 3; do
  /usr/bin/time -f "peak_rss_kb=%M" ./target/release/binlake --log warn tail \
    --config "$DIR/bench.toml" --snapshot --limit "$ROWS" --format none
done
