//! The Confluent Schema Registry: the client `binlake run` registers schemas with.

pub mod client;
