//! The local HTTP admin endpoint of a running `binlake run` or `tail`: `POST /snapshot`
//! starts an on-demand snapshot of a table or of the rows matching a condition, `GET
//! /health` answers `ok`. Invariant: no request without `Authorization: Bearer <token>`
//! reaches the pipeline (config validation requires a non-empty token, unless
//! `allow_no_token` on a loopback address); on a loopback address a request must name a
//! loopback host in its `Host` header, so a web page cannot reach it through DNS
//! rebinding; the condition is checked (`snapshot::check_condition`) and runs as one
//! prepared statement in a read-only transaction.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::mysql::snapshot::AdhocRequest;

/// The body of `POST /snapshot`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// `db.table`.
    pub table: String,
    /// Optional SQL condition selecting the rows, e.g. `id BETWEEN 1 AND 1000`.
    #[serde(default, rename = "where")]
    pub where_: Option<String>,
}

/// The answer of `POST /snapshot`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
}

#[derive(Clone)]
struct Ctx {
    token: Option<String>,
    requests: mpsc::Sender<AdhocRequest>,
    /// The port, when bound to a loopback address: then the Host header must be loopback.
    loopback_port: Option<u16>,
}

/// A `Host` header that names a loopback host (`localhost`, `127.x.y.z`, `[::1]`) with
/// the endpoint's port.
fn loopback_host(host: &str, port: u16) -> bool {
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    if p.parse::<u16>().ok() != Some(port) {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Compares without an early exit on the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Binds `listen` and serves until the process ends. Returns the bound address.
pub async fn serve(
    listen: &str,
    token: Option<String>,
    requests: mpsc::Sender<AdhocRequest>,
) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Io {
            context: format!("binding the admin endpoint to {listen} ([admin] listen)"),
            cause: e,
        })?;
    let addr = listener.local_addr().map_err(|e| Error::Io {
        context: "reading the admin endpoint's address".into(),
        cause: e,
    })?;
    let loopback_port = addr.ip().is_loopback().then_some(addr.port());
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/snapshot", post(snapshot))
        .with_state(Ctx {
            token,
            requests,
            loopback_port,
        });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    tracing::info!(%addr, "admin endpoint listening");
    Ok(addr)
}

fn reply(status: StatusCode, ok: bool, message: impl Into<String>) -> (StatusCode, Json<Reply>) {
    (
        status,
        Json(Reply {
            ok,
            message: message.into(),
        }),
    )
}

async fn snapshot(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(req): Json<SnapshotRequest>,
) -> (StatusCode, Json<Reply>) {
    if let Some(port) = ctx.loopback_port {
        let host = headers.get("host").and_then(|v| v.to_str().ok());
        if !host.is_some_and(|h| loopback_host(h, port)) {
            return reply(
                StatusCode::FORBIDDEN,
                false,
                format!(
                    "the Host header must name this loopback endpoint (e.g. 127.0.0.1:{port}), \
                     not {}",
                    host.unwrap_or("nothing")
                ),
            );
        }
    }
    if let Some(token) = &ctx.token {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            return reply(
                StatusCode::UNAUTHORIZED,
                false,
                "missing or wrong bearer token",
            );
        }
    }
    let (tx, rx) = oneshot::channel();
    let request = AdhocRequest {
        table: req.table,
        where_: req.where_,
        reply: tx,
    };
    if ctx.requests.send(request).await.is_err() {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            false,
            "the stream is not running",
        );
    }
    match rx.await {
        Ok(Ok(m)) => reply(StatusCode::ACCEPTED, true, m),
        Ok(Err(m)) => reply(StatusCode::BAD_REQUEST, false, m),
        Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, false, "the stream stopped"),
    }
}

/// A minimal HTTP/1.1 client for `binlake snapshot`: POSTs the request to a running tail.
pub async fn request_snapshot(
    addr: &str,
    token: Option<&str>,
    req: &SnapshotRequest,
) -> Result<(u16, Reply)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = |what: &str| {
        let what = format!(
            "{what} the admin endpoint at {addr} (is `binlake tail` running with [admin] listen?)"
        );
        move |e| Error::Io {
            context: what,
            cause: e,
        }
    };
    let body = serde_json::to_string(req).map_err(|e| Error::Unsupported(e.to_string()))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(io("connecting to"))?;
    let msg = format!(
        "POST /snapshot HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(msg.as_bytes())
        .await
        .map_err(io("writing to"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.map_err(io("reading from"))?;
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::Unsupported(format!("not an HTTP answer from {addr}")))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let reply = serde_json::from_str(body).unwrap_or(Reply {
        ok: false,
        message: body.trim().to_string(),
    });
    Ok((status, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_with_the_port_pass() {
        for ok in [
            "127.0.0.1:9470",
            "localhost:9470",
            "[::1]:9470",
            "127.1.2.3:9470",
        ] {
            assert!(loopback_host(ok, 9470), "{ok}");
        }
        for bad in [
            "evil.example:9470",
            "127.0.0.1:80",
            "127.0.0.1",
            "10.0.0.1:9470",
            "localhost.evil.example:9470",
        ] {
            assert!(!loopback_host(bad, 9470), "{bad}");
        }
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
    }
}
