#!/usr/bin/env bash
# Owns: the lake's local Hadoop side, from PyPI only (no Maven, no Docker): a private HDFS
# (Hadoop 2.7.3 NameNode + DataNode, from the jars inside the pyspark==2.4.8 source package)
# and a Hive 2.3 metastore (Derby, from the pyspark 4.x jars, served on 127.0.0.1 by
# deploy/local/java/MetastoreLauncher.java). Invariant: every socket is bound to 127.0.0.1,
# every daemon runs from a recorded PID under $HADOOP_DIR; no system service is touched.
#
#   hadoop.sh install
#       Idempotent; reuses what exists. Extracts the Hadoop jars into $HADOOP_CACHE (pip
#       download of the 220 MB sdist only when they are missing), writes the webapps
#       placeholders, pip-installs pyspark duckdb fastavro cramjam unless importable, and
#       compiles the metastore launcher into $HADOOP_CACHE/launcher.
#   hadoop.sh start [all|hdfs|metastore]     (default all)
#       Starts the daemons with data under $HADOOP_DIR, records their PIDs there and waits
#       until they are ready (NameNode out of safe mode with 1 live DataNode; metastore port
#       open). A running daemon is left alone. The metastore's fs.defaultFS is
#       $HIVE_FS_DEFAULT, else this instance's HDFS when it runs (always with `all`), else
#       file:///.
#   hadoop.sh stop [all|hdfs|metastore]
#       SIGTERM the recorded PIDs (SIGKILL after 20 s) and waits for them to exit.
#   hadoop.sh status
#       One line per daemon: running (pid) or stopped. Exit 0 when all of them run.
#   hadoop.sh fs ARGS...
#       Hadoop's own shell (`hadoop fs`, org.apache.hadoop.fs.FsShell) against this instance,
#       e.g. `fs -get hdfs://127.0.0.1:PORT/lake /tmp/lake`: an HDFS client independent of
#       binlake's, for tests and for looking around.
#
# Environment (defaults in brackets):
#   HADOOP_CACHE [~/.cache/binlake/hadoop-2.7.3]   jars, webapps, compiled launcher
#   HADOOP_DIR   [~/.local/share/binlake-hadoop]    conf, data, logs, PIDs of one instance
#   HADOOP_NAMENODE_PORT [9000]  HADOOP_NAMENODE_HTTP_PORT [9870]
#   HADOOP_DATANODE_PORT [9866]  HADOOP_DATANODE_HTTP_PORT [9864]  HADOOP_DATANODE_IPC_PORT [9867]
#   HIVE_METASTORE_PORT [9083]   HIVE_FS_DEFAULT (see start)  HIVE_WAREHOUSE_DIR
#   [FS/user/hive/warehouse, or $HADOOP_DIR/metastore/warehouse on file:///]
#   HADOOP_BLOCK_SIZE [134217728] dfs.blocksize (tests use small blocks for multi-block files)
#   HADOOP_START_TIMEOUT [90] seconds
#   PYTHON [python3]: the interpreter whose pip installs and runs the Python side
#   HADOOP_OWNER_PID: when set, a watcher stops the started daemons once that process is
#   gone (tests set it, so that a killed test run does not leak Java processes).
# (Not BINLAKE_*: those names are binlake's configuration overrides.)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
HADOOP_CACHE=${HADOOP_CACHE:-$HOME/.cache/binlake/hadoop-2.7.3}
HADOOP_DIR=${HADOOP_DIR:-$HOME/.local/share/binlake-hadoop}
NN_PORT=${HADOOP_NAMENODE_PORT:-9000}
NN_HTTP_PORT=${HADOOP_NAMENODE_HTTP_PORT:-9870}
DN_PORT=${HADOOP_DATANODE_PORT:-9866}
DN_HTTP_PORT=${HADOOP_DATANODE_HTTP_PORT:-9864}
DN_IPC_PORT=${HADOOP_DATANODE_IPC_PORT:-9867}
HMS_PORT=${HIVE_METASTORE_PORT:-9083}
BLOCK_SIZE=${HADOOP_BLOCK_SIZE:-134217728}
START_TIMEOUT=${HADOOP_START_TIMEOUT:-90}
PYTHON=${PYTHON:-python3}

PYSPARK_SDIST=pyspark==2.4.8
PY_PACKAGES=(pyspark==4.3.0 duckdb==2.0.1 fastavro==1.13.1 cramjam==2.14.0)
# The Hadoop 2.7.3 HDFS server and what it loads, out of the sdist's deps/jars.
JAR_PATTERNS=(
  'hadoop-hdfs-*' 'hadoop-common-*' 'hadoop-auth-*' 'hadoop-annotations-*'
  'hadoop-mapreduce-client-core-*' 'guava-14*' 'protobuf-java-2.5*' 'netty-3*' 'netty-all-*'
  'jetty-6*' 'jetty-util-6*' 'jackson-*-asl-*' 'commons-*' 'log4j-1.2*' 'slf4j-api-*'
  'slf4j-log4j12-*' 'htrace-core-*' 'xercesImpl-*' 'leveldbjni-all-*' 'javax.servlet-api-*'
  'jaxb-api-*' 'activation-*' 'httpcore-*' 'httpclient-*' 'xmlenc-*' 'javax.ws.rs-api-*'
)
NN_CLASS=org.apache.hadoop.hdfs.server.namenode.NameNode
DN_CLASS=org.apache.hadoop.hdfs.server.datanode.DataNode
HMS_CLASS=MetastoreLauncher

die() { echo "hadoop.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------- install

# The marker holds the pattern list: changing the list re-extracts.
jars_ok() { [ "$(cat "$HADOOP_CACHE/jars/.complete" 2>/dev/null)" = "${JAR_PATTERNS[*]}" ]; }

install_jars() {
  if jars_ok; then
    return 0
  fi
  echo "hadoop: downloading $PYSPARK_SDIST (220 MB source package) for the Hadoop 2.7.3 jars"
  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/binlake-hadoop-dl.XXXXXX")
  if ! (download_jars "$tmp"); then
    rm -rf "$tmp"
    die "getting the Hadoop jars from $PYSPARK_SDIST failed"
  fi
  rm -rf "$tmp"
  echo "hadoop: $(ls "$HADOOP_CACHE/jars" | wc -l) jars in $HADOOP_CACHE/jars"
}

# Runs in a subshell under `if`, where errexit does not apply: every step checks.
download_jars() {
  local tmp=$1 sdist wild=() p
  "$PYTHON" -c 'import wheel' 2>/dev/null ||
    "$PYTHON" -m pip install --quiet --disable-pip-version-check wheel || return 1
  # The isolated build of this sdist fails; --no-build-isolation is what works.
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation --no-binary :all: "$PYSPARK_SDIST" -d "$tmp" >/dev/null || return 1
  sdist="$tmp/pyspark-2.4.8.tar.gz"
  [ -f "$sdist" ] || { echo "hadoop.sh: no $sdist after pip download" >&2; return 1; }
  for p in "${JAR_PATTERNS[@]}"; do wild+=("pyspark-2.4.8/deps/jars/$p.jar"); done
  mkdir -p "$tmp/x" && tar -xzf "$sdist" -C "$tmp/x" --wildcards "${wild[@]}" || return 1
  [ -f "$tmp/x/pyspark-2.4.8/deps/jars/hadoop-hdfs-2.7.3.jar" ] || return 1
  rm -rf "$HADOOP_CACHE/jars" && mkdir -p "$HADOOP_CACHE" &&
    mv "$tmp/x/pyspark-2.4.8/deps/jars" "$HADOOP_CACHE/jars" &&
    echo "${JAR_PATTERNS[*]}" >"$HADOOP_CACHE/jars/.complete"
}

install_webapps() {
  local w
  for w in hdfs datanode secondary; do
    local f="$HADOOP_CACHE/res/webapps/$w/WEB-INF/web.xml"
    [ -f "$f" ] && continue
    mkdir -p "$(dirname "$f")"
    echo '<web-app xmlns="http://java.sun.com/xml/ns/javaee" version="2.5"/>' >"$f"
  done
}

install_python() {
  if "$PYTHON" -c 'import pyspark, duckdb, fastavro, cramjam' 2>/dev/null; then
    return 0
  fi
  echo "hadoop: pip install ${PY_PACKAGES[*]} (about 1-2 minutes, 600 MB)"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}" ||
    die "pip install ${PY_PACKAGES[*]} failed"
}

pyspark_jars() {
  local d
  d=$("$PYTHON" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))') ||
    die "pyspark is not installed (run: $SELF install)"
  [ -d "$d" ] || die "$d missing (run: $SELF install)"
  echo "$d"
}

install_launcher() {
  local src="$HERE/java/MetastoreLauncher.java" out="$HADOOP_CACHE/launcher" jars stamp
  jars=$(pyspark_jars)
  # Recompiled when the source or the pyspark installation changes.
  stamp="$(sha256sum "$src" | cut -d' ' -f1) $jars $(ls "$jars" | grep '^hive-metastore')"
  if [ -f "$out/$HMS_CLASS.class" ] && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  command -v javac >/dev/null || die "javac not found (apt-get install openjdk-17-jdk-headless)"
  rm -rf "$out"
  mkdir -p "$out"
  javac -nowarn -d "$out" -cp "$jars/*" "$src" || die "compiling $src failed"
  echo "$stamp" >"$out/.stamp"
  echo "hadoop: compiled the metastore launcher into $out"
}

cmd_install() {
  command -v java >/dev/null || die "java not found (apt-get install openjdk-17-jdk-headless)"
  local reused=1
  jars_ok || reused=0
  install_jars
  install_webapps
  "$PYTHON" -c 'import pyspark, duckdb, fastavro, cramjam' 2>/dev/null || reused=0
  install_python
  [ -f "$HADOOP_CACHE/launcher/$HMS_CLASS.class" ] || reused=0
  install_launcher
  if [ "$reused" = 1 ]; then
    echo "hadoop: installed in $HADOOP_CACHE (reused)"
  fi
}

# ------------------------------------------------------------------------- processes

# True if $1 is a live (non-zombie) process whose command line contains $2.
is_ours() {
  local pid=$1 class=$2 cmd
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$class"* ]]
}

pid_of() { cat "$HADOOP_DIR/$1.pid" 2>/dev/null || true; }

running() { is_ours "$(pid_of "$1")" "$2"; }

# Stops the daemon recorded in $HADOOP_DIR/$1.pid: SIGTERM, SIGKILL after 20 s.
stop_one() {
  local name=$1 class=$2 pid i
  pid=$(pid_of "$name")
  if is_ours "$pid" "$class"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
      is_ours "$pid" "$class" || break
      sleep 0.1
    done
    if is_ours "$pid" "$class"; then
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        is_ours "$pid" "$class" || break
        sleep 0.1
      done
    fi
    echo "hadoop: stopped $name (pid $pid)"
  fi
  rm -f "$HADOOP_DIR/$name.pid"
}

# Starts `java ARGS...` in the background as daemon $1, all output to logs/$1.log, no
# inherited descriptors (callers may read our stdout through a pipe).
launch() {
  local name=$1
  shift
  mkdir -p "$HADOOP_DIR/logs"
  nohup java "$@" >"$HADOOP_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$HADOOP_DIR/$name.pid"
}

# What a failed start stops before exiting (set while a start waits).
ON_FAIL=

# Fails with the logs' tails, after stopping what the failed start launched.
fail_with_log() {
  local msg=$1 name
  shift
  {
    echo "hadoop.sh: $msg"
    for name in "$@"; do
      echo "--- $HADOOP_DIR/logs/$name.log (last 40 lines)"
      tail -n 40 "$HADOOP_DIR/logs/$name.log" 2>/dev/null || true
    done
  } >&2
  if [ -n "$ON_FAIL" ]; then
    "$ON_FAIL" >/dev/null 2>&1 || true
  fi
  exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Dies when one of the ports is taken (readiness checks would otherwise see another server).
ports_free() {
  local p
  for p in "$@"; do
    ! port_open "$p" || die "127.0.0.1:$p is in use (set the port variables, see $SELF)"
  done
}

# A watcher that stops this instance once $HADOOP_OWNER_PID is gone.
watch_owner() {
  local what=$1
  [ -n "${HADOOP_OWNER_PID:-}" ] || return 0
  local wpid
  wpid=$(pid_of "watch-$what")
  if [ -n "$wpid" ] && kill -0 "$wpid" 2>/dev/null; then
    return 0
  fi
  HADOOP_DIR=$HADOOP_DIR nohup bash -c '
    while kill -0 "$1" 2>/dev/null; do sleep 1; done
    exec bash "$2" stop "$3"' watch "$HADOOP_OWNER_PID" "$SELF" "$what" \
    >/dev/null 2>&1 </dev/null &
  echo $! >"$HADOOP_DIR/watch-$what.pid"
}

stop_watch() {
  local what=$1 wpid
  wpid=$(pid_of "watch-$what")
  # Only when called from elsewhere than the watcher itself.
  if [ -n "$wpid" ] && [ "$wpid" != "$PPID" ] && [ "$wpid" != "$$" ] &&
    is_ours "$wpid" "$SELF"; then
    kill "$wpid" 2>/dev/null || true
  fi
  rm -f "$HADOOP_DIR/watch-$what.pid"
}

# ------------------------------------------------------------------------------- HDFS

prop() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }

write_hdfs_conf() {
  local c="$HADOOP_DIR/conf"
  mkdir -p "$c" "$HADOOP_DIR/name" "$HADOOP_DIR/data" "$HADOOP_DIR/logs"
  {
    echo '<?xml version="1.0"?><configuration>'
    prop fs.defaultFS "hdfs://127.0.0.1:$NN_PORT"
    prop hadoop.tmp.dir "$HADOOP_DIR/tmp"
    echo '</configuration>'
  } >"$c/core-site.xml"
  {
    echo '<?xml version="1.0"?><configuration>'
    prop dfs.namenode.name.dir "file://$HADOOP_DIR/name"
    prop dfs.datanode.data.dir "file://$HADOOP_DIR/data"
    prop dfs.replication 1
    prop dfs.blocksize "$BLOCK_SIZE"
    prop dfs.namenode.rpc-address "127.0.0.1:$NN_PORT"
    prop dfs.namenode.rpc-bind-host 127.0.0.1
    prop dfs.namenode.http-address "127.0.0.1:$NN_HTTP_PORT"
    prop dfs.namenode.http-bind-host 127.0.0.1
    prop dfs.namenode.https-address 127.0.0.1:0
    prop dfs.namenode.secondary.http-address 127.0.0.1:0
    prop dfs.namenode.secondary.https-address 127.0.0.1:0
    prop dfs.datanode.address "127.0.0.1:$DN_PORT"
    prop dfs.datanode.http.address "127.0.0.1:$DN_HTTP_PORT"
    prop dfs.datanode.https.address 127.0.0.1:0
    prop dfs.datanode.ipc.address "127.0.0.1:$DN_IPC_PORT"
    prop dfs.datanode.hostname 127.0.0.1
    prop dfs.namenode.datanode.registration.ip-hostname-check false
    prop dfs.namenode.safemode.extension 0
    prop dfs.permissions.enabled false
    prop dfs.webhdfs.enabled false
    prop dfs.heartbeat.interval 1
    prop dfs.namenode.heartbeat.recheck-interval 10000
    echo '</configuration>'
  } >"$c/hdfs-site.xml"
  cat >"$c/log4j.properties" <<'EOF'
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
EOF
}

hdfs_cp() { echo "$HADOOP_DIR/conf:$HADOOP_CACHE/res:$HADOOP_CACHE/jars/*"; }

# The java arguments of an HDFS daemon, up to its class.
hdfs_java() {
  HDFS_JAVA=(-Xmx512m -Djava.net.preferIPv4Stack=true "-Dhadoop.log.dir=$HADOOP_DIR/logs"
    -cp "$(hdfs_cp)")
}

jmx() {
  curl -sf --max-time 2 "http://127.0.0.1:$NN_HTTP_PORT/jmx?qry=Hadoop:service=NameNode,name=$1" 2>/dev/null
}

hdfs_ready() {
  jmx NameNodeInfo | grep -q '"Safemode" *: *""' &&
    jmx FSNamesystemState | grep -q '"NumLiveDataNodes" *: *1[,}[:space:]]'
}

start_hdfs() {
  jars_ok || die "Hadoop jars missing in $HADOOP_CACHE (run: $SELF install)"
  if running namenode "$NN_CLASS" && running datanode "$DN_CLASS"; then
    echo "hdfs: already running at hdfs://127.0.0.1:$NN_PORT (pids $(pid_of namenode) $(pid_of datanode))"
    return 0
  fi
  stop_one namenode "$NN_CLASS" >/dev/null
  stop_one datanode "$DN_CLASS" >/dev/null
  ports_free "$NN_PORT" "$NN_HTTP_PORT" "$DN_PORT" "$DN_HTTP_PORT" "$DN_IPC_PORT"
  local t0=$SECONDS
  write_hdfs_conf
  hdfs_java
  if [ ! -f "$HADOOP_DIR/name/current/VERSION" ]; then
    java "${HDFS_JAVA[@]}" "$NN_CLASS" -format -force -nonInteractive \
      >"$HADOOP_DIR/logs/format.log" 2>&1 </dev/null ||
      fail_with_log "formatting the NameNode failed" format
    # A data dir from an earlier format would refuse the new cluster id.
    rm -rf "$HADOOP_DIR/data"
    mkdir -p "$HADOOP_DIR/data"
  fi
  launch namenode "${HDFS_JAVA[@]}" "$NN_CLASS"
  launch datanode "${HDFS_JAVA[@]}" "$DN_CLASS"
  watch_owner hdfs
  ON_FAIL=stop_hdfs
  until hdfs_ready; do
    running namenode "$NN_CLASS" || fail_with_log "the NameNode exited" namenode
    running datanode "$DN_CLASS" || fail_with_log "the DataNode exited" datanode
    ((SECONDS - t0 < START_TIMEOUT)) ||
      fail_with_log "HDFS not ready within ${START_TIMEOUT}s (JMX on 127.0.0.1:$NN_HTTP_PORT: safe mode off, 1 live DataNode)" namenode datanode
    sleep 0.2
  done
  ON_FAIL=
  echo "hdfs: started hdfs://127.0.0.1:$NN_PORT (NameNode pid $(pid_of namenode), DataNode pid $(pid_of datanode)) in $((SECONDS - t0)) s; data in $HADOOP_DIR"
}

stop_hdfs() {
  stop_watch hdfs
  stop_one datanode "$DN_CLASS"
  stop_one namenode "$NN_CLASS"
}

# -------------------------------------------------------------------------- metastore

write_hms_conf() {
  local fs=$1 wh=$2 c="$HADOOP_DIR/hms-conf"
  mkdir -p "$c" "$HADOOP_DIR/metastore"
  {
    echo '<?xml version="1.0"?><configuration>'
    prop javax.jdo.option.ConnectionURL "jdbc:derby:;databaseName=$HADOOP_DIR/metastore/db;create=true"
    prop javax.jdo.option.ConnectionDriverName org.apache.derby.jdbc.EmbeddedDriver
    prop datanucleus.schema.autoCreateAll true
    prop hive.metastore.schema.verification false
    prop hive.metastore.warehouse.dir "$wh"
    prop fs.defaultFS "$fs"
    prop hive.metastore.event.db.notification.api.auth false
    echo '</configuration>'
  } >"$c/hive-site.xml"
  cat >"$c/log4j2.properties" <<'EOF'
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{ISO8601} %p %c{2}: %m%n
logger.hms.name = org.apache.hadoop.hive.metastore
logger.hms.level = info
EOF
}

start_metastore() {
  local fs=$1
  if running metastore "$HMS_CLASS"; then
    echo "metastore: already running at thrift://127.0.0.1:$HMS_PORT (pid $(pid_of metastore))"
    return 0
  fi
  stop_one metastore "$HMS_CLASS" >/dev/null
  [ -f "$HADOOP_CACHE/launcher/$HMS_CLASS.class" ] ||
    die "metastore launcher missing in $HADOOP_CACHE (run: $SELF install)"
  ports_free "$HMS_PORT"
  local jars wh t0=$SECONDS
  jars=$(pyspark_jars)
  case "$fs" in
    file:*) wh=${HIVE_WAREHOUSE_DIR:-file://$HADOOP_DIR/metastore/warehouse} ;;
    *) wh=${HIVE_WAREHOUSE_DIR:-${fs%/}/user/hive/warehouse} ;;
  esac
  write_hms_conf "$fs" "$wh"
  (cd "$HADOOP_DIR/metastore" &&
    launch metastore -Xmx512m -Djava.net.preferIPv4Stack=true \
      -Dderby.stream.error.file="$HADOOP_DIR/logs/derby.log" \
      -Dlog4j2.configurationFile="$HADOOP_DIR/hms-conf/log4j2.properties" \
      -cp "$HADOOP_DIR/hms-conf:$HADOOP_CACHE/launcher:$jars/*" "$HMS_CLASS" "$HMS_PORT")
  watch_owner metastore
  ON_FAIL=stop_metastore
  until port_open "$HMS_PORT"; do
    running metastore "$HMS_CLASS" || fail_with_log "the metastore exited" metastore
    ((SECONDS - t0 < START_TIMEOUT)) ||
      fail_with_log "the metastore did not open 127.0.0.1:$HMS_PORT within ${START_TIMEOUT}s" metastore
    sleep 0.2
  done
  ON_FAIL=
  echo "metastore: started thrift://127.0.0.1:$HMS_PORT (pid $(pid_of metastore), fs.defaultFS $fs, warehouse $wh) in $((SECONDS - t0)) s"
}

stop_metastore() {
  stop_watch metastore
  stop_one metastore "$HMS_CLASS"
}

# ---------------------------------------------------------------------------- commands

cmd_start() {
  mkdir -p "$HADOOP_DIR"
  case "${1:-all}" in
    all)
      start_hdfs
      start_metastore "${HIVE_FS_DEFAULT:-hdfs://127.0.0.1:$NN_PORT}"
      ;;
    hdfs) start_hdfs ;;
    metastore)
      local fs=file:///
      running namenode "$NN_CLASS" && fs=hdfs://127.0.0.1:$NN_PORT
      start_metastore "${HIVE_FS_DEFAULT:-$fs}"
      ;;
    *) die "usage: $0 start [all|hdfs|metastore]" ;;
  esac
}

cmd_stop() {
  [ -d "$HADOOP_DIR" ] || return 0
  case "${1:-all}" in
    all) stop_metastore; stop_hdfs ;;
    hdfs) stop_hdfs ;;
    metastore) stop_metastore ;;
    *) die "usage: $0 stop [all|hdfs|metastore]" ;;
  esac
}

cmd_status() {
  local ok=0 name class what
  for what in namenode:$NN_CLASS datanode:$DN_CLASS metastore:$HMS_CLASS; do
    name=${what%%:*}
    class=${what#*:}
    if running "$name" "$class"; then
      echo "$name: running (pid $(pid_of "$name"))"
    else
      echo "$name: stopped"
      ok=1
    fi
  done
  echo "hdfs://127.0.0.1:$NN_PORT thrift://127.0.0.1:$HMS_PORT data in $HADOOP_DIR"
  return $ok
}

cmd_fs() {
  jars_ok || die "Hadoop jars missing in $HADOOP_CACHE (run: $SELF install)"
  [ -f "$HADOOP_DIR/conf/core-site.xml" ] || die "no HDFS configured in $HADOOP_DIR (run: $SELF start hdfs)"
  java -Xmx256m -Djava.net.preferIPv4Stack=true -Dhadoop.root.logger=WARN,console \
    -cp "$(hdfs_cp)" org.apache.hadoop.fs.FsShell "$@"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start "${2:-all}" ;;
  stop) cmd_stop "${2:-all}" ;;
  status) cmd_status ;;
  fs) shift; cmd_fs "$@" ;;
  *) echo "usage: $0 install | start [all|hdfs|metastore] | stop [all|hdfs|metastore] | status | fs ARGS..." >&2; exit 2 ;;
esac
