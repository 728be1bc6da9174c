#!/usr/bin/env bash
# Stops, kills or starts again one node of a cluster that start.sh started, keeping its
# storage, for tests of broker failures and leader changes.
#
# Usage: node.sh [--dir DIR] --node N stop|kill|start
#   --dir DIR  the directory given to start.sh
#              (default $CONSIGN_KAFKA_DIR, else ${TMPDIR:-/tmp}/consign-kafka)
#   --node N   the node number, from 1 to the cluster's size
#   stop       sends SIGTERM and waits for the node to exit, with SIGKILL after the
#              timeout
#   kill       sends SIGKILL and waits for the node to exit
#   start      starts the stopped node on its existing storage and waits until its
#              client port accepts connections
#
# Environment:
#   CONSIGN_KAFKA_HEAP_OPTS      JVM heap options (default -Xms128m -Xmx512m)
#   CONSIGN_KAFKA_START_TIMEOUT  seconds to wait for the client port (default 90)
#   CONSIGN_KAFKA_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 30)
set -euo pipefail

script_dir="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=common.sh
source "$script_dir/common.sh"

cluster_dir="$(default_cluster_dir)"
node_id=""
action=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --dir)
      [ "$#" -ge 2 ] || { echo "node.sh: error: --dir needs a directory" >&2; exit 2; }
      cluster_dir="$2"
      shift 2
      ;;
    --node)
      [ "$#" -ge 2 ] || { echo "node.sh: error: --node needs a number" >&2; exit 2; }
      node_id="$2"
      shift 2
      ;;
    stop | kill | start)
      action="$1"
      shift
      ;;
    -h | --help)
      print_usage "$0"
      exit 0
      ;;
    *)
      echo "node.sh: error: unknown argument '$1'" >&2
      print_usage "$0" >&2
      exit 2
      ;;
  esac
done

if [ -z "$action" ]; then
  echo "node.sh: error: missing action; give stop, kill or start" >&2
  exit 2
fi
node_dir="$cluster_dir/node-$node_id"
if ! [[ "$node_id" =~ ^[0-9]+$ ]] || [ ! -f "$node_dir/server.properties" ]; then
  echo "node.sh: error: no node '$node_id' in $cluster_dir; give --node with the number of a node that start.sh started there" >&2
  exit 2
fi
config="$node_dir/server.properties"

running_pid() {
  local pid
  [ -f "$node_dir/pid" ] || return 1
  pid="$(cat "$node_dir/pid")"
  is_node_process "$pid" "$config" && echo "$pid"
}

# Waits until the node's process is gone, for at most $1 seconds.
wait_exit() {
  local deadline=$((SECONDS + $1))
  while running_pid >/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.2
  done
  ! running_pid >/dev/null
}

case "$action" in
  stop | kill)
    if ! pid="$(running_pid)"; then
      echo "node.sh: node $node_id is not running" >&2
      exit 0
    fi
    if [ "$action" = stop ]; then
      kill -TERM "$pid" 2>/dev/null || true
      if ! wait_exit "${CONSIGN_KAFKA_STOP_TIMEOUT:-30}"; then
        echo "node.sh: node $node_id (pid $pid) still running after SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
    else
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait_exit 30
    rm -f "$node_dir/pid"
    echo "node.sh: node $node_id (pid $pid) stopped with $action" >&2
    ;;
  start)
    if pid="$(running_pid)"; then
      echo "node.sh: error: node $node_id is already running (pid $pid)" >&2
      exit 1
    fi
    require_java_17
    libs="$("$script_dir/fetch.sh" | tail -n 1)"
    read -r -a heap_opts <<<"${CONSIGN_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
    port="$(sed -n 's|^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*|\1|p' "$config")"
    launch_node "$(java_command)" "$libs" "$node_dir" "${heap_opts[@]}"
    pid="$(cat "$node_dir/pid")"
    deadline=$((SECONDS + ${CONSIGN_KAFKA_START_TIMEOUT:-90}))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "node.sh: error: node $node_id exited during startup; see $node_dir/logs/server.log" >&2
        exit 1
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "node.sh: error: node $node_id accepted no connection on port $port in time; see $node_dir/logs/server.log" >&2
        exit 1
      fi
      sleep 0.2
    done
    echo "node.sh: node $node_id started again (pid $pid, client port $port)" >&2
    ;;
esac
