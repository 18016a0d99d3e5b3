#!/usr/bin/env bash
# Owns: README's first command. On a fresh Debian machine with a Rust toolchain it installs
# what is missing (MariaDB from Debian's packages, Apache Kafka 4.4.0 from Maven Central, with a JDK and Maven from Debian where missing, Python
# confluent-kafka, fastavro and DuckDB from PyPI), builds binlake, starts the embedded stack
# (deploy/local/stack.sh: MariaDB, Apache Kafka, `binlake registry` on 127.0.0.1, data in
# .binlake-demo/), loads a demo database (three tables, every column type), runs `binlake
# run` (snapshot, then stream) and `binlake sink` (Parquet lake in .binlake-demo/lake),
# applies a burst of changes, then checks that the topics (read with confluent-kafka) and
# the lake (read with DuckDB) hold exactly the source's rows, and prints where to look.
# The stack keeps running; `bash deploy/local/stack.sh stop .binlake-demo` stops it.
#
# Usage: deploy/local/quickstart.sh [--stop]     (--stop: stop the stack at the end)
# Environment: QUICKSTART_DIR [.binlake-demo], STACK_BIN (skip the build and use this
# binary), and stack.sh's STACK_* ports (MariaDB 33306, Kafka 39092, registry 38081,
# metrics 39100/39101).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DIR=${QUICKSTART_DIR:-$PWD/.binlake-demo}
STOP=0
[ "${1:-}" = "--stop" ] && STOP=1
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }

echo "== installing what is missing"
bash deploy/local/mariadb.sh install
bash deploy/local/kafka.sh install
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install --quiet 'duckdb==2.0.1'

if [ -z "${STACK_BIN:-}" ]; then
  echo "== building binlake (release; a few minutes the first time)"
  cargo build --release --quiet
  export STACK_BIN=$PWD/target/release/binlake
fi
BIN=$STACK_BIN

echo "== starting the stack in $DIR"
bash deploy/local/stack.sh stop "$DIR" >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
if [ "$STOP" = 1 ]; then
  trap 'bash deploy/local/stack.sh stop "$DIR" >/dev/null 2>&1 || true' EXIT
fi
bash deploy/local/stack.sh start "$DIR"
SQL=(mariadb --no-defaults "--socket=$DIR/mariadb/mysqld.sock" -uroot -proot --default-character-set=utf8mb4)
KAFKA=127.0.0.1:${STACK_KAFKA_PORT:-39092}
REGISTRY=http://127.0.0.1:${STACK_REGISTRY_PORT:-38081}
METRICS=127.0.0.1:${STACK_RUN_METRICS_PORT:-39100}

echo "== loading the demo database \`shop\`"
"${SQL[@]}" <<'SQL'
CREATE DATABASE shop;
CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(50), email VARCHAR(100),
  vip BOOLEAN, balance DECIMAL(12,2), created TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP(3));
CREATE TABLE shop.orders (id BIGINT UNSIGNED PRIMARY KEY, customer INT,
  status ENUM('new','paid','sent'), tags SET('gift','express'), placed DATETIME(6),
  note TEXT, payload JSON);
CREATE TABLE shop.all_types (id INT PRIMARY KEY, ti TINYINT, si SMALLINT UNSIGNED,
  mi MEDIUMINT, bi BIGINT, ubi BIGINT UNSIGNED, f FLOAT, d DOUBLE, dec_big DECIMAL(65,30),
  dec_small DECIMAL(10,2), c CHAR(3), vc VARCHAR(100), l1 VARCHAR(20) CHARACTER SET latin1,
  tx TEXT, bn BINARY(2), vb VARBINARY(10), bl BLOB, dt DATE, dtt DATETIME(6),
  ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), y YEAR, e ENUM('a','b'), st SET('x','y'),
  j JSON, bt BIT(10), g GEOMETRY);
INSERT INTO shop.customers (id, name, email, vip, balance) VALUES
  (1, 'Ada', 'ada@example.com', 1, 1200.50), (2, 'Bo', 'bo@example.com', 0, -3.10),
  (3, 'Cy', 'cy@example.com', 0, 0.00), (4, 'Dee', NULL, 1, 99999.99);
INSERT INTO shop.orders VALUES
  (1, 1, 'new', 'gift', '2024-02-29 23:59:59.999999', 'fragile ✓ 😀', '{"items": [1, 2], "total": 12.5}'),
  (18446744073709551615, 2, 'paid', 'gift,express', '1000-01-01 00:00:00', NULL, 'null');
INSERT INTO shop.all_types VALUES
  (1, -128, 65535, -8388608, -9223372036854775808, 18446744073709551615, 1.5, -0.25,
   '-99999999999999999999999999999999999.999999999999999999999999999999', -0.50, 'abc',
   'emoji 😀', 'café', 'long text', x'FF00', x'00', x'DEADBEEF', '1000-01-01',
   '9999-12-31 23:59:59.999999', '1970-01-01 00:00:01.000001', '-838:59:59.000000', 1901,
   'a', 'x,y', '{"k": [1, 2]}', b'1111111111', ST_GeomFromText('POINT(1 2)')),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SQL

echo "== binlake check"
"$BIN" --log warn check --config "$DIR/binlake.toml"

echo "== starting binlake run and binlake sink"
bash deploy/local/stack.sh binlake "$DIR"
ready() { python3 - "$1" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://{sys.argv[1]}/ready", timeout=2)
except Exception:
    sys.exit(1)
PY
}
for _ in $(seq 1 600); do ready "$METRICS" && break; sleep 0.2; done
ready "$METRICS" || { tail -n 20 "$DIR/run.log" >&2; echo "binlake run did not become ready" >&2; exit 1; }
echo "the snapshot is complete and run is caught up (/ready)"

echo "== applying a burst of changes"
"${SQL[@]}" <<'SQL'
INSERT INTO shop.customers (id, name, email, vip, balance)
  SELECT seq, CONCAT('customer ', seq), CONCAT('c', seq, '@example.com'), seq % 2, seq * 1.25
  FROM shop.seq_5_to_504;
BEGIN;
INSERT INTO shop.orders SELECT seq, seq % 500 + 1, 'new', 'gift', NOW(6), CONCAT('order ', seq),
  JSON_OBJECT('n', seq) FROM shop.seq_2_to_301;
UPDATE shop.customers SET balance = balance - 12.50 WHERE id <= 100;
COMMIT;
UPDATE shop.orders SET status = 'paid', tags = 'gift,express' WHERE id % 3 = 0;
UPDATE shop.customers SET id = id + 1000 WHERE id BETWEEN 200 AND 209;
DELETE FROM shop.customers WHERE id = 2 OR id BETWEEN 400 AND 449;
DELETE FROM shop.orders WHERE id % 7 = 0;
UPDATE shop.all_types SET vc = 'updated ✓', dtt = '2024-01-01 00:00:00.5', dec_small = 1.25 WHERE id = 2;
INSERT INTO shop.all_types (id, vc) VALUES (3, 'third');
SQL

echo "== checking Kafka (confluent-kafka) and the lake (DuckDB) against MariaDB"
check() {
  local t ok=0 want got_k got_l
  for t in customers orders all_types; do
    want=$("${SQL[@]}" -N -e "SELECT id FROM shop.$t" | sort | tr '\n' ' ')
    got_k=$(python3 deploy/local/peek.py kafka --brokers "$KAFKA" --registry "$REGISTRY" \
      "binlake.shop.$t" --key id --keys-only 2>/dev/null | sort | tr '\n' ' ') || got_k=
    got_l=$(python3 deploy/local/peek.py lake "$DIR/lake/shop/$t" --key id --keys-only \
      2>/dev/null | sort | tr '\n' ' ') || got_l=
    if [ "$want" != "$got_k" ] || [ "$want" != "$got_l" ]; then ok=1; fi
    [ "${1:-}" = quiet ] || printf '  %-20s MariaDB %4d rows, Kafka %4d, lake %4d\n' "shop.$t" \
      "$(wc -w <<<"$want")" "$(wc -w <<<"$got_k")" "$(wc -w <<<"$got_l")"
  done
  return $ok
}
for _ in $(seq 1 60); do check quiet && break; sleep 1; done
if ! check; then
  echo "Kafka or the lake does not match the source; logs: $DIR/run.log $DIR/sink.log" >&2
  exit 1
fi
echo "every table matches: the same primary keys in MariaDB, in Kafka and in the lake"

cat <<EOF

== where to look
  config        $DIR/binlake.toml
  status        $BIN status --config $DIR/binlake.toml
  metrics       curl -s http://$METRICS/metrics | grep ^binlake_rows_read_total
  a topic       python3 deploy/local/peek.py kafka --brokers $KAFKA --registry $REGISTRY binlake.shop.orders --key id | head
  the lake      python3 -c "import duckdb; duckdb.sql(\"SELECT id, status, __op, __deleted, __pos FROM read_parquet('$DIR/lake/shop/orders/**/*.parquet', hive_partitioning=true) ORDER BY __kafka_offset DESC LIMIT 10\").show()"
  SQL           ${SQL[*]} shop
  logs          $DIR/run.log $DIR/sink.log
  rebuild       $BIN rebuild --config $DIR/binlake.toml --table shop.orders --into mysql://root:root@127.0.0.1:${STACK_MYSQL_PORT:-33306}/restore --create --verify
  stop          bash deploy/local/stack.sh stop $DIR
EOF
