//! Client of a Confluent-compatible schema registry (Confluent's, Karapace, `binlake
//! registry`): register under TopicNameStrategy subjects, ask for compatibility first, cache
//! ids. HTTPS with a custom CA and basic auth.
//!
//! Invariant: an id is used in a record only after the registry returned it for exactly that
//! schema text, so every record a consumer reads resolves to the schema it was written with.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::config::Config;
use crate::error::{Error, Result};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// How long a request is retried while the registry does not answer (or answers 5xx).
const RETRY: Duration = Duration::from_secs(60);

pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, Option<String>)>,
    /// (subject, schema text) → id.
    ids: HashMap<(String, String), u32>,
}

/// The registry's verdict on a new schema for a subject.
#[derive(Debug, PartialEq, Eq)]
pub enum Compatibility {
    Compatible,
    /// The subject has no version yet.
    NewSubject,
    /// With the registry's reasons, when it gave any.
    Incompatible(Vec<String>),
}

#[derive(Deserialize)]
struct RegistryError {
    error_code: Option<i64>,
    message: Option<String>,
}

impl RegistryClient {
    pub fn new(cfg: &Config) -> Result<RegistryClient> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10));
        if let Some(ca) = &cfg.registry.ca_file {
            let pem = std::fs::read(ca).map_err(|e| Error::Io {
                context: format!("reading registry.ca_file {}", ca.display()),
                cause: e,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::Registry(format!(
                    "registry.ca_file {} is not a PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            b = b.add_root_certificate(cert);
        }
        let http = b
            .build()
            .map_err(|e| Error::Registry(format!("cannot build the HTTP client: {e}")))?;
        let auth = match &cfg.registry.username {
            Some(u) => Some((u.clone(), cfg.registry_password()?)),
            None => None,
        };
        Ok(RegistryClient {
            http,
            base: cfg.registry.url.trim_end_matches('/').to_string(),
            auth,
            ids: HashMap::new(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value)> {
        let url = format!("{}{}", self.base, path);
        // For messages: never the password of a `https://user:password@host` URL.
        let shown = format!("{}{}", crate::config::redact_url(&self.base), path);
        let mut req = self
            .http
            .request(method, &url)
            .header("Accept", CONTENT_TYPE);
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, p.as_deref());
        }
        if let Some(b) = body {
            req = req.header("Content-Type", CONTENT_TYPE).body(b.to_string());
        }
        // A registry that is restarting, or a connection cut on the way, is retried with
        // backoff for up to RETRY (the chaos soak saw run and sink stop on one cut request);
        // a refused certificate is not retried: waiting cannot fix it.
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(250);
        let resp = loop {
            let attempt = req.try_clone().ok_or_else(|| {
                Error::Registry(format!("{shown}: internal: the request cannot be repeated"))
            })?;
            let e = match attempt.send().await {
                Ok(r) if r.status().is_server_error() && started.elapsed() < RETRY => {
                    tracing::warn!(url = %shown, status = r.status().as_u16(), "the schema registry answered with a server error; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(8));
                    continue;
                }
                Ok(r) => break r,
                Err(e) => e,
            };
            // reqwest's message alone says "error sending request"; the cause (refused
            // connection, unknown certificate issuer, ...) is in the source chain.
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                why.push_str(": ");
                why.push_str(&c.to_string());
                cause = c.source();
            }
            let certificate = why.to_ascii_lowercase().contains("certificate");
            if !certificate && started.elapsed() < RETRY {
                tracing::warn!(url = %shown, error = %why, retry_in_ms = wait.as_millis() as u64, "the schema registry did not answer; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(8));
                continue;
            }
            return Err(Error::Registry(format!(
                "{shown}: {why} (is the registry at registry.url running? for https, is \
                 registry.ca_file the CA that signed its certificate?)"
            )));
        };
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| Error::Registry(format!("{shown}: reading the answer: {e}")))?;
        if status == 401 || status == 403 {
            return Err(Error::Registry(format!(
                "{shown}: HTTP {status}: check registry.username and the password"
            )));
        }
        let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok((status, value))
    }

    async fn post_schema(&self, path: &str, schema: &str) -> Result<(u16, serde_json::Value)> {
        self.call(
            reqwest::Method::POST,
            path,
            Some(json!({ "schema": schema })),
        )
        .await
    }

    fn failure(path: &str, status: u16, body: &serde_json::Value) -> Error {
        let e: Option<RegistryError> = serde_json::from_value(body.clone()).ok();
        let msg = e
            .as_ref()
            .and_then(|e| e.message.clone())
            .unwrap_or_else(|| body.to_string());
        let code = e.and_then(|e| e.error_code).unwrap_or(status as i64);
        Error::Registry(format!("{path}: HTTP {status} (error {code}): {msg}"))
    }

    /// Asks whether `schema` may become the next version of `subject`.
    pub async fn check(&self, subject: &str, schema: &str) -> Result<Compatibility> {
        let path = format!(
            "/compatibility/subjects/{}/versions/latest?verbose=true",
            encode(subject)
        );
        let (status, body) = self.post_schema(&path, schema).await?;
        match status {
            200 => {
                if body["is_compatible"].as_bool() == Some(true) {
                    Ok(Compatibility::Compatible)
                } else {
                    let reasons = body["messages"]
                        .as_array()
                        .map(|m| {
                            m.iter()
                                .map(|x| {
                                    x.as_str()
                                        .map(str::to_string)
                                        .unwrap_or_else(|| x.to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok(Compatibility::Incompatible(reasons))
                }
            }
            404 => Ok(Compatibility::NewSubject),
            _ => Err(Self::failure(&path, status, &body)),
        }
    }

    /// Registers `schema` under `subject` (or finds it registered) and returns its id.
    pub async fn register(&mut self, subject: &str, schema: &str) -> Result<u32> {
        let k = (subject.to_string(), schema.to_string());
        if let Some(&id) = self.ids.get(&k) {
            return Ok(id);
        }
        let path = format!("/subjects/{}/versions", encode(subject));
        let (status, body) = self.post_schema(&path, schema).await?;
        if status != 200 {
            return Err(Self::failure(&path, status, &body));
        }
        let id = body["id"]
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| Error::Registry(format!("{path}: the answer has no id: {body}")))?;
        self.ids.insert(k, id);
        Ok(id)
    }
}

impl RegistryClient {
    /// The schema text registered under `id`.
    pub async fn schema_by_id(&self, id: u32) -> Result<String> {
        let path = format!("/schemas/ids/{id}");
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await?;
        if status != 200 {
            return Err(Self::failure(&path, status, &body));
        }
        body["schema"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Registry(format!("{path}: the answer has no schema: {body}")))
    }

    /// The latest version of `subject`: (id, schema text); `None` when there is none.
    pub async fn latest(&self, subject: &str) -> Result<Option<(u32, String)>> {
        let path = format!("/subjects/{}/versions/latest", encode(subject));
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(Self::failure(&path, status, &body));
        }
        let id = body["id"].as_u64().and_then(|i| u32::try_from(i).ok());
        match (id, body["schema"].as_str()) {
            (Some(id), Some(s)) => Ok(Some((id, s.to_string()))),
            _ => Err(Error::Registry(format!(
                "{path}: unexpected answer: {body}"
            ))),
        }
    }
}

/// Percent-encodes a subject for a URL path.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
