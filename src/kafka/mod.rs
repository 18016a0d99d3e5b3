//! Everything that talks to Kafka: topic management, the producer with its acknowledgement
//! watermark, record placement, the committed source position, and the consumer-side
//! position filter; and recognising a broker that refuses binlake's credentials or TLS
//! handshake ([`access`]).
//!
//! Invariant kept across this module: a source position is committed only after Kafka
//! acknowledged every record produced before it, and every record carries its position in the
//! `binlake.pos` header, which only grows within a partition, across restarts too.

pub mod access;
pub mod dedup;
pub mod offsets;
pub mod partition;
pub mod producer;
pub mod topics;

use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
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

/// Context of binlake's short-lived consumers: logs client errors as warnings, except the
/// end-of-partition notices they ask for.
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::warn!(%error, reason, "kafka client");
        }
    }
}

impl ConsumerContext for QuietContext {}

/// Errors of the connection to the brokers, which librdkafka cures by reconnecting (a broker
/// restarting, a network cut or stall): worth waiting out, not stopping for.
pub fn transient(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::Resolve
                | C::OperationTimedOut
                | C::RequestTimedOut
                | C::NetworkException
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::CoordinatorLoadInProgress
        )
    )
}
