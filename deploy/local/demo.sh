#!/usr/bin/env bash
# Owns: README's first command. On a fresh Debian machine it installs what is missing
# (MariaDB from Debian's packages), builds binlake, starts a private MariaDB on 127.0.0.1
# (data in .binlake-demo/), creates a demo database, checks the server with `binlake check`,
# applies a burst of changes and shows them as `binlake tail` streams them. It stops the
# server on exit. Usage: deploy/local/demo.sh [PORT=33306]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PORT=${1:-33306}
DIR=$PWD/.binlake-demo
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }

bash deploy/local/mariadb.sh install
echo "== building binlake (release)"
cargo build --release --quiet
BIN=$PWD/target/release/binlake

bash deploy/local/mariadb.sh stop "$DIR" >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR"
trap 'bash deploy/local/mariadb.sh stop "$DIR" >/dev/null 2>&1 || true' EXIT
bash deploy/local/mariadb.sh start "$DIR" "$PORT" >/dev/null
SQL=(mariadb --no-defaults "--socket=$DIR/mysqld.sock" -uroot -proot --default-character-set=utf8mb4)

cat > "$DIR/binlake.toml" <<TOML
[mysql]
host = "127.0.0.1"
port = $PORT
user = "binlake"
password = "binlake"
server_id = 5401

[capture]
include = ["shop"]
TOML

echo "== binlake check"
"$BIN" check --config "$DIR/binlake.toml"

"${SQL[@]}" -e "
CREATE DATABASE shop;
CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(50), email VARCHAR(100),
  vip BOOLEAN, balance DECIMAL(12,2), created TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP(3));
CREATE TABLE shop.orders (id BIGINT UNSIGNED PRIMARY KEY, customer INT, status ENUM('new','paid','sent'),
  tags SET('gift','express'), placed DATETIME(6), note TEXT, payload JSON);"
START=$("${SQL[@]}" -N -e "SHOW MASTER STATUS" | awk '{print $1":"$2}')

echo "== applying changes"
"${SQL[@]}" -e "
INSERT INTO shop.customers (id, name, email, vip, balance) VALUES
  (1, 'Ada', 'ada@example.com', 1, 1200.50), (2, 'Bo', 'bo@example.com', 0, -3.10);
BEGIN;
INSERT INTO shop.orders VALUES (18446744073709551615, 1, 'new', 'gift,express',
  '2024-02-29 23:59:59.999999', 'fragile ✓ 😀', '{\"items\": [1, 2], \"total\": 12.5}');
UPDATE shop.customers SET balance = balance - 12.50 WHERE id = 1;
COMMIT;
UPDATE shop.orders SET status = 'paid' WHERE customer = 1;
DELETE FROM shop.customers WHERE id = 2;"

echo "== binlake tail --from $START --limit 6"
"$BIN" --log warn tail --config "$DIR/binlake.toml" --from "$START" --limit 6
echo
echo "Done. To follow the stream yourself, start the server again with"
echo "  bash deploy/local/mariadb.sh start $DIR $PORT"
echo "and run: $BIN tail --config $DIR/binlake.toml --from start"
