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
DIR=$(mktemp -d /tmp/binlake-bench.XXXXXX)
trap 'bash deploy/local/mariadb.sh stop "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT

cargo build --release --quiet
bash deploy/local/mariadb.sh start "$DIR" "$PORT" >/dev/null
SQL="mariadb --no-defaults --socket=$DIR/mysqld.sock -uroot -proot"
$SQL -e "CREATE DATABASE bench; CREATE TABLE bench.t (
  id BIGINT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(32), d DECIMAL(12,2), e DATETIME(6),
  f DOUBLE, g VARCHAR(64), h TINYINT, i DATE)"
START=$($SQL -N -e "SHOW MASTER STATUS" | awk '{print $1":"$2}')
# The sequence engine generates the rows server-side.
for ((k = 0; k < ROWS; k += BATCH)); do
  echo "INSERT INTO bench.t SELECT seq, seq % 1000, seq * 7, CONCAT('name-', seq), seq / 100,
    '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq / 3, REPEAT('x', 40), seq % 100,
    '2024-01-01' + INTERVAL (seq % 365) DAY FROM seq_$((k + 1))_to_$((k + BATCH));"
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
