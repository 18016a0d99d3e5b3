#!/usr/bin/env bash
# Owns: the `binlake run` benchmark of BENCHMARKS.md. Starts a private MariaDB, Apache Kafka
# (one KRaft node) and `binlake registry`; writes ROWS inserts of a 10-column table into
# the binlog (BATCH rows per statement and transaction); then times `binlake run --from` that
# point until every record is in the topic, and right after, in the same run, a plain rdkafka
# producer (`cargo bench --bench produce`) writing the same records with the same settings.
# With TXN_MB set (e.g. TXN_MB=1024), the rows are instead one transaction of about that many
# MB (1 KB rows), to show memory stays bounded. With KAFKA_TXN=1, `run` has [kafka]
# transactional_id set and the baseline produces in transactions too (committed every 500 ms,
# as `run` does); the topic's high watermarks then count transaction markers as well, so the
# wait for the last record may end a few hundred records early (of a million).
# Reports rows/s and peak RSS.
# Usage: [TXN_MB=1024] [KAFKA_TXN=1] deploy/local/bench-run.sh [ROWS=1000000] [BATCH=1000] [PORT=33110]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROWS=${1:-1000000}
BATCH=${2:-1000}
PORT=${3:-33110}
KPORT=$((PORT + 1))
RPORT=$((PORT + 2))
source deploy/local/bench-common.sh
if [[ -n "${KAFKA_TXN:-}" ]]; then
  export BENCH_KAFKA_EXTRA='transactional_id = "bench-run"'
  export TRANSACTIONAL_ID=bench-baseline
fi
bench_start "$PORT"
cargo build --release --quiet --benches
bench_kafka "$KPORT" "$RPORT"

START=$($SQL -N -e "SHOW MASTER STATUS" | awk '{print $1":"$2}')
if [[ -n "${TXN_MB:-}" ]]; then
  ROWS=$((TXN_MB * 1024))
  TABLE=big
  $SQL -e "CREATE TABLE bench.big (id BIGINT PRIMARY KEY, pad VARCHAR(1000));
    SET SESSION max_statement_time = 0;
    INSERT INTO bench.big SELECT seq, REPEAT(CHAR(65 + seq % 26), 1000) FROM bench.seq_1_to_$ROWS;"
else
  TABLE=t
  for ((k = 0; k < ROWS; k += BATCH)); do
    bench_insert $((k + 1)) $((k + BATCH))
  done | $SQL bench
fi
echo "binlog bytes: $($SQL -N -e "SHOW BINARY LOGS" | awk '{s+=$2} END {print s}'), rows: $ROWS"

# Seconds between the first and the last record's producer timestamp in TOPIC (the
# steady-state span, without start-up), read from the first and last record of each partition.
span() {
  python3 - "$1" "$2" <<'PY'
import sys
from confluent_kafka import Consumer, TopicPartition
brokers, topic = sys.argv[1], sys.argv[2]
conf = {"bootstrap.servers": brokers, "group.id": "bench-span", "enable.auto.commit": False}
meta = Consumer(conf)
stamps = []
for p in meta.list_topics(timeout=10).topics[topic].partitions:
    low, high = meta.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
    # The first record, and the last one: read from a little before the end, since under
    # transactions the last offsets are commit markers, which consumers never see.
    for off, last in ((low, False), (max(low, high - 100), True)):
        c = Consumer({**conf, "enable.partition.eof": True})
        c.assign([TopicPartition(topic, p, off)])
        seen = None
        for _ in range(200):
            m = c.poll(5)
            if m is None:
                continue
            if m.error():
                break  # the end of the partition
            seen = m.timestamp()[1]
            if not last:
                break
        stamps.append(seen)
        c.close()
print((max(stamps) - min(stamps)) / 1000)
PY
}
# A JVM broker runs slower until its JIT has compiled the produce path: the same records go
# once to other topics first (prefix warm.*), so that binlake and the baseline after it meet
# a warm broker. WARMUP=0 skips it.
if [[ "${WARMUP:-1}" != 0 ]]; then
  BINLAKE_KAFKA__TOPIC_PREFIX=warm ./target/release/binlake --log warn run \
    --config "$DIR/bench.toml" --from "$START" &
  WARM=$!
  wait_records "127.0.0.1:$KPORT" "warm.bench.$TABLE" "$ROWS"
  kill -TERM $WARM 2>/dev/null || true
  wait $WARM || true
fi
T0=$(date +%s.%N)
${PROFILE:-} /usr/bin/time -f "binlake_peak_rss_kb=%M cpu_seconds=%U+%S" ./target/release/binlake --log warn run \
  --config "$DIR/bench.toml" --from "$START" &
RUN=$!
wait_records "127.0.0.1:$KPORT" "bench.bench.$TABLE" "$ROWS"
T1=$(date +%s.%N)
kill -TERM $(pgrep -P $RUN) 2>/dev/null || true
wait $RUN || true
S=$(span "127.0.0.1:$KPORT" "bench.bench.$TABLE")
python3 -c "s=$T1-$T0; print(f'binlake_records=$ROWS with_startup_seconds={s:.3f} with_startup_per_sec={$ROWS/s:.0f} steady_seconds=$S steady_per_sec={$ROWS/$S:.0f}')"
if [[ -z "${TXN_MB:-}" ]]; then
  BROKERS="127.0.0.1:$KPORT" SOURCE_TOPIC="bench.bench.$TABLE" TARGET_TOPIC=baseline \
    COUNT="$ROWS" PARTITIONS=3 ${BASELINE_PROFILE:-} cargo bench --quiet --bench produce
fi
