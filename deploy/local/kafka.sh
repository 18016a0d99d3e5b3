#!/usr/bin/env bash
# Owns: installing the Kafka side of the local stack and of the tests, from crates.io and
# PyPI only, reusing what is already installed:
#   - the Kafka-protocol broker Nisshi 0.8.1 (`cargo install`, about 15 min on 2 cores; kept
#     in ~/.cargo/bin and reused when present);
#   - Python confluent-kafka[avro] and fastavro, the independent reader of the tests;
#   - what binlake's own build needs for Kafka over TLS/SASL: rdkafka's `ssl` feature builds
#     librdkafka against the system OpenSSL, found by openssl-sys through pkg-config
#     (Debian: libssl-dev, pkg-config), and the tests make certificates with the openssl
#     command line. Installed with apt-get only when missing.
# Usage: deploy/local/kafka.sh install
set -euo pipefail

install_build_deps() {
  local pkgs=()
  command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl 2>/dev/null ||
    pkgs+=(pkg-config libssl-dev)
  command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
  if [[ ${#pkgs[@]} -eq 0 ]]; then
    echo "openssl: $(pkg-config --modversion openssl) headers and pkg-config (reused)"
    return 0
  fi
  echo "apt-get install ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # Same repair-and-retry as mariadb.sh: an apt hook here can delete downloaded .debs.
  local attempt
  for attempt in 1 2 3; do
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null && break
    if [[ $attempt == 3 ]]; then
      echo "kafka.sh: apt-get install ${pkgs[*]} failed" >&2
      exit 1
    fi
    apt-get -f install -y -qq >/dev/null || true
  done
  pkg-config --exists openssl || { echo "kafka.sh: openssl.pc still missing" >&2; exit 1; }
}

cmd_install() {
  install_build_deps
  if command -v nisshi >/dev/null 2>&1 || [[ -x "$HOME/.cargo/bin/nisshi" ]]; then
    echo "nisshi: $(command -v nisshi || echo "$HOME/.cargo/bin/nisshi") (reused)"
  else
    echo "nisshi: installing from crates.io (about 15 minutes)"
    cargo install nisshi --version 0.8.1 --locked --ignore-rust-version
  fi
  if python3 -c 'import confluent_kafka, fastavro, authlib' 2>/dev/null; then
    echo "python: confluent-kafka $(python3 -c 'import confluent_kafka; print(confluent_kafka.__version__)') (reused)"
  else
    python3 -m pip install --quiet 'confluent-kafka[avro]==2.16.1' 'fastavro==1.13.1'
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
