//! Everything that talks to Kafka: topic management, the producer with its acknowledgement
//! watermark, record placement, the committed source position, and the consumer-side
//! position filter.
//!
//! Invariant kept across this module: a source position is committed only after Kafka
//! acknowledged every record produced before it, and every record carries its position in the
//! `binlake.pos` header, which only grows within a partition, across restarts too.

pub mod dedup;
pub mod offsets;
pub mod partition;
pub mod producer;
pub mod topics;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// A librdkafka configuration with the brokers and the user's passthrough properties.
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    for (name, value) in &k.properties {
        c.set(name, value);
    }
    c
}
