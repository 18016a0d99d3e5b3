# Owns: what the benchmarks share, sourced by bench-*.sh from the repo root: a release build,
# a private MariaDB in a temporary directory (stopped and removed on exit), the 10-column
# table bench.t, and the SQL that fills it server-side.
# bench_start PORT: sets DIR and SQL, builds, starts the server, creates bench.t.
bench_start() {
  DIR=$(mktemp -d /tmp/binlake-bench.XXXXXX)
  trap 'bash deploy/local/mariadb.sh stop "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
  cargo build --release --quiet
  bash deploy/local/mariadb.sh start "$DIR" "$1" >/dev/null
  SQL="mariadb --no-defaults --socket=$DIR/mysqld.sock -uroot -proot"
  $SQL -e "CREATE DATABASE bench; CREATE TABLE bench.t (
    id BIGINT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(32), d DECIMAL(12,2), e DATETIME(6),
    f DOUBLE, g VARCHAR(64), h TINYINT, i DATE)"
}

# bench_insert FROM TO: one INSERT of rows FROM..TO (the sequence engine makes them).
bench_insert() {
  echo "INSERT INTO bench.t SELECT seq, seq % 1000, seq * 7, CONCAT('name-', seq), seq / 100,
    '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq / 3, REPEAT('x', 40), seq % 100,
    '2024-01-01' + INTERVAL (seq % 365) DAY FROM seq_$1_to_$2;"
}

# bench_kafka KPORT RPORT: Apache Kafka (one KRaft node, deploy/local/kafka.sh; its controller
# on KPORT+100) and `binlake registry`, stopped on exit, and $DIR/bench.toml pointing at them
# (snapshot off, topics bench.{db}.{table}). BENCH_KAFKA_EXTRA: more [kafka] lines.
bench_kafka() {
  REGISTRY=""
  trap 'kill $REGISTRY 2>/dev/null || true; bash deploy/local/kafka.sh stop "$DIR/kafka" >/dev/null 2>&1 || true; bash deploy/local/mariadb.sh stop "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
  bash deploy/local/kafka.sh start "$DIR/kafka" "$1" >/dev/null
  cat > "$DIR/bench.toml" <<TOML
[mysql]
port = $PORT
password = "binlake"
[snapshot]
mode = "never"
[kafka]
brokers = "127.0.0.1:$1"
topic_prefix = "bench"
partitions = 3
${BENCH_KAFKA_EXTRA:-}
[registry]
url = "http://127.0.0.1:$2"
TOML
  ./target/release/binlake --log warn registry --config "$DIR/bench.toml" >"$DIR/registry.log" 2>&1 &
  REGISTRY=$!
  until curl -sf "http://127.0.0.1:$2/" >/dev/null; do sleep 0.1; done
}

# wait_records BROKERS TOPIC N: waits until the topic holds N records.
wait_records() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys, time
from confluent_kafka import Consumer, TopicPartition
brokers, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = Consumer({"bootstrap.servers": brokers, "group.id": "bench-watch"})
while True:
    md = c.list_topics(timeout=10).topics.get(topic)
    if md is not None and md.partitions:
        total = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in md.partitions)
        if total >= n:
            break
    time.sleep(0.5)
PY
}

# bench_topic ROWS KPORT: ROWS rows into bench.t, put into the topic bench.bench.t by
# `binlake run` (stopped once every record is there).
bench_topic() {
  local start run
  start=$($SQL -N -e "SHOW MASTER STATUS" | awk '{print $1":"$2}')
  for ((k = 0; k < $1; k += 10000)); do
    bench_insert $((k + 1)) $((k + 10000))
  done | $SQL bench
  ./target/release/binlake --log warn run --config "$DIR/bench.toml" --from "$start" &
  run=$!
  wait_records "127.0.0.1:$2" bench.bench.t "$1"
  kill -TERM $run
  wait $run || true
}
