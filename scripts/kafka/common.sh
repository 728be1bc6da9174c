# shellcheck shell=bash
# Functions that start.sh, stop.sh, node.sh and run-class.sh source. This file is not a command.

# The directory that start.sh and stop.sh use when --dir is not given.
default_cluster_dir() {
  echo "${CONSIGN_KAFKA_DIR:-${TMPDIR:-/tmp}/consign-kafka}"
}

# Prints the java command to run: $JAVA_HOME/bin/java when JAVA_HOME is set, else java.
java_command() {
  if [ -n "${JAVA_HOME:-}" ]; then
    echo "$JAVA_HOME/bin/java"
  else
    echo java
  fi
}

# Exits with an error unless Java 17 or newer is installed, which Kafka 4.x brokers and
# tools require.
require_java_17() {
  local java version_line major
  java="$(java_command)"
  if ! version_line="$("$java" -version 2>&1 | head -n 1)"; then
    echo "error: $java not found; install Java 17 or newer (Debian package openjdk-17-jre-headless)" >&2
    exit 1
  fi
  # Matches both 'version "17.0.15"' and the old 'version "1.8.0_392"' form.
  major="$(sed -n 's/.*version "\([0-9]*\)\.\{0,1\}\([0-9]*\).*/\1 \2/p' <<<"$version_line")"
  if [ "${major%% *}" = 1 ]; then
    major="${major##* }"
  else
    major="${major%% *}"
  fi
  if [ -z "$major" ] || [ "$major" -lt 17 ]; then
    echo "error: Kafka 4.x needs Java 17 or newer, but $java reports: $version_line" >&2
    exit 1
  fi
}

# Succeeds when the pid is a running broker started with the given server.properties.
# Comparing the command line guards against a pid that the system has reused since.
is_node_process() {
  local pid="$1" config="$2"
  # The process can exit between the test and the read, so the read's error is hidden.
  [ -r "/proc/$pid/cmdline" ] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$config"
}

# Prints the comment block at the top of a script, below the #! line, as its help text.
print_usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}

# Starts the broker of a node folder that start.sh wrote, in the background, and writes
# its pid to NODE_DIR/pid. Arguments: the java command, the libs folder, the node folder
# and the JVM heap options. The JVM's own output goes to NODE_DIR/logs/stdout.log.
launch_node() {
  local java="$1" libs="$2" node_dir="$3"
  shift 3
  "$java" "$@" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$node_dir/logs" \
    -Dlog4j2.configurationFile="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/broker-log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$node_dir/server.properties" \
    </dev/null >>"$node_dir/logs/stdout.log" 2>&1 &
  echo "$!" >"$node_dir/pid"
}
