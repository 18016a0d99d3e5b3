#!/usr/bin/env bash
# Owns: the project's test command (referenced from README.md and .ci/run).
# Formatting, lints (warnings are errors) and every test target, debug profile.
# Integration tests start their own MariaDB instances through
# deploy/local/mariadb.sh, so MariaDB must be installed (mariadb.sh install).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
