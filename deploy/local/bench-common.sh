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
