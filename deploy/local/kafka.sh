#!/usr/bin/env bash
# Owns: the Kafka side of the local stack and of the tests: installing Apache Kafka 4.x from
# Maven Central, and configuring, formatting, running and stopping private KRaft nodes
# (combined broker+controller; one node or a cluster) on 127.0.0.1, each with its own ports,
# log.dirs and log file. Invariant: every listener is bound to 127.0.0.1; every node runs from
# its own directory DIR/node-N, whose node.pid names the JVM; no system service is touched.
#
#   kafka.sh install
#       Idempotent; reuses what exists. A JDK >= 17 and Maven from Debian's packages when
#       missing; the broker's runtime classpath (deploy/local/kafka/pom.xml, pinned) into
#       $KAFKA_HOME/lib with `mvn dependency:copy-dependencies`; what binlake's build needs for
#       Kafka over TLS/SASL (pkg-config, libssl-dev, openssl); the Python reader of the tests
#       (confluent-kafka[avro], fastavro).
#   kafka.sh classpath
#       Prints the broker's classpath (for tests and scripts that run `java` themselves).
#   kafka.sh configure DIR PORTS CONTROLLER_PORTS [key=value ...] [--scram SPEC ...]
#       Writes DIR/node-N/server.properties for N = 1.. (one per comma-separated port; node N
#       serves clients on the N-th of PORTS and the quorum on the N-th of CONTROLLER_PORTS) and
#       formats every node with one cluster id. key=value lines come last, so they override the
#       defaults (e.g. listener.security.protocol.map, log.cleaner.backoff.ms). --scram passes
#       a StorageTool --add-scram SPEC (SCRAM users exist from the first start). A DIR that is
#       already formatted is left as it is.
#   kafka.sh run DIR N
#       Runs node N in the foreground (exec java): tests spawn this and kill it.
#   kafka.sh start DIR PORT [NODES]
#       Configures DIR if needed (NODES nodes, default 1; node N on PORT+N-1, its controller on
#       PORT+100+N-1), starts every node in the background and waits until each accepts
#       connections. A running node is left alone.
#   kafka.sh stop DIR [N]
#       SIGTERM every node (or node N), SIGKILL after $KAFKA_STOP_TIMEOUT seconds (the last
#       nodes of a cluster can wait for a quorum that is gone).
#
# Environment (defaults in brackets):
#   KAFKA_HOME [~/.cache/binlake/kafka-$KAFKA_VERSION]  the broker's jars (lib/)
#   KAFKA_HEAP [-Xms128m -Xmx512m]   KAFKA_START_TIMEOUT [60]   KAFKA_STOP_TIMEOUT [20]
#   JAVA [java]: a Java 17+ binary
#   KAFKA_OWNER_PID: when set, `run` and `start` stop the node once that process is gone
#   (tests set it, so that a killed test run does not leak brokers).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/kafka/pom.xml")
KAFKA_HOME=${KAFKA_HOME:-$HOME/.cache/binlake/kafka-$KAFKA_VERSION}
KAFKA_HEAP=${KAFKA_HEAP:--Xms128m -Xmx512m}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-60}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-20}
JAVA=${JAVA:-java}

die() { echo "kafka.sh: $*" >&2; exit 1; }

apt_install() {
  echo "apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # An apt hook on these machines can delete downloaded .debs between dpkg runs: repair, retry.
  local attempt
  for attempt in 1 2 3; do
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null && return 0
    apt-get -f install -y -qq >/dev/null || true
  done
  die "apt-get install $* failed"
}

java_major() {
  "$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

install_build_deps() {
  local pkgs=()
  command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl 2>/dev/null ||
    pkgs+=(pkg-config libssl-dev)
  command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
  if [[ ${#pkgs[@]} -gt 0 ]]; then apt_install "${pkgs[@]}"; fi
  pkg-config --exists openssl || die "openssl.pc still missing"
  echo "openssl: $(pkg-config --modversion openssl) headers and pkg-config"
}

install_java() {
  local pkgs=()
  local major
  major=$(java_major 2>/dev/null || true)
  [[ -n $major && $major -ge 17 ]] || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  if [[ ${#pkgs[@]} -gt 0 ]]; then apt_install "${pkgs[@]}"; fi
  major=$(java_major)
  [[ $major -ge 17 ]] || die "Apache Kafka $KAFKA_VERSION needs Java 17 or newer; $JAVA is $major"
  echo "java: $major, $(mvn -v 2>/dev/null | head -n 1)"
}

install_kafka() {
  # The marker is written last: a copy cut short is redone.
  if [[ -f $KAFKA_HOME/.complete ]]; then
    echo "kafka: $KAFKA_VERSION in $KAFKA_HOME (reused)"
    return 0
  fi
  echo "kafka: $KAFKA_VERSION from Maven Central into $KAFKA_HOME"
  rm -rf "$KAFKA_HOME/lib"
  mkdir -p "$KAFKA_HOME"
  mvn -q -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$KAFKA_HOME/lib" || die "mvn could not fetch Apache Kafka $KAFKA_VERSION"
  ls "$KAFKA_HOME/lib/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null || die "the broker jar is missing"
  cp "$HERE/kafka/pom.xml" "$KAFKA_HOME/pom.xml"
  touch "$KAFKA_HOME/.complete"
}

install_python() {
  if python3 -c 'import confluent_kafka, fastavro, authlib' 2>/dev/null; then
    echo "python: confluent-kafka $(python3 -c 'import confluent_kafka; print(confluent_kafka.__version__)') (reused)"
  else
    python3 -m pip install --quiet 'confluent-kafka[avro]==2.16.1' 'fastavro==1.13.1'
  fi
}

cmd_install() {
  install_build_deps
  install_java
  install_kafka
  install_python
}

classpath() {
  [[ -f $KAFKA_HOME/.complete ]] || die "Apache Kafka is not installed in $KAFKA_HOME: run deploy/local/kafka.sh install"
  echo "$KAFKA_HOME/lib/*"
}

java_opts() { # NODE_DIR
  # shellcheck disable=SC2206
  local heap=($KAFKA_HEAP)
  echo "${heap[@]}" -XX:+UseSerialGC -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$HERE/kafka/log4j2.properties" "-Dkafka.logs.dir=$1"
}

cmd_configure() {
  local dir=${1:?DIR}; local ports=${2:?PORTS}; local cports=${3:?CONTROLLER_PORTS}
  shift 3
  local extra=() scram=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      --scram) scram+=(--add-scram "${2:?SPEC}"); shift 2 ;;
      *=*) extra+=("$1"); shift ;;
      *) die "configure: not key=value: $1" ;;
    esac
  done
  local -a p c
  IFS=, read -r -a p <<<"$ports"
  IFS=, read -r -a c <<<"$cports"
  [[ ${#p[@]} -eq ${#c[@]} ]] || die "configure: ${#p[@]} ports but ${#c[@]} controller ports"
  if [[ -f $dir/node-1/server.properties && -f $dir/node-1/data/meta.properties ]]; then
    return 0
  fi
  local n=${#p[@]} voters="" i
  for ((i = 0; i < n; i++)); do
    voters+="${voters:+,}$((i + 1))@127.0.0.1:${c[i]}"
  done
  # Internal topics replicated as far as the cluster allows, and durable with one node down.
  local rf=$((n < 3 ? n : 3)) isr=$((n < 3 ? 1 : 2))
  local cp id
  cp=$(classpath)
  # A cluster id is 16 random bytes in URL-safe base64 (what StorageTool random-uuid prints,
  # without starting a JVM for it); Kafka refuses one that starts with '-'.
  id=-
  while [[ $id == -* ]]; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done
  for ((i = 0; i < n; i++)); do
    local nd="$dir/node-$((i + 1))"
    mkdir -p "$nd/data"
    {
      echo "process.roles=broker,controller"
      echo "node.id=$((i + 1))"
      echo "controller.quorum.voters=$voters"
      echo "listeners=PLAINTEXT://127.0.0.1:${p[i]},CONTROLLER://127.0.0.1:${c[i]}"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:${p[i]}"
      echo "controller.listener.names=CONTROLLER"
      echo "inter.broker.listener.name=PLAINTEXT"
      echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
      echo "log.dirs=$nd/data"
      echo "offsets.topic.replication.factor=$rf"
      echo "offsets.topic.num.partitions=10"
      echo "transaction.state.log.replication.factor=$rf"
      echo "transaction.state.log.min.isr=$isr"
      echo "transaction.state.log.num.partitions=10"
      echo "default.replication.factor=$rf"
      echo "group.initial.rebalance.delay.ms=0"
      echo "num.network.threads=2"
      echo "num.io.threads=2"
      echo "num.partitions=1"
      # The log cleaner's dedupe buffer is 128 MiB of heap by default: too much for a
      # 512 MiB heap.
      echo "log.cleaner.dedupe.buffer.size=16777216"
      echo "log.cleaner.threads=1"
      # A clean shutdown after a kill -9 must not wait long for log recovery.
      echo "num.recovery.threads.per.data.dir=2"
      for kv in "${extra[@]}"; do echo "$kv"; done
    } >"$nd/server.properties"
    "$JAVA" $(java_opts "$nd") -cp "$cp" kafka.tools.StorageTool format -t "$id" \
      -c "$nd/server.properties" "${scram[@]}" >"$nd/format.log" 2>&1 ||
      die "formatting node $((i + 1)) failed: $(tail -n 5 "$nd/format.log")"
  done
}

# Stops node dir $1's JVM when process $KAFKA_OWNER_PID is gone.
watch_owner() {
  local pidfile=$1 owner=${KAFKA_OWNER_PID:-}
  [[ -n $owner ]] || return 0
  (
    while kill -0 "$owner" 2>/dev/null; do sleep 1; done
    [[ -f $pidfile ]] && kill -9 "$(cat "$pidfile")" 2>/dev/null
  ) </dev/null >/dev/null 2>&1 &
}

cmd_run() {
  local dir=${1:?DIR} n=${2:?N}
  local nd="$dir/node-$n"
  [[ -f $nd/server.properties ]] || die "$nd is not configured: run kafka.sh configure"
  local cp
  cp=$(classpath)
  echo $$ >"$nd/node.pid"
  watch_owner "$nd/node.pid"
  # shellcheck disable=SC2046
  exec "$JAVA" $(java_opts "$nd") -cp "$cp" kafka.Kafka "$nd/server.properties"
}

node_port() { # NODE_DIR
  sed -n 's/^listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\),.*/\1/p' "$1/server.properties"
}

running() { # NODE_DIR
  [[ -f $1/node.pid ]] && kill -0 "$(cat "$1/node.pid")" 2>/dev/null
}

cmd_start() {
  local dir=${1:?DIR} port=${2:?PORT} nodes=${3:-1}
  local ports="" cports="" i
  for ((i = 0; i < nodes; i++)); do
    ports+="${ports:+,}$((port + i))"
    cports+="${cports:+,}$((port + 100 + i))"
  done
  cmd_configure "$dir" "$ports" "$cports"
  for nd in "$dir"/node-*; do
    running "$nd" && continue
    (setsid bash "$HERE/kafka.sh" run "$dir" "${nd##*-}" </dev/null >>"$nd/stdout.log" 2>&1 &)
  done
  local deadline=$((SECONDS + START_TIMEOUT))
  for nd in "$dir"/node-*; do
    local p
    p=$(node_port "$nd")
    until (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
      if ((SECONDS > deadline)); then
        tail -n 20 "$nd/server.log" "$nd/stdout.log" >&2 || true
        die "node ${nd##*-} did not accept connections on 127.0.0.1:$p within ${START_TIMEOUT}s"
      fi
      sleep 0.2
    done
    echo "kafka: node ${nd##*-} on 127.0.0.1:$p (log $nd/server.log)"
  done
}

cmd_stop() {
  local dir=${1:?DIR} only=${2:-}
  local nds=()
  if [[ -n $only ]]; then nds=("$dir/node-$only"); else nds=("$dir"/node-*); fi
  for nd in "${nds[@]}"; do
    running "$nd" && kill -TERM "$(cat "$nd/node.pid")" 2>/dev/null || true
  done
  local deadline=$((SECONDS + STOP_TIMEOUT))
  for nd in "${nds[@]}"; do
    while running "$nd"; do
      if ((SECONDS > deadline)); then
        kill -KILL "$(cat "$nd/node.pid")" 2>/dev/null || true
        sleep 0.2
        break
      fi
      sleep 0.2
    done
    rm -f "$nd/node.pid"
  done
}

case "${1:-}" in
  install) cmd_install ;;
  classpath) classpath ;;
  configure) shift; cmd_configure "$@" ;;
  run) shift; cmd_run "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: $0 install | classpath | configure DIR PORTS CONTROLLER_PORTS [key=value ...] | run DIR N | start DIR PORT [NODES] | stop DIR [N]" >&2; exit 2 ;;
esac
