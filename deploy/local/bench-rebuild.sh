#!/usr/bin/env bash
# Owns: the `binlake rebuild` benchmark of BENCHMARKS.md. Starts a private MariaDB, Apache Kafka
# (one KRaft node) and `binlake registry`; fills the 10-column table bench.t with ROWS
# rows and lets `binlake run` put them into the topic bench.bench.t; then times `binlake
# rebuild --create` of that topic into a second database on the same server, and reports
# rows/s with the CPU seconds of mysqld (the server's share) and of binlake over the rebuild.
# With PTY=1 the rebuild runs on a pseudo-terminal (`script`), to show its progress bar.
# Usage: [PTY=1] deploy/local/bench-rebuild.sh [ROWS=1000000] [WRITERS=4] [PORT=33130]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROWS=${1:-1000000}
WRITERS=${2:-4}
PORT=${3:-33130}
KPORT=$((PORT + 1))
RPORT=$((PORT + 2))
source deploy/local/bench-common.sh
bench_start "$PORT"
bench_kafka "$KPORT" "$RPORT"

bench_topic "$ROWS" "$KPORT"

# CPU seconds (user + system) of a process so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
MYSQLD=$(cat "$DIR/mysqld.pid")
M0=$(cpu "$MYSQLD")
T0=$(date +%s.%N)
CMD=(/usr/bin/time -f "binlake_peak_rss_kb=%M binlake_cpu_seconds=%U+%S"
  ./target/release/binlake --log warn rebuild --config "$DIR/bench.toml" --table bench.t
  --into "mysql://root:root@127.0.0.1:$PORT/restore" --create --writers "$WRITERS")
if [[ -n "${PTY:-}" ]]; then
  script -qefc "$(printf '%q ' "${CMD[@]}")" /dev/null
else
  "${CMD[@]}"
fi
T1=$(date +%s.%N)
M1=$(cpu "$MYSQLD")
python3 -c "w=$T1-$T0; m=$M1-$M0; print(f'rows=$ROWS writers=$WRITERS wall_seconds={w:.2f} rows_per_sec={$ROWS/w:.0f} mysqld_cpu_seconds={m:.2f} mysqld_share_of_wall={m/w:.0%}')"
N=$($SQL -N -e "SELECT COUNT(*) FROM restore.t")
[[ "$N" == "$ROWS" ]] || { echo "restore.t has $N rows, expected $ROWS" >&2; exit 1; }
A=$($SQL -N -e "CHECKSUM TABLE bench.t" | awk '{print $2}')
B=$($SQL -N -e "CHECKSUM TABLE restore.t" | awk '{print $2}')
[[ "$A" == "$B" ]] || { echo "CHECKSUM TABLE differs: $A vs $B" >&2; exit 1; }
echo "checksum equal: $A"

# The server alone: the same rows as mysqldump's multi-row INSERTs, loaded by the mariadb
# client into an empty copy of the table (no Kafka, no decoding).
$SQL -e "CREATE TABLE restore.t_load LIKE bench.t"
mariadb-dump --no-defaults --socket="$DIR/mysqld.sock" -uroot -proot --no-create-info \
  --skip-triggers --compact bench t | sed 's/INSERT INTO `t`/INSERT INTO `t_load`/' >"$DIR/t.sql"
M0=$(cpu "$MYSQLD")
T0=$(date +%s.%N)
$SQL restore <"$DIR/t.sql"
T1=$(date +%s.%N)
M1=$(cpu "$MYSQLD")
python3 -c "w=$T1-$T0; m=$M1-$M0; print(f'server_alone: mysqldump file of $ROWS rows loaded in {w:.2f} s ({$ROWS/w:.0f} rows/s), mysqld_cpu_seconds={m:.2f}')"
