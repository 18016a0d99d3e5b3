#!/usr/bin/env bash
# Owns: the long chaos run reported in BENCHMARKS.md. Runs the chaos test (tests/chaos) with
# TRIALS faults of each kind (SIGKILL of `binlake run`, `binlake sink`, the broker and
# MariaDB; SIGTERM of run and sink; binlog rotations with purges; the network to MariaDB,
# to Kafka and to the registry cut, stalled or blackholed), against a random workload; then the
# topics, the lake and the tables rebuilt from the topics must equal the source, with no
# change twice in the lake.
# Prints the seed first (replay a failure with the same SEED) and the figures at the end.
# Usage: deploy/local/chaos.sh [TRIALS=50] [SEED]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CHAOS_TRIALS=${1:-50}
if [ -n "${2:-}" ]; then export CHAOS_SEED=$2; fi
bash deploy/local/mariadb.sh install
bash deploy/local/kafka.sh install
cargo test --test chaos -- --nocapture
