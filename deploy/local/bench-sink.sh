#!/usr/bin/env bash
# Owns: the `binlake sink` benchmark of BENCHMARKS.md. Starts a private MariaDB, Apache Kafka
# (one KRaft node) and `binlake registry`; fills the topic of the 10-column table bench.t
# with ROWS records through `binlake run`; then times `binlake sink` from its start until every
# record is in a committed Parquet file (windows close at 200,000 records or after 1 s), and reports rows/s and the
# sink's peak RSS, and the same for a plain consumer that only reads the records. LAKE=hdfs://127.0.0.1:9000/bench writes to that HDFS instead of a local
# directory; FORMAT=avro writes Avro.
# Usage: [LAKE=...] [FORMAT=parquet|avro] deploy/local/bench-sink.sh [ROWS=1000000] [PORT=33120]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROWS=${1:-1000000}
PORT=${2:-33120}
KPORT=$((PORT + 1))
RPORT=$((PORT + 2))
source deploy/local/bench-common.sh
bench_start "$PORT"
bench_kafka "$KPORT" "$RPORT"
bench_topic "$ROWS" "$KPORT"

cat >> "$DIR/bench.toml" <<TOML
[sink]
root = "${LAKE:-file://$DIR/lake}"
format = "${FORMAT:-parquet}"
flush_size = 200000
rotate_interval = "1s"
${SINK_EXTRA:-}
TOML
T0=$(date +%s.%N)
/usr/bin/time -f "sink_peak_rss_kb=%M cpu_seconds=%U+%S" ./target/release/binlake --log info \
  sink --config "$DIR/bench.toml" >"$DIR/sink.log" 2>&1 &
SINK=$!
# Done when the committed windows hold every record (the sink logs each commit).
until [[ $(grep -o 'records=[0-9]*' "$DIR/sink.log" | awk -F= '{s+=$2} END {print s+0}') -ge $ROWS ]]; do
  sleep 0.2
done
T1=$(date +%s.%N)
kill -TERM $(pgrep -P $SINK) 2>/dev/null || true
wait $SINK || true
grep sink_peak_rss_kb "$DIR/sink.log" || true
if [[ -n "${SHOW_LOG:-}" ]]; then cut -c12-220 "$DIR/sink.log"; fi
FILES=$(grep -c 'window committed' "$DIR/sink.log")
python3 -c "s=$T1-$T0; print(f'sink_records=$ROWS seconds={s:.3f} per_sec={$ROWS/s:.0f} windows=$FILES')"
# The broker's own bound: a plain librdkafka consumer (Python confluent-kafka, batched)
# reading the same records, doing nothing with them.
/usr/bin/time -f "baseline_peak_rss_kb=%M" python3 - "127.0.0.1:$KPORT" bench.bench.t "$ROWS" <<'PY'
import sys, time
from confluent_kafka import Consumer
brokers, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = Consumer({"bootstrap.servers": brokers, "group.id": "bench-baseline",
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([topic])
t0, seen = time.time(), 0
while seen < n:
    seen += sum(1 for m in c.consume(10000, 1.0) if not m.error())
s = time.time() - t0
print(f"baseline_consumer_records={seen} seconds={s:.3f} per_sec={seen / s:.0f}")
PY
