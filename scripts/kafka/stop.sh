#!/usr/bin/env bash
# Stops the Kafka nodes that start.sh started from a directory: sends SIGTERM to all of
# them, waits for a clean shutdown, and sends SIGKILL to any still running after the
# timeout. Succeeds when nothing is running, so it is safe to call twice.
#
# Usage: stop.sh [--dir DIR]
#   --dir DIR  the directory given to start.sh
#              (default $CONSIGN_KAFKA_DIR, else ${TMPDIR:-/tmp}/consign-kafka)
#
# Environment:
#   CONSIGN_KAFKA_STOP_TIMEOUT  seconds to wait after SIGTERM before SIGKILL (default 30)
set -euo pipefail

script_dir="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=common.sh
source "$script_dir/common.sh"

cluster_dir="$(default_cluster_dir)"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --dir)
      [ "$#" -ge 2 ] || { echo "stop.sh: error: --dir needs a directory" >&2; exit 2; }
      cluster_dir="$2"
      shift 2
      ;;
    -h | --help)
      print_usage "$0"
      exit 0
      ;;
    *)
      echo "stop.sh: error: unknown argument '$1'" >&2
      print_usage "$0" >&2
      exit 2
      ;;
  esac
done

stop_timeout="${CONSIGN_KAFKA_STOP_TIMEOUT:-30}"
if ! [[ "$stop_timeout" =~ ^[0-9]+$ ]]; then
  echo "stop.sh: error: invalid CONSIGN_KAFKA_STOP_TIMEOUT '$stop_timeout'; use whole seconds" >&2
  exit 2
fi

if [ ! -d "$cluster_dir" ]; then
  echo "stop.sh: no Kafka node is running from $cluster_dir (no such directory)" >&2
  exit 0
fi
cluster_dir="$(cd "$cluster_dir" && pwd)"

# Pid files of the nodes that are still running. A pid file whose process is gone is
# removed here.
running_pid_files=()
for pid_file in "$cluster_dir"/node-*/pid; do
  [ -f "$pid_file" ] || continue
  pid="$(cat "$pid_file")"
  if is_node_process "$pid" "$(dirname "$pid_file")/server.properties"; then
    running_pid_files+=("$pid_file")
  else
    rm -f "$pid_file"
  fi
done

if [ "${#running_pid_files[@]}" -eq 0 ]; then
  echo "stop.sh: no Kafka node is running from $cluster_dir" >&2
  exit 0
fi

# All nodes get SIGTERM at once, because a node stopped after the others have lost the
# controller quorum cannot finish its controlled shutdown. With Kafka 4.4.0, the last of
# three nodes stopped one by one was still running 60 s after its SIGTERM.
for pid_file in "${running_pid_files[@]}"; do
  pid="$(cat "$pid_file")"
  echo "stop.sh: sending SIGTERM to $(basename "$(dirname "$pid_file")") (pid $pid)" >&2
  kill -TERM "$pid" 2>/dev/null || true
done

# Prints the pid files whose process is still running.
still_running() {
  local pid_file
  for pid_file in "${running_pid_files[@]}"; do
    if is_node_process "$(cat "$pid_file")" "$(dirname "$pid_file")/server.properties"; then
      echo "$pid_file"
    fi
  done
}

started_at="$SECONDS"
while [ -n "$(still_running)" ] && [ $((SECONDS - started_at)) -lt "$stop_timeout" ]; do
  sleep 0.5
done

mapfile -t remaining_pid_files < <(still_running)
for pid_file in "${remaining_pid_files[@]}"; do
  pid="$(cat "$pid_file")"
  echo "stop.sh: $(basename "$(dirname "$pid_file")") (pid $pid) still running after $stop_timeout s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
done
while [ -n "$(still_running)" ]; do
  sleep 0.2
done

for pid_file in "${running_pid_files[@]}"; do
  rm -f "$pid_file"
done
echo "stop.sh: stopped ${#running_pid_files[@]} node(s) in $((SECONDS - started_at)) s" >&2
