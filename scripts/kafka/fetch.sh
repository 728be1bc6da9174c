#!/usr/bin/env bash
# Downloads the Apache Kafka jars listed in pom.xml, with everything they load at run
# time, from Maven Central into a cache directory, and prints that directory's libs/
# folder on the last line of stdout. A later run with the same pom.xml and version
# finds the cache and returns without starting Maven.
#
# Environment:
#   CONSIGN_KAFKA_CACHE    cache root (default /var/cache/consign/kafka, or
#                          $HOME/.cache/consign/kafka when that is not writable)
#   CONSIGN_KAFKA_VERSION  Kafka version (default: kafka.version in pom.xml)
set -euo pipefail

script_dir="$(cd "$(dirname "$0")" && pwd)"
pom="$script_dir/pom.xml"

cache_root="${CONSIGN_KAFKA_CACHE:-/var/cache/consign/kafka}"
if ! { mkdir -p "$cache_root" 2>/dev/null && [ -w "$cache_root" ]; }; then
  fallback="$HOME/.cache/consign/kafka"
  echo "fetch.sh: $cache_root is not writable, using $fallback" >&2
  cache_root="$fallback"
  mkdir -p "$cache_root"
fi

pinned_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
version="${CONSIGN_KAFKA_VERSION:-$pinned_version}"
if [ -z "$version" ]; then
  echo "fetch.sh: error: no kafka.version in $pom and CONSIGN_KAFKA_VERSION is not set" >&2
  exit 1
fi

# The directory name carries a hash of pom.xml and the version, so that editing the
# pom fetches into a new directory and never changes jars under a running broker.
key="$( { cat "$pom"; echo "$version"; } | sha256sum | cut -c1-12)"
install_dir="$cache_root/kafka_2.13-$version-$key"

if [ -f "$install_dir/complete" ]; then
  echo "$install_dir/libs"
  exit 0
fi

# Serializes concurrent first runs, for example parallel test jobs on a fresh machine.
exec 9>"$cache_root/.fetch.lock"
flock 9
if [ -f "$install_dir/complete" ]; then
  echo "$install_dir/libs"
  exit 0
fi

if ! command -v mvn >/dev/null; then
  echo "fetch.sh: error: mvn not found; install Maven 3 (Debian package maven)" >&2
  exit 1
fi

echo "fetch.sh: downloading Apache Kafka $version into $install_dir" >&2
staging_dir="$install_dir.partial"
rm -rf "$staging_dir" "$install_dir"
mkdir -p "$staging_dir/libs"

# Maven prints its errors on stdout, which goes to stderr here so that stdout carries
# only the libs path. Maven 3.8.7 prints color reset codes even with -q -B, and sed
# removes them with the empty lines they leave.
if ! mvn -q -B -f "$pom" \
  -Dkafka.version="$version" \
  dependency:copy-dependencies \
  -DincludeScope=runtime \
  -DoutputDirectory="$staging_dir/libs" 2>&1 \
  | sed 's/\x1b\[[0-9;]*m//g; /^$/d' >&2; then
  rm -rf "$staging_dir"
  echo "fetch.sh: error: Maven could not resolve Apache Kafka $version (see the output above)" >&2
  exit 1
fi

echo "$version" >"$staging_dir/complete"
mv "$staging_dir" "$install_dir"
echo "$install_dir/libs"
