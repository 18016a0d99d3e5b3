#!/usr/bin/env bash
# Owns: the project's test command (referenced from README.md and .ci/run).
# Formatting, lints (warnings are errors) and every test target, debug profile.
# Integration tests start their own MariaDB, Apache Kafka, `binlake registry`, HDFS and
# Hive metastore instances, and read topics and the lake back with Python confluent-kafka,
# DuckDB, fastavro and Spark; tests/deploy_files.rs checks the files under deploy/ with
# deploy/check.sh. The installers below are no-ops when everything is already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

bash deploy/local/mariadb.sh install
bash deploy/local/kafka.sh install
# Apicurio Registry 3, the third-party registry of tests/registry_apicurio.rs (Java 21+).
bash deploy/local/apicurio.sh install
bash deploy/local/hadoop.sh install
# docker-compose, systemd-analyze and PyYAML for deploy/check.sh (tests/deploy_files.rs).
bash deploy/check.sh install

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
