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
DIR=$(mktemp -d /tmp/binlake-bench.XXXXXX)
trap 'bash deploy/local/mariadb.sh stop "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT

cargo build --release --quiet
bash deploy/local/mariadb.sh start "$DIR" "$PORT" >/dev/null
SQL="mariadb --no-defaults --socket=$DIR/mysqld.sock -uroot -proot"
$SQL -e "CREATE DATABASE bench; CREATE TABLE bench.t (
  id BIGINT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(32), d DECIMAL(12,2), e DATETIME(6),
  f DOUBLE, g VARCHAR(64), h TINYINT, i DATE)"
$SQL bench -e "SET sql_log_bin = 0; INSERT INTO bench.t SELECT seq, seq % 1000, seq * 7,
  CONCAT('name-', seq), seq / 100, '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq / 3,
  REPEAT('x', 40), seq % 100, '2024-01-01' + INTERVAL (seq % 365) DAY FROM seq_1_to_$ROWS;
  ANALYZE TABLE bench.t;" >/dev/null
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
