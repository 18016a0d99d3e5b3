//! The HTTP API: Confluent's Schema Registry routes, JSON shapes, status codes and error
//! bodies (`{"error_code": 40401, "message": "..."}`), answered from the [`Store`]; optional
//! HTTP basic auth on every route, and HTTPS only when `[registry] tls_cert_file` and
//! `tls_key_file` are set.
//!
//! Invariant: handlers never change state themselves: reads go to the store's state, writes
//! go through the store's write methods (which go through the `_schemas` log). Every answer,
//! errors included, is JSON with content type `application/vnd.schemaregistry.v1+json`, and
//! with credentials configured no route answers a request without them (except with 401).

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::compat::{self, Level};
use super::error::RegistryError;
use super::state::VersionSpec;
use super::store::Store;
use crate::config::Config;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

type Reply = Result<Response, RegistryError>;

/// Serves the registry for `cfg` until `shutdown` completes: reads `_schemas` first, then
/// binds `[registry] listen` (default: the host:port of `[registry] url`).
pub async fn run(
    cfg: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryError> {
    let listen = listen_addr(cfg);
    let credentials = match &cfg.registry.username {
        Some(user) => {
            let password = cfg
                .registry_password()
                .map_err(|e| RegistryError::setup("reading the registry password")(e.to_string()))?
                .ok_or_else(|| RegistryError::Setup {
                    context: "[registry] username is set".into(),
                    cause: "set password or password_file too".into(),
                })?;
            Some(format!("{user}:{password}"))
        }
        None => None,
    };
    // Certificate problems are found before anything else is touched.
    let tls = tls_acceptor(cfg)?;
    let store = Store::open(cfg).await?;
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
        RegistryError::setup(format!("binding {listen} ([registry] listen)"))(e.to_string())
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| RegistryError::setup("reading the bound address")(e.to_string()))?;
    tracing::info!(%addr, topic = %cfg.registry.topic, auth = credentials.is_some(), https = tls.is_some(), "schema registry listening");
    let app = router(store, credentials);
    match tls {
        Some(acceptor) => {
            serve_tls(listener, app, acceptor, shutdown).await;
            Ok(())
        }
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| RegistryError::setup("serving HTTP")(e.to_string())),
    }
}

/// The TLS side of `[registry] tls_cert_file` and `tls_key_file`; `None` when they are unset
/// (plain HTTP). A file that cannot be read or holds no usable PEM is an error naming its key.
pub fn tls_acceptor(cfg: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, RegistryError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (Some(cert_file), Some(key_file)) =
        (&cfg.registry.tls_cert_file, &cfg.registry.tls_key_file)
    else {
        return Ok(None);
    };
    let bad = |key: &str, path: &std::path::Path, why: String| RegistryError::Setup {
        context: format!("config key `{key}`"),
        cause: format!("{}: {why}", path.display()),
    };
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| bad(key, path, format!("cannot read it: {e}")))
    };
    let pem = read("registry.tls_cert_file", cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            bad(
                "registry.tls_cert_file",
                cert_file,
                format!("not a PEM certificate chain: {e}"),
            )
        })?;
    if chain.is_empty() {
        return Err(bad(
            "registry.tls_cert_file",
            cert_file,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let pem = read("registry.tls_key_file", key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        bad(
            "registry.tls_key_file",
            key_file,
            format!("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::setup("setting up TLS")(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            bad(
                "registry.tls_key_file",
                key_file,
                format!(
                    "does not go with the certificate in registry.tls_cert_file ({}): {e}",
                    cert_file.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// Serves `app` over HTTPS (HTTP/1.1) until `shutdown` completes, then lets open connections
/// finish their requests (up to 10 s). A client that fails the TLS handshake (plain HTTP, an
/// unknown CA) only loses its own connection.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let handshake = acceptor.accept(tcp);
            let stream =
                match tokio::time::timeout(std::time::Duration::from_secs(10), handshake).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
            tracing::warn!("connections still open 10 s after shutdown began; closing them");
        }
    }
}

/// `[registry] listen`, else the host:port of `[registry] url` (port 80/443 by scheme).
pub fn listen_addr(cfg: &Config) -> String {
    if let Some(l) = &cfg.registry.listen {
        return l.clone();
    }
    let url = &cfg.registry.url;
    let (rest, port) = match url.strip_prefix("https://") {
        Some(r) => (r, 443),
        None => (url.strip_prefix("http://").unwrap_or(url), 80),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{port}")
    }
}

/// The routes, with basic auth when `credentials` (`user:password`) is set.
pub fn router(store: Store, credentials: Option<String>) -> Router {
    let app = Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/subjects", get(subjects))
        .route("/subjects/{s}", post(lookup).delete(delete_subject))
        .route("/subjects/{s}/versions", get(versions).post(register))
        .route(
            "/subjects/{s}/versions/{v}",
            get(version).delete(delete_version),
        )
        .route("/subjects/{s}/versions/{v}/schema", get(version_schema))
        .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_text_by_id))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route("/schemas/ids/{id}/subjects", get(id_subjects))
        .route(
            "/compatibility/subjects/{s}/versions/{v}",
            post(compatibility),
        )
        .route(
            "/compatibility/subjects/{s}/versions",
            post(compatibility_all),
        )
        .route("/config", get(get_global).put(put_global))
        .route(
            "/config/{s}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(|| async { ok(json!({"mode": "READWRITE"})) }))
        .fallback(|| async { RegistryError::RouteNotFound.into_response() })
        .with_state(store);
    match credentials {
        Some(c) => {
            let expected = Arc::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(c)
            ));
            app.layer(middleware::from_fn_with_state(expected, basic_auth))
        }
        None => app,
    }
}

async fn basic_auth(State(expected): State<Arc<String>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if constant_time_eq(given, expected.as_bytes()) {
        return next.run(req).await;
    }
    let mut r = RegistryError::Unauthorized.into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"binlake-registry\""),
    );
    r
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        if self.status() >= 500 {
            tracing::error!(error = %self, "request failed");
        }
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        respond(
            status,
            &json!({"error_code": self.code(), "message": self.to_string()}),
        )
    }
}

fn respond(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, Body::from(body.to_string())).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

fn ok(body: Value) -> Response {
    respond(StatusCode::OK, &body)
}

/// The query string's parameters (flags compare case-insensitively: Python sends `True`).
struct Query(Vec<(String, String)>);

impl Query {
    fn new(raw: Option<String>) -> Query {
        let pairs = raw
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Query(pairs)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Decodes `%XX` escapes and `+` of a query string component (invalid escapes stay as they are).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of register, lookup and compatibility requests.
#[derive(Deserialize)]
struct SchemaRequest {
    schema: Option<String>,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Value>>,
}

/// Parses a schema request body into (text, parsed Avro schema).
pub fn parse_schema_body(body: &Bytes) -> Result<(String, compat::Parsed), RegistryError> {
    let req: SchemaRequest = serde_json::from_slice(body).map_err(|e| {
        RegistryError::Unprocessable(format!("the body is not a schema request: {e}"))
    })?;
    if let Some(t) = req.schema_type.as_deref().filter(|t| *t != "AVRO") {
        return Err(RegistryError::InvalidSchema(format!(
            "schemaType {t} is not supported: binlake registry stores AVRO schemas only"
        )));
    }
    if req.references.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(RegistryError::InvalidSchema(
            "schema references are not supported by binlake registry".into(),
        ));
    }
    let text = req
        .schema
        .ok_or_else(|| RegistryError::InvalidSchema("the body has no \"schema\" field".into()))?;
    let parsed = compat::parse(&text).map_err(RegistryError::InvalidSchema)?;
    Ok((text, parsed))
}

fn schema_json(v: &mut Value, schema_type: Option<&str>) {
    if let (Some(t), Some(obj)) = (schema_type, v.as_object_mut()) {
        obj.insert("schemaType".into(), json!(t));
    }
}

async fn subjects(State(store): State<Store>, RawQuery(q): RawQuery) -> Reply {
    let q = Query::new(q);
    let prefix = q.get("subjectPrefix").unwrap_or_default().to_string();
    let deleted = q.flag("deleted") || q.flag("deleted_only");
    let list: Vec<String> = store.read(|s| {
        let live = s.subjects(false);
        s.subjects(deleted)
            .into_iter()
            .filter(|x| x.starts_with(&prefix))
            .filter(|x| !q.flag("deleted_only") || !live.contains(x))
            .collect()
    });
    Ok(ok(json!(list)))
}

async fn versions(
    State(store): State<Store>,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let deleted = Query::new(q).flag("deleted");
    let vs = store.read(|s| s.versions(&subject, deleted))?;
    Ok(ok(json!(vs)))
}

async fn version(
    State(store): State<Store>,
    Path((subject, v)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Reply {
    let spec = VersionSpec::parse(&v)?;
    let deleted = Query::new(q).flag("deleted");
    store.read(|s| {
        let (version, e, schema) = s.version(&subject, spec, deleted)?;
        let mut body = json!({
            "subject": subject, "version": version, "id": e.id, "schema": schema.text,
        });
        schema_json(&mut body, schema.schema_type.as_deref());
        Ok(ok(body))
    })
}

/// The schema text itself as the body (it is JSON).
async fn version_schema(
    State(store): State<Store>,
    Path((subject, v)): Path<(String, String)>,
) -> Reply {
    let spec = VersionSpec::parse(&v)?;
    store.read(|s| {
        let (_, _, schema) = s.version(&subject, spec, false)?;
        Ok(raw_schema(&schema.text))
    })
}

fn raw_schema(text: &str) -> Response {
    let mut r = (StatusCode::OK, Body::from(text.to_string())).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

async fn register(State(store): State<Store>, Path(subject): Path<String>, body: Bytes) -> Reply {
    let (text, parsed) = parse_schema_body(&body)?;
    let (id, _) = store.register(&subject, &text, &parsed).await?;
    Ok(ok(json!({"id": id})))
}

async fn lookup(
    State(store): State<Store>,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let (_, parsed) = parse_schema_body(&body)?;
    let deleted = Query::new(q).flag("deleted");
    store.read(|s| {
        let (version, id) = s.lookup(&subject, &parsed.identity, deleted)?;
        let text = s.schema(id).map(|x| x.text.clone()).unwrap_or_default();
        Ok(ok(json!({
            "subject": subject, "id": id, "version": version, "schema": text,
        })))
    })
}

async fn delete_subject(
    State(store): State<Store>,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let permanent = Query::new(q).flag("permanent");
    let vs = store.delete_subject(&subject, permanent).await?;
    Ok(ok(json!(vs)))
}

async fn delete_version(
    State(store): State<Store>,
    Path((subject, v)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Reply {
    let spec = VersionSpec::parse(&v)?;
    let permanent = Query::new(q).flag("permanent");
    let v = store.delete_version(&subject, spec, permanent).await?;
    Ok(ok(json!(v)))
}

fn parse_id(id: &str) -> Result<u32, RegistryError> {
    id.parse()
        .map_err(|_| RegistryError::SchemaNotFound(format!("Schema {id} not found")))
}

async fn schema_by_id(State(store): State<Store>, Path(id): Path<String>) -> Reply {
    let n = parse_id(&id)?;
    store.read(|s| {
        let schema = s
            .schema(n)
            .ok_or_else(|| RegistryError::SchemaNotFound(format!("Schema {n} not found")))?;
        let mut body = json!({"schema": schema.text});
        schema_json(&mut body, schema.schema_type.as_deref());
        Ok(ok(body))
    })
}

async fn schema_text_by_id(State(store): State<Store>, Path(id): Path<String>) -> Reply {
    let n = parse_id(&id)?;
    store.read(|s| {
        let schema = s
            .schema(n)
            .ok_or_else(|| RegistryError::SchemaNotFound(format!("Schema {n} not found")))?;
        Ok(raw_schema(&schema.text))
    })
}

fn id_pairs(
    store: &Store,
    id: &str,
    q: Option<String>,
) -> Result<Vec<(String, u32)>, RegistryError> {
    let n = parse_id(id)?;
    let deleted = Query::new(q).flag("deleted");
    store.read(|s| {
        if s.schema(n).is_none() {
            return Err(RegistryError::SchemaNotFound(format!(
                "Schema {n} not found"
            )));
        }
        Ok(s.id_versions(n, deleted))
    })
}

async fn id_versions(
    State(store): State<Store>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let pairs = id_pairs(&store, &id, q)?;
    let list: Vec<Value> = pairs
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(ok(json!(list)))
}

async fn id_subjects(
    State(store): State<Store>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let mut subjects: Vec<String> = id_pairs(&store, &id, q)?.into_iter().map(|p| p.0).collect();
    subjects.dedup();
    Ok(ok(json!(subjects)))
}

async fn compatibility(
    State(store): State<Store>,
    Path((subject, v)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let spec = VersionSpec::parse(&v)?;
    check_compatibility(
        &store,
        &subject,
        Some(spec),
        Query::new(q).flag("verbose"),
        &body,
    )
}

async fn compatibility_all(
    State(store): State<Store>,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    check_compatibility(&store, &subject, None, Query::new(q).flag("verbose"), &body)
}

/// Against one version (`Some(Number)`), or per the subject's level (`latest` or `None`):
/// the latest version, or all of them for a transitive level. No versions: compatible.
fn check_compatibility(
    store: &Store,
    subject: &str,
    spec: Option<VersionSpec>,
    verbose: bool,
    body: &Bytes,
) -> Reply {
    let (_, parsed) = parse_schema_body(body)?;
    let messages = store.read(|s| -> Result<Vec<String>, RegistryError> {
        let Ok(versions) = s.versions(subject, false) else {
            return Ok(Vec::new());
        };
        let only = match spec {
            Some(VersionSpec::Number(n)) => {
                if !versions.contains(&n) {
                    return Err(RegistryError::VersionNotFound(n.to_string()));
                }
                Some(n)
            }
            _ => None,
        };
        Ok(s.compat_problems(subject, &parsed.schema, s.level(subject), only))
    })?;
    let mut body = json!({"is_compatible": messages.is_empty()});
    if verbose {
        body["messages"] = json!(messages);
    }
    Ok(ok(body))
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
}

/// Parses a config request body (`{"compatibility": "FULL"}`).
pub fn parse_level(body: &Bytes) -> Result<Level, RegistryError> {
    let req: ConfigRequest = serde_json::from_slice(body).map_err(|e| {
        RegistryError::Unprocessable(format!("the body is not a config request: {e}"))
    })?;
    let name = req.compatibility.unwrap_or_default();
    Level::parse(&name).ok_or(RegistryError::InvalidCompatibility(name))
}

async fn get_global(State(store): State<Store>) -> Reply {
    let l = store.read(|s| s.global_level());
    Ok(ok(json!({"compatibilityLevel": l.name()})))
}

async fn put_global(State(store): State<Store>, body: Bytes) -> Reply {
    let level = parse_level(&body)?;
    store.set_level(None, Some(level)).await?;
    tracing::info!(level = level.name(), "global compatibility level set");
    Ok(ok(json!({"compatibility": level.name()})))
}

async fn get_subject_config(
    State(store): State<Store>,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let to_global = Query::new(q).flag("defaultToGlobal");
    let level = store.read(|s| match s.subject_level(&subject) {
        Some(l) => Ok(l),
        None if to_global => Ok(s.global_level()),
        None => Err(RegistryError::SubjectLevelNotConfigured(subject.clone())),
    })?;
    Ok(ok(json!({"compatibilityLevel": level.name()})))
}

async fn put_subject_config(
    State(store): State<Store>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Reply {
    let level = parse_level(&body)?;
    store.set_level(Some(&subject), Some(level)).await?;
    tracing::info!(
        subject,
        level = level.name(),
        "subject compatibility level set"
    );
    Ok(ok(json!({"compatibility": level.name()})))
}

async fn delete_subject_config(State(store): State<Store>, Path(subject): Path<String>) -> Reply {
    let old = store
        .read(|s| s.subject_level(&subject))
        .ok_or_else(|| RegistryError::SubjectLevelNotConfigured(subject.clone()))?;
    store.set_level(Some(&subject), None).await?;
    Ok(ok(json!({"compatibilityLevel": old.name()})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, listen: Option<&str>) -> Config {
        let mut c = Config::default();
        c.registry.url = url.into();
        c.registry.listen = listen.map(Into::into);
        c
    }

    #[test]
    fn listen_defaults_to_the_urls_host_and_port() {
        assert_eq!(
            listen_addr(&cfg("http://127.0.0.1:8081", None)),
            "127.0.0.1:8081"
        );
        assert_eq!(
            listen_addr(&cfg("http://reg.local/x", None)),
            "reg.local:80"
        );
        assert_eq!(listen_addr(&cfg("https://[::1]/", None)), "[::1]:443");
        assert_eq!(listen_addr(&cfg("http://[::1]:9/", None)), "[::1]:9");
        assert_eq!(
            listen_addr(&cfg("http://x:1", Some("0.0.0.0:8081"))),
            "0.0.0.0:8081"
        );
    }

    #[test]
    fn query_flags_and_decoding() {
        let q = Query::new(Some(
            "verbose=True&permanent=false&subjectPrefix=a%2Db+c".into(),
        ));
        assert!(q.flag("verbose"));
        assert!(!q.flag("permanent"));
        assert!(!q.flag("deleted"));
        assert_eq!(q.get("subjectPrefix"), Some("a-b c"));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn auth_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
