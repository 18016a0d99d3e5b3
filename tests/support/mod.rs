//! Shared helpers for integration tests. Include with `mod support;` from a
//! file in tests/ (Cargo does not build tests/support/ as a test of its own).

// Each test binary uses only part of the helpers.
#![allow(dead_code)]

pub mod broker;
pub mod certs;
pub mod cli;
pub mod hadoop;
pub mod mariadb;
pub mod proxy;
pub mod stack;
pub mod tls;
pub mod workload;
