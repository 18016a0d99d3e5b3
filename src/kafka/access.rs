//! The broker refusing binlake for good: SASL authentication failed, the TLS handshake
//! failed (the broker's certificate could not be verified, no common protocol), or a newer
//! producer with the same transactional id fenced this one. librdkafka
//! reports these on the client's error callback and keeps retrying forever; this module turns
//! the first one into one error that names the problem and the `[kafka.properties]` keys that
//! fix it, so that binlake stops at once instead of waiting out its timeouts.
//!
//! Invariant: the messages built here never contain a property value other than
//! `sasl.username` and `sasl.mechanisms` (no password, no key material): they name keys, and
//! quote librdkafka's reason, which carries broker addresses and protocol states only.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;
use crate::error::{Error, Result};

/// The clear message for a client error that retrying cannot cure, `None` for the others
/// (a broker down, a connection reset: librdkafka retries those, and they may heal).
pub fn problem(error: &KafkaError, reason: &str, k: &KafkaConfig) -> Option<String> {
    let prop = |name: &str| k.properties.get(name).map(String::as_str);
    match error.rdkafka_error_code()? {
        // librdkafka's own code, or the broker's (a request answered SASL_AUTHENTICATION_FAILED).
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            let user = prop("sasl.username").unwrap_or("(sasl.username not set)");
            let mechanism = prop("sasl.mechanisms")
                .or(prop("sasl.mechanism"))
                .unwrap_or("GSSAPI, librdkafka's default");
            Some(format!(
                "Kafka authentication failed for user {user:?} (SASL mechanism {mechanism}): \
                 {reason}; check sasl.username, sasl.password and sasl.mechanisms in \
                 [kafka.properties] against the user the broker knows"
            ))
        }
        RDKafkaErrorCode::SSL => {
            let verify = reason.contains("certificate verify failed")
                || reason.contains("verify broker certificate")
                || reason.contains("did not provide a certificate");
            Some(if verify {
                format!(
                    "TLS to the Kafka broker failed: certificate verification failed: {reason}; \
                     set ssl.ca.location in [kafka.properties] to the PEM file of the CA that \
                     signed the broker's certificate, and make sure the certificate names the \
                     host in [kafka] brokers (ssl.endpoint.identification.algorithm)"
                )
            } else {
                format!(
                    "TLS to the Kafka broker failed: {reason}; check security.protocol and the \
                     ssl.* keys in [kafka.properties]"
                )
            })
        }
        // Another producer initialized the same transactional.id (librdkafka's fatal _FENCED,
        // or the broker's answer to this producer's old epoch).
        RDKafkaErrorCode::Fenced
        | RDKafkaErrorCode::ProducerFenced
        | RDKafkaErrorCode::InvalidProducerEpoch => Some(fenced(reason, k)),
        // librdkafka reports the fencing as its fatal error, the cause in the reason.
        RDKafkaErrorCode::Fatal if reason.contains("fenced") => Some(fenced(reason, k)),
        _ => None,
    }
}

fn fenced(reason: &str, k: &KafkaConfig) -> String {
    format!(
        "this run was fenced: another binlake run started with the same [kafka] \
             transactional_id ({}) and took over its transactions: {reason}. This one stops; \
             its open transaction is aborted, so nothing it wrote since its last commit is \
             visible to read_committed consumers. Run one process per transactional_id",
        k.transactional_id.as_deref().unwrap_or("unset")
    )
}

/// Client context that remembers the first [`problem`] and logs the other client errors as
/// warnings (librdkafka retries them).
pub struct Watch {
    cfg: KafkaConfig,
    first: Mutex<Option<String>>,
}

impl Watch {
    pub fn new(cfg: &KafkaConfig) -> Watch {
        Watch {
            cfg: cfg.clone(),
            first: Mutex::new(None),
        }
    }

    /// The first problem seen, if any.
    pub fn problem(&self) -> Option<String> {
        match self.first.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Notes `error` if it is a [`problem`]; returns its message when it is.
    pub fn note(&self, error: &KafkaError, reason: &str) -> Option<String> {
        let msg = problem(error, reason, &self.cfg)?;
        let mut g = match self.first.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        Some(g.get_or_insert(msg).clone())
    }
}

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        if self.note(&error, reason).is_none() {
            tracing::warn!(%error, reason, "kafka client");
        }
    }
}

/// [`check`]'s client produces nothing.
impl ProducerContext for Watch {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// How long [`check`] waits for a first answer from brokers that do not answer at all (the
/// metadata timeout binlake's other Kafka calls use).
pub const WAIT: Duration = Duration::from_secs(30);

/// [`check`] on a blocking thread, for async callers (librdkafka's calls block).
pub async fn check_async(k: &KafkaConfig, wait: Duration) -> Result<()> {
    let k = k.clone();
    tokio::task::spawn_blocking(move || check(&k, wait))
        .await
        .map_err(|e| Error::Unsupported(format!("the Kafka access check did not finish: {e}")))?
}

/// Asks the brokers for their metadata with the configured properties, up to `wait`.
/// Returns at once with the [`problem`] when the broker refuses the credentials or the TLS
/// handshake fails; after `wait` without an answer, with an error naming the brokers.
pub fn check(k: &KafkaConfig, wait: Duration) -> Result<()> {
    let client: BaseProducer<Watch> = super::client_config(k)
        .create_with_context(Watch::new(k))
        .map_err(Error::kafka(
            "creating a Kafka client (check [kafka.properties])",
        ))?;
    let deadline = Instant::now() + wait;
    loop {
        let step = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(500));
        let answer = client.client().fetch_metadata(None, step);
        // Serves the error callbacks queued meanwhile. The queue holds librdkafka's log lines
        // too, one event each, and a poll with no time left serves only one event: poll for a
        // while instead, which serves every event that arrives meanwhile.
        client.poll(Duration::from_millis(100));
        if let Some(p) = client.context().problem() {
            return Err(Error::KafkaAccess(p));
        }
        match answer {
            Ok(_) => return Ok(()),
            Err(cause) if Instant::now() >= deadline => {
                return Err(Error::Kafka {
                    context: format!(
                        "reading cluster metadata from {} (is the broker up? waited {}s)",
                        k.brokers,
                        wait.as_secs()
                    ),
                    cause,
                })
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(props: &[(&str, &str)]) -> KafkaConfig {
        let mut k = KafkaConfig::default();
        for (n, v) in props {
            k.properties.insert(n.to_string(), v.to_string());
        }
        k
    }

    #[test]
    fn authentication_names_the_user_and_the_keys_but_not_the_password() {
        let k = cfg(&[
            ("sasl.username", "cdc"),
            ("sasl.password", "hunter2"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
        ]);
        let m = problem(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "sasl_ssl://b:9093/bootstrap: SASL authentication error: invalid-proof",
            &k,
        )
        .expect("a problem");
        assert!(m.contains("authentication failed for user \"cdc\""), "{m}");
        assert!(
            m.contains("SCRAM-SHA-512") && m.contains("invalid-proof"),
            "{m}"
        );
        assert!(
            m.contains("sasl.password") && m.contains("[kafka.properties]"),
            "{m}"
        );
        assert!(!m.contains("hunter2"), "{m}");
        // The broker's error code, as a failed request carries it, is the same problem.
        let m = problem(
            &KafkaError::MessageProduction(RDKafkaErrorCode::SaslAuthenticationFailed),
            "",
            &k,
        )
        .expect("a problem");
        assert!(m.contains("authentication failed for user \"cdc\""), "{m}");
    }

    #[test]
    fn certificate_verification_names_ssl_ca_location() {
        let m = problem(
            &KafkaError::Global(RDKafkaErrorCode::SSL),
            "ssl://b:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::\
             certificate verify failed",
            &cfg(&[]),
        )
        .expect("a problem");
        assert!(
            m.contains("certificate verification") && m.contains("ssl.ca.location"),
            "{m}"
        );
    }

    #[test]
    fn transport_errors_are_left_to_librdkafka_retries() {
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::Resolve,
        ] {
            assert_eq!(
                problem(&KafkaError::Global(code), "x", &cfg(&[])),
                None,
                "{code:?}"
            );
        }
    }
}
