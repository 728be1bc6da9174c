#!/usr/bin/env bash
# Starts a local Apache Kafka cluster in KRaft mode on 127.0.0.1 for integration tests,
# waits until every broker responds to an ApiVersions request, and prints the bootstrap
# address list on the last line of stdout. Progress and errors go to stderr.
#
# Usage: start.sh [--brokers 1|3] [--dir DIR]
#   --brokers N  number of nodes, each a combined broker and controller (default 1)
#   --dir DIR    directory for configuration, data, logs and pid files
#                (default $CONSIGN_KAFKA_DIR, else ${TMPDIR:-/tmp}/consign-kafka)
#
# Every start formats new, empty storage: the node-N folders of DIR from an earlier run
# are deleted. Stop the cluster with stop.sh and the same --dir.
#
# Environment:
#   CONSIGN_KAFKA_PORT           client port of node 1; node N listens on PORT+N-1 and
#                                its controller on PORT+100+N-1 (default 19092)
#   CONSIGN_KAFKA_HEAP_OPTS      JVM heap options per node (default -Xms128m -Xmx512m)
#   CONSIGN_KAFKA_START_TIMEOUT  seconds to wait for the brokers (default 90)
#   plus those of fetch.sh
set -euo pipefail

script_dir="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=common.sh
source "$script_dir/common.sh"

node_count=1
cluster_dir="$(default_cluster_dir)"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --brokers)
      [ "$#" -ge 2 ] || { echo "start.sh: error: --brokers needs a value (1 or 3)" >&2; exit 2; }
      node_count="$2"
      shift 2
      ;;
    --dir)
      [ "$#" -ge 2 ] || { echo "start.sh: error: --dir needs a directory" >&2; exit 2; }
      cluster_dir="$2"
      shift 2
      ;;
    -h | --help)
      print_usage "$0"
      exit 0
      ;;
    *)
      echo "start.sh: error: unknown argument '$1'" >&2
      print_usage "$0" >&2
      exit 2
      ;;
  esac
done

case "$node_count" in
  1) min_insync_replicas=1 ;;
  3) min_insync_replicas=2 ;;
  *)
    echo "start.sh: error: invalid --brokers '$node_count'; use 1 or 3" >&2
    exit 2
    ;;
esac

base_port="${CONSIGN_KAFKA_PORT:-19092}"
if ! [[ "$base_port" =~ ^[0-9]+$ ]] || [ "$base_port" -lt 1024 ] || [ "$base_port" -gt 65400 ]; then
  echo "start.sh: error: invalid CONSIGN_KAFKA_PORT '$base_port'; use a number from 1024 to 65400" >&2
  exit 2
fi
start_timeout="${CONSIGN_KAFKA_START_TIMEOUT:-90}"
if ! [[ "$start_timeout" =~ ^[0-9]+$ ]]; then
  echo "start.sh: error: invalid CONSIGN_KAFKA_START_TIMEOUT '$start_timeout'; use whole seconds" >&2
  exit 2
fi
read -r -a heap_opts <<<"${CONSIGN_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"

require_java_17
java="$(java_command)"
libs="$("$script_dir/fetch.sh" | tail -n 1)"

mkdir -p "$cluster_dir"
cluster_dir="$(cd "$cluster_dir" && pwd)"

# Reject a start over a cluster that is still running from this directory.
for pid_file in "$cluster_dir"/node-*/pid; do
  [ -f "$pid_file" ] || continue
  node_dir="$(dirname "$pid_file")"
  pid="$(cat "$pid_file")"
  if is_node_process "$pid" "$node_dir/server.properties"; then
    echo "start.sh: error: Kafka is already running from $cluster_dir ($(basename "$node_dir"), pid $pid);" \
      "run $script_dir/stop.sh --dir $cluster_dir first" >&2
    exit 1
  fi
done

client_port() { echo $((base_port + $1 - 1)); }
controller_port() { echo $((base_port + 100 + $1 - 1)); }

# Fail early and clearly when another process uses one of the ports.
for node_id in $(seq 1 "$node_count"); do
  for port in "$(client_port "$node_id")" "$(controller_port "$node_id")"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "start.sh: error: port $port on 127.0.0.1 is already in use; stop that process or set CONSIGN_KAFKA_PORT" >&2
      exit 1
    fi
  done
done

quorum_voters=""
bootstrap_servers=""
for node_id in $(seq 1 "$node_count"); do
  quorum_voters+="${quorum_voters:+,}$node_id@127.0.0.1:$(controller_port "$node_id")"
  bootstrap_servers+="${bootstrap_servers:+,}127.0.0.1:$(client_port "$node_id")"
done

# The command that runs a Kafka tool class, as run-class.sh does.
tool_command=("$java" -Xmx256m -Dlog4j2.configurationFile="$script_dir/tools-log4j2.properties" -cp "$libs/*")

write_server_properties() {
  local node_id="$1" node_dir="$2"
  cat >"$node_dir/server.properties" <<EOF
# Written by scripts/kafka/start.sh for a local test cluster of $node_count node(s).
# start.sh rewrites this file on every start.
process.roles=broker,controller
node.id=$node_id
controller.quorum.voters=$quorum_voters
listeners=PLAINTEXT://127.0.0.1:$(client_port "$node_id"),CONTROLLER://127.0.0.1:$(controller_port "$node_id")
advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$node_id")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$node_dir/data

# Topics exist only when created on purpose. Only an in-sync replica can become leader,
# so a leader change keeps every record that was acknowledged with acks=all.
auto.create.topics.enable=false
unclean.leader.election.enable=false
num.partitions=1
default.replication.factor=$node_count
min.insync.replicas=$min_insync_replicas

# The group offsets and transaction state topics are created on first use, while a
# client waits. With the default of 50 partitions each, a forwarded command timed out
# on a loaded two-core machine. The few consumer groups and transactional producers
# here need only a few partitions.
offsets.topic.num.partitions=4
offsets.topic.replication.factor=$node_count
transaction.state.log.num.partitions=4
transaction.state.log.replication.factor=$node_count
transaction.state.log.min.isr=$min_insync_replicas
share.coordinator.state.topic.replication.factor=$node_count
share.coordinator.state.topic.min.isr=$min_insync_replicas

# A new consumer group rebalances at once instead of waiting 3 s (the default) for more
# members, because tests start their consumers one at a time.
group.initial.rebalance.delay.ms=0
EOF
}

cluster_id="$("${tool_command[@]}" kafka.tools.StorageTool random-uuid)"
echo "$cluster_id" >"$cluster_dir/cluster-id"
echo "$bootstrap_servers" >"$cluster_dir/bootstrap-servers"

# The nodes are formatted in parallel, which saves a JVM start per extra node.
format_pids=()
for node_id in $(seq 1 "$node_count"); do
  node_dir="$cluster_dir/node-$node_id"
  rm -rf "$node_dir"
  mkdir -p "$node_dir/data" "$node_dir/logs"
  write_server_properties "$node_id" "$node_dir"
  "${tool_command[@]}" kafka.tools.StorageTool format \
    --config "$node_dir/server.properties" --cluster-id "$cluster_id" \
    >"$node_dir/logs/format.log" 2>&1 &
  format_pids+=("$!")
done
for node_id in $(seq 1 "$node_count"); do
  if ! wait "${format_pids[$((node_id - 1))]}"; then
    echo "start.sh: error: formatting the storage of node $node_id failed:" >&2
    cat "$cluster_dir/node-$node_id/logs/format.log" >&2
    exit 1
  fi
done

# Background jobs of a non-interactive shell ignore SIGINT, so a Ctrl-C in the calling
# terminal leaves the brokers running until stop.sh.
for node_id in $(seq 1 "$node_count"); do
  node_dir="$cluster_dir/node-$node_id"
  launch_node "$java" "$libs" "$node_dir" "${heap_opts[@]}"
  echo "start.sh: node $node_id: pid $(cat "$node_dir/pid"), client port $(client_port "$node_id")," \
    "controller port $(controller_port "$node_id"), logs in $node_dir/logs" >&2
done

# Prints why node N failed, with the last 50 lines of its logs, and stops the cluster.
fail_start() {
  local node_id="$1" reason="$2" node_dir="$cluster_dir/node-$1" log
  echo "start.sh: error: Kafka node $node_id $reason" >&2
  for log in "$node_dir/logs/server.log" "$node_dir/logs/stdout.log"; do
    if [ -s "$log" ]; then
      echo "---- last 50 lines of $log" >&2
      tail -n 50 "$log" >&2
    else
      echo "---- $log is empty" >&2
    fi
  done
  "$script_dir/stop.sh" --dir "$cluster_dir" >&2 || true
  exit 1
}

# Succeeds when every client port accepts connections and one BrokerApiVersionsCommand
# run lists every node as a registered broker that responded to its ApiVersions
# request. The command prints "-> ERROR" for a broker it could not reach. On failure,
# sets unready_node and unready_reason to the first node that is not ready.
all_ready() {
  local node_id output
  for node_id in $(seq 1 "$node_count"); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$(client_port "$node_id")") 2>/dev/null; then
      unready_node="$node_id"
      unready_reason="accepted no connection on port $(client_port "$node_id")"
      return 1
    fi
  done

  # The time limit keeps a broker that accepts connections but never replies from
  # holding the loop past its deadline for the admin client's 60 s default.
  if ! output="$(timeout 20 "${tool_command[@]}" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$bootstrap_servers" 2>/dev/null)"; then
    unready_node=1
    unready_reason="and its peers did not respond to BrokerApiVersionsCommand"
    return 1
  fi
  for node_id in $(seq 1 "$node_count"); do
    if ! grep -q "^127.0.0.1:$(client_port "$node_id") (id: $node_id .*) -> ($" <<<"$output"; then
      unready_node="$node_id"
      unready_reason="was not listed as a registered broker that responds to ApiVersions requests"
      return 1
    fi
  done
}

# Stops the nodes when start.sh is interrupted before they are ready.
trap 'echo "start.sh: interrupted; stopping the nodes" >&2; "$script_dir/stop.sh" --dir "$cluster_dir" >&2; exit 130' INT TERM

started_at="$SECONDS"
while true; do
  for node_id in $(seq 1 "$node_count"); do
    pid="$(cat "$cluster_dir/node-$node_id/pid")"
    if ! kill -0 "$pid" 2>/dev/null; then
      fail_start "$node_id" "exited during startup"
    fi
  done
  if all_ready; then
    break
  fi
  if [ $((SECONDS - started_at)) -ge "$start_timeout" ]; then
    fail_start "$unready_node" "timed out after $start_timeout s: it $unready_reason"
  fi
  sleep 1
done

trap - INT TERM
echo "start.sh: $node_count node(s) ready after $((SECONDS - started_at)) s" >&2
echo "$bootstrap_servers"
