#!/usr/bin/env bash
# Owns: the embedded local stack, every process on 127.0.0.1 with its data, logs and PID
# under one directory: a private MariaDB (CDC-ready binlog settings), Apache Kafka (one KRaft
# node, deploy/local/kafka.sh; data in DIR/kafka), `binlake registry`, then
# `binlake run` and `binlake sink` (file:// lake in DIR/lake), and, with STACK_HADOOP=1, HDFS
# and a Hive metastore (the sink then writes to HDFS and registers the tables).
# Invariant: every process it starts has its PID in DIR/*.pid and `stop` ends them all
# (SIGTERM, SIGKILL after 30 s); nothing else is touched.
#
#   stack.sh start DIR      start MariaDB, Kafka, the registry; write DIR/binlake.toml
#   stack.sh binlake DIR    start `binlake run` and `binlake sink` with DIR/binlake.toml
#   stack.sh stop DIR       stop everything started in DIR (binlake first)
#   stack.sh status DIR     one line per process: running (pid) or stopped
#
# Environment (defaults in brackets):
#   STACK_BIN [target/release/binlake]   the binlake binary
#   STACK_MYSQL_PORT [33306]  STACK_KAFKA_PORT [39092] (its controller: that + 100)
#   STACK_REGISTRY_PORT [38081]
#   STACK_RUN_METRICS_PORT [39100]  STACK_SINK_METRICS_PORT [39101]
#   STACK_HADOOP [0]   1: also HDFS + Hive metastore (deploy/local/hadoop.sh; its ports,
#                      HADOOP_NAMENODE_PORT [9000] and HIVE_METASTORE_PORT [9083], apply)
# (Not BINLAKE_*: those names are binlake's configuration overrides.)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${STACK_BIN:-$ROOT/target/release/binlake}
MYSQL_PORT=${STACK_MYSQL_PORT:-33306}
KAFKA_PORT=${STACK_KAFKA_PORT:-39092}
REGISTRY_PORT=${STACK_REGISTRY_PORT:-38081}
RUN_METRICS=${STACK_RUN_METRICS_PORT:-39100}
SINK_METRICS=${STACK_SINK_METRICS_PORT:-39101}
HADOOP=${STACK_HADOOP:-0}

die() { echo "stack.sh: $*" >&2; exit 1; }
alive() { kill -0 "$1" 2>/dev/null; }

wait_port() { # PORT WHAT PIDFILE
  local i
  for i in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if [ -n "${3:-}" ] && ! alive "$(cat "$3")"; then
      die "$2 exited while starting; see its log in $(dirname "$3")"
    fi
    sleep 0.1
  done
  die "$2 did not listen on 127.0.0.1:$1 within 60 s"
}

# Starts "$@" in the background as NAME, logging to DIR/NAME.log, PID in DIR/NAME.pid.
spawn() {
  local dir=$1 name=$2
  shift 2
  if [ -f "$dir/$name.pid" ] && alive "$(cat "$dir/$name.pid")"; then
    echo "$name: already running (pid $(cat "$dir/$name.pid"))"
    return 0
  fi
  nohup "$@" </dev/null >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

write_config() {
  local dir=$1 root="file://$dir/lake" hive=""
  if [ "$HADOOP" = 1 ]; then
    root="hdfs://127.0.0.1:${HADOOP_NAMENODE_PORT:-9000}/binlake/lake"
    hive=$'\n[hive]\nenabled = true\nuri = "thrift://127.0.0.1:'"${HIVE_METASTORE_PORT:-9083}"$'"\n'
  fi
  cat >"$dir/binlake.toml" <<TOML
# Written by deploy/local/stack.sh for the local stack in $dir.
[mysql]
host = "127.0.0.1"
port = $MYSQL_PORT
user = "binlake"
password_file = "$dir/mysql-password"
server_id = 5401
heartbeat_secs = 2

[capture]
include = ["shop"]

[kafka]
brokers = "127.0.0.1:$KAFKA_PORT"
topic_prefix = "binlake"
partitions = 3

[registry]
url = "http://127.0.0.1:$REGISTRY_PORT"

[sink]
root = "$root"
format = "parquet"
group_id = "binlake-demo"
rotate_interval = "5s"
$hive
TOML
  printf 'binlake' >"$dir/mysql-password"
  chmod 600 "$dir/mysql-password"
}

cmd_start() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -x "$BIN" ] || die "no binlake binary at $BIN (cargo build --release, or set STACK_BIN)"
  write_config "$dir"
  if ! bash "$HERE/mariadb.sh" stop "$dir/mariadb" >/dev/null 2>&1; then :; fi
  mkdir -p "$dir/mariadb"
  bash "$HERE/mariadb.sh" start "$dir/mariadb" "$MYSQL_PORT" >/dev/null
  echo "mariadb:  127.0.0.1:$MYSQL_PORT (root/root, binlake/binlake), data in $dir/mariadb"
  bash "$HERE/kafka.sh" start "$dir/kafka" "$KAFKA_PORT" >/dev/null
  echo "kafka:    127.0.0.1:$KAFKA_PORT (Apache Kafka), data and log in $dir/kafka/node-1"
  spawn "$dir" registry "$BIN" registry --config "$dir/binlake.toml"
  wait_port "$REGISTRY_PORT" "binlake registry" "$dir/registry.pid"
  echo "registry: http://127.0.0.1:$REGISTRY_PORT (binlake registry)"
  if [ "$HADOOP" = 1 ]; then
    HADOOP_DIR="$dir/hadoop" bash "$HERE/hadoop.sh" start all
    echo "hadoop:   hdfs://127.0.0.1:${HADOOP_NAMENODE_PORT:-9000}, thrift://127.0.0.1:${HIVE_METASTORE_PORT:-9083}"
  fi
  echo "config:   $dir/binlake.toml"
}

cmd_binlake() {
  local dir
  dir=$(cd "$1" && pwd)
  [ -f "$dir/binlake.toml" ] || die "no $dir/binlake.toml: run '$0 start $dir' first"
  BINLAKE_METRICS__LISTEN="127.0.0.1:$RUN_METRICS" \
    spawn "$dir" run "$BIN" run --config "$dir/binlake.toml"
  BINLAKE_METRICS__LISTEN="127.0.0.1:$SINK_METRICS" \
    spawn "$dir" sink "$BIN" sink --config "$dir/binlake.toml"
  wait_port "$RUN_METRICS" "binlake run" "$dir/run.pid"
  wait_port "$SINK_METRICS" "binlake sink" "$dir/sink.pid"
  echo "run:      pid $(cat "$dir/run.pid"), log $dir/run.log, http://127.0.0.1:$RUN_METRICS/metrics"
  echo "sink:     pid $(cat "$dir/sink.pid"), log $dir/sink.log, http://127.0.0.1:$SINK_METRICS/metrics"
}

stop_pid() { # DIR NAME
  local f="$1/$2.pid" pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 300); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      echo "$2 (pid $pid) did not stop within 30 s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

cmd_stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  stop_pid "$dir" sink
  stop_pid "$dir" run
  stop_pid "$dir" registry
  if [ -d "$dir/kafka" ]; then bash "$HERE/kafka.sh" stop "$dir/kafka"; fi
  if [ -d "$dir/hadoop" ]; then
    HADOOP_DIR="$dir/hadoop" bash "$HERE/hadoop.sh" stop all || true
  fi
  bash "$HERE/mariadb.sh" stop "$dir/mariadb" >/dev/null 2>&1 || true
  echo "stopped the stack in $dir"
}

cmd_status() {
  local dir=$1 name ok=0
  if [ -f "$dir/kafka/node-1/node.pid" ] && alive "$(cat "$dir/kafka/node-1/node.pid")"; then
    echo "kafka: running (pid $(cat "$dir/kafka/node-1/node.pid"))"
  else
    echo "kafka: stopped"
    ok=1
  fi
  for name in registry run sink; do
    if [ -f "$dir/$name.pid" ] && alive "$(cat "$dir/$name.pid")"; then
      echo "$name: running (pid $(cat "$dir/$name.pid"))"
    else
      echo "$name: stopped"
      ok=1
    fi
  done
  if [ -f "$dir/mariadb/mysqld.pid" ] && alive "$(cat "$dir/mariadb/mysqld.pid")"; then
    echo "mariadb: running (pid $(cat "$dir/mariadb/mysqld.pid"))"
  else
    echo "mariadb: stopped"
    ok=1
  fi
  return $ok
}

case "${1:-}" in
  start) [ $# -eq 2 ] || die "usage: $0 start DIR"; cmd_start "$2" ;;
  binlake) [ $# -eq 2 ] || die "usage: $0 binlake DIR"; cmd_binlake "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  status) [ $# -eq 2 ] || die "usage: $0 status DIR"; cmd_status "$2" ;;
  *) echo "usage: $0 start|binlake|stop|status DIR" >&2; exit 2 ;;
esac
