//! The local HTTP admin endpoint of a running `binlake tail`: `POST /snapshot` starts an
//! on-demand snapshot of a table or of the rows matching a condition, `GET /health` answers
//! `ok`. Invariant: with a token configured, no request without `Authorization: Bearer
//! <token>` reaches the pipeline; it binds where `[admin] listen` says (loopback by default,
//! and off loopback only with a token, which config validation enforces).

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
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/snapshot", post(snapshot))
        .with_state(Ctx { token, requests });
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
    if let Some(token) = &ctx.token {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
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
