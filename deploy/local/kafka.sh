#!/usr/bin/env bash
# Owns: installing the Kafka side of the local stack and of the tests, from crates.io and
# PyPI only, reusing what is already installed:
#   - the Kafka-protocol broker Nisshi 0.8.1 (`cargo install`, about 15 min on 2 cores; kept
#     in ~/.cargo/bin and reused when present);
#   - Python confluent-kafka[avro] and fastavro, the independent reader of the tests.
# Usage: deploy/local/kafka.sh install
set -euo pipefail

cmd_install() {
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
