#!/usr/bin/env bash
# Runs every test of consign: installs what the tests need, starts an Apache Kafka
# broker, runs the workspace's tests, and stops anything it started.
#
# The build directory defaults to a cache outside the clone, so that repeated runs,
# including CI on the same machine, do not rebuild RocksDB; set CARGO_TARGET_DIR to
# choose another.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  if mkdir -p /var/cache/consign/target 2>/dev/null && [ -w /var/cache/consign/target ]; then
    export CARGO_TARGET_DIR=/var/cache/consign/target
  else
    export CARGO_TARGET_DIR="$HOME/.cache/consign/target"
  fi
fi
echo "building in $CARGO_TARGET_DIR"
# A test run builds once; incremental state would only take disk space.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

cargo build --workspace --all-targets --locked

# Each change leaves the earlier test executables, about 600 MB each, in the build
# directory. Only the newest of each name is kept, so that a build directory kept
# across runs does not fill the disk. Cargo rebuilds any that it still needs.
find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' \
    -printf '%T@ %f\n' |
  sort -rn |
  awk '{ name = $2; sub(/-[0-9a-f]+$/, "", name); if (seen[name]++) print $2 }' |
  while read -r stale; do
    rm -f "$CARGO_TARGET_DIR/debug/deps/$stale" "$CARGO_TARGET_DIR/debug/deps/$stale.d"
  done

# A one-node Apache Kafka broker on a loopback port for the Kafka tests, stopped on
# exit whatever happens. Its jars come from Maven Central and are cached.
kafka_dir=$(mktemp -d)
trap 'scripts/kafka/stop.sh --dir "$kafka_dir" >/dev/null; rm -rf "$kafka_dir"' EXIT
CONSIGN_KAFKA_BROKERS=$(scripts/kafka/start.sh --dir "$kafka_dir" | tail -n 1)
export CONSIGN_KAFKA_BROKERS
echo "Kafka broker at $CONSIGN_KAFKA_BROKERS"

cargo test --workspace --locked
