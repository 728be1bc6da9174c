#!/usr/bin/env bash
# Runs a Java class from the cached Kafka jars, like Kafka's own bin/kafka-run-class.sh.
# Fetches the jars first when they are not cached (see fetch.sh).
#
# Usage: run-class.sh CLASS [ARGUMENTS...]
# Example: run-class.sh org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:19092 --list
#
# Environment:
#   CONSIGN_KAFKA_TOOL_HEAP_OPTS  JVM heap options (default -Xmx256m)
#   plus those of fetch.sh
set -euo pipefail

script_dir="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=common.sh
source "$script_dir/common.sh"

if [ "$#" -eq 0 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  print_usage "$0"
  exit 0
fi

require_java_17
libs="$("$script_dir/fetch.sh" | tail -n 1)"
read -r -a heap_opts <<<"${CONSIGN_KAFKA_TOOL_HEAP_OPTS:--Xmx256m}"
exec "$(java_command)" "${heap_opts[@]}" \
  -Dlog4j2.configurationFile="$script_dir/tools-log4j2.properties" \
  -cp "$libs/*" "$@"
