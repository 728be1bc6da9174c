#!/usr/bin/env bash
# Installs the system packages and Python modules that building and testing consign
# need, skipping whatever is already present: among them Chromium and chromedriver
# for the browser tests of the pages. Uses sudo when not run as root.
set -euo pipefail

packages=(
  build-essential pkg-config libclang-dev cmake
  libcurl4-openssl-dev libssl-dev libsasl2-dev zlib1g-dev libzstd-dev liblz4-dev
  python3 python3-pip util-linux
  b3sum
  chromium chromium-driver
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c "import aiosmtpd" 2>/dev/null; then
  echo "installing the aiosmtpd Python package (test SMTP server)"
  python3 -m pip install --quiet aiosmtpd 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages aiosmtpd
fi

if ! python3 -c "import cryptography" 2>/dev/null; then
  echo "installing the cryptography Python package (independent evidence check)"
  python3 -m pip install --quiet cryptography 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages cryptography
fi

# The Kafka tests run a broker on Java 17 or newer, fetched with Maven.
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  echo "installing Java and Maven (Apache Kafka broker for the tests)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    openjdk-17-jre-headless maven >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found; install Rust 1.89 or newer with rustup (https://rustup.rs)" >&2
  exit 1
fi
