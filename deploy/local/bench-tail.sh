#!/usr/bin/env bash
# Owns: the binlog-decode benchmark of BENCHMARKS.md. Starts a private MariaDB, writes
# ROWS row changes of a 10-column table into its binlog (inserts of BATCH rows per statement
# and transaction), then times `binlake tail --format none` over them three times and reports
# rows/s and peak RSS.
# Usage: deploy/local/bench-tail.sh [ROWS=1000000] [BATCH=1000] [PORT=33099]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROWS=${1:-1000000}
BATCH=${2:-1000}
PORT=${3:-33099}
source deploy/local/bench-common.sh
bench_start "$PORT"
START=$($SQL -N -e "SHOW MASTER STATUS" | awk '{print $1":"$2}')
for ((k = 0; k < ROWS; k += BATCH)); do
  bench_insert $((k + 1)) $((k + BATCH))
done | $SQL bench
cat > "$DIR/bench.toml" <<TOML
[mysql]
port = $PORT
password = "binlake"
TOML
BYTES=$($SQL -N -e "SHOW BINARY LOGS" | awk '{s+=$2} END {print s}')
echo "binlog bytes: $BYTES, start: $START"
for run in 1 2 3; do
  /usr/bin/time -f "peak_rss_kb=%M" ./target/release/binlake --log warn tail \
    --config "$DIR/bench.toml" --from "$START" --limit "$ROWS" --format none
done
