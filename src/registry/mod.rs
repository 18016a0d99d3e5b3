//! `binlake registry`: an embedded schema registry speaking Confluent's REST API, so a
//! single machine needs no JVM. It owns the HTTP API ([`server`]), what an Avro schema means
//! for identity and compatibility ([`compat`]), Confluent's record format of the `_schemas`
//! topic ([`records`]), the in-memory state derived from that topic ([`state`]) and the Kafka
//! plumbing that reads and writes it ([`store`]).
//!
//! Invariant: the `_schemas` topic (one partition) is the only source of truth. Every process
//! derives its state by applying the topic's records in offset order with the same
//! deterministic rules (earlier record wins a conflict), so processes that have read the same
//! prefix of the log hold the same state, and a write counts only once its own record has
//! been read back and applied without losing a conflict. No leader is needed.

pub mod client;
pub mod compat;
pub mod error;
pub mod records;
pub mod server;
pub mod state;
pub mod store;

pub use error::RegistryError;
pub use server::run;
