//! Port routes: the list, visibility changes, tickets, the raw TCP tunnel,
//! and the entry points of the proxy (path form and host form).

use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ApiError, ApiJson, AppState};
use crate::activity::Source as ActivitySource;
use crate::config::Visibility;
use crate::heartbeat::Heartbeat;
use crate::ports::{PortInfo, SetError};
use crate::proxy;

fn port_param(raw: &str) -> Result<u16, ApiError> {
    proxy::parse_port(raw).ok_or_else(|| proxy::invalid_port(raw))
}

fn known(app: &AppState, port: u16) -> Result<PortInfo, ApiError> {
    app.ports
        .get(port)
        .ok_or_else(|| ApiError::not_found(format!("port {port}")))
}

pub async fn list(State(app): State<AppState>) -> Json<Vec<PortInfo>> {
    Json(app.ports.list())
}

#[derive(Debug, Deserialize)]
pub struct VisibilityRequest {
    visibility: Visibility,
}

pub async fn set_visibility(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    ApiJson(req): ApiJson<VisibilityRequest>,
) -> Result<Json<PortInfo>, ApiError> {
    let port = port_param(&raw)?;
    match app.ports.set_visibility(port, req.visibility) {
        Ok(info) => Ok(Json(info)),
        Err(SetError::NotFound) => Err(ApiError::not_found(format!("port {port}"))),
        Err(SetError::AboveMax(max)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "visibility_not_allowed",
            format!(
                "this workspace allows ports to be opened to {} at most",
                serde_json::to_value(max)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("?")
            ),
        )),
    }
}

pub async fn open(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    ends: Option<axum::Extension<super::guard::CredentialEnd>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let port = port_param(&raw)?;
    let info = known(&app, port)?;
    if !app.ports.url_is_host_routed() {
        return Ok(Json(json!({ "url": info.url })));
    }
    // The ticket is for the port as it is now: its session ends when the
    // port falls below this or closes.
    let cut = app.ports.cuts(port, info.visibility);
    // Nor may it outlive the credential that opened it (a JWT's `exp`).
    let now = Instant::now();
    let ends_at = ends.and_then(|e| e.0 .0).map(|exp| {
        let left = exp
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        now.checked_add(left).unwrap_or(now)
    });
    let ticket = app
        .proxy
        .tickets
        .issue(port, info.visibility, cut, ends_at, now);
    let sep = if info.url.contains('?') { '&' } else { '?' };
    Ok(Json(json!({
        "url": format!("{}{sep}{}={ticket}", info.url, proxy::TICKET_PARAM)
    })))
}

/// `GET /api/v1/ports/{port}/tunnel`: connect first (502 when nothing
/// answers), then raw bytes both ways in binary frames. The stream has no
/// size limit; each message has `max_ws_message_bytes` (close 1009), since
/// a message is held whole before it is written.
pub async fn tunnel(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let port = port_param(&raw)?;
    let ws = ws.map_err(|_| {
        ApiError::bad_request("websocket_required", "this route takes a WebSocket upgrade")
    })?;
    let candidates = match app.ports.tunnel_target(port) {
        Some(a) => vec![a],
        None => vec![
            (std::net::Ipv4Addr::LOCALHOST, port).into(),
            (std::net::Ipv6Addr::LOCALHOST, port).into(),
        ],
    };
    let mut stream = None;
    for addr in candidates {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            stream = Some(s);
            break;
        }
    }
    let Some(stream) = stream else {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "port_not_available",
            format!("nothing accepts connections on port {port}"),
        ));
    };
    let _ = stream.set_nodelay(true);
    let activity = app.activity.clone();
    let (token, cancel) = app.proxy.task();
    let every = app.config.ws_ping_interval;
    let max = app.config.max_ws_message_bytes;
    Ok(ws
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let _owned = token;
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = bridge(Heartbeat::new(socket, every), stream, activity, TUNNEL_CHUNK.min(max.max(1))) => {}
            }
        }))
}

/// The most a tunnel reads from the app at once: one WebSocket frame.
const TUNNEL_CHUNK: usize = 256 * 1024;

/// The close code for a message over `max_ws_message_bytes`.
const CLOSE_TOO_BIG: u16 = 1009;

/// Whether a WebSocket read failed on a message over the size limit.
fn too_big(e: &axum::Error) -> bool {
    let s = format!(
        "{e} {:?}",
        std::error::Error::source(e).map(|s| s.to_string())
    );
    s.contains("too long") || s.contains("Space limit") || s.contains("too big")
}

/// One tunnel: when either side ends, the other is closed. Frames to the
/// client carry at most `chunk` bytes.
async fn bridge(
    socket: Heartbeat,
    stream: tokio::net::TcpStream,
    activity: crate::activity::Activity,
    chunk: usize,
) {
    use bytes::BufMut;
    let (mut sink, mut ws_in) = socket.split();
    let (mut tcp_in, mut tcp_out) = stream.into_split();
    // Borrowed, not moved: the sink sends the close after both have ended.
    let up = async {
        let mut oversized = false;
        while let Some(msg) = ws_in.next().await {
            match msg {
                Ok(Message::Binary(b)) => {
                    activity.touch(ActivitySource::Proxy);
                    if tcp_out.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(e) => {
                    oversized = too_big(&e);
                    break;
                }
            }
        }
        let _ = tcp_out.shutdown().await;
        oversized
    };
    let down = async {
        // Each read becomes a frame without a copy; the buffer's memory comes
        // back to it once the frame is written.
        let mut buf = bytes::BytesMut::new();
        loop {
            buf.reserve(chunk);
            match tcp_in.read_buf(&mut (&mut buf).limit(chunk)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    activity.touch(ActivitySource::Proxy);
                    if sink
                        .send(Message::Binary(buf.split().freeze()))
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
            }
        }
        true
    };
    let close = tokio::select! {
        oversized = up => oversized.then(|| CloseFrame {
            code: CLOSE_TOO_BIG,
            reason: "message larger than max_ws_message_bytes".into(),
        }),
        open = down => if open { None } else { return },
    };
    let _ = sink.send(Message::Close(close)).await;
}

/// `/proxy/{port}`: 308 to `/proxy/{port}/`, query kept.
pub async fn proxy_bare(Path(raw): Path<String>, req: Request) -> Response {
    if proxy::parse_port(&raw).is_none() {
        return proxy::invalid_port(&raw).into_response();
    }
    let location = match req.uri().query() {
        Some(q) => format!("/proxy/{raw}/?{q}"),
        None => format!("/proxy/{raw}/"),
    };
    let mut resp = StatusCode::PERMANENT_REDIRECT.into_response();
    if let Ok(l) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    resp
}

/// `/proxy/{port}/{*rest}`.
pub async fn proxy_path(State(app): State<AppState>, req: Request) -> Response {
    let raw = req
        .uri()
        .path()
        .strip_prefix("/proxy/")
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    let Some(port) = proxy::parse_port(raw) else {
        return proxy::invalid_port(raw).into_response();
    };
    let prefix = "/proxy/".len() + raw.len();
    proxy::handle(app, port, prefix, req).await
}

/// The host form: a `Host` whose first label starts with `<digits>-` goes
/// to that port, whatever the path; any other request goes on to the router,
/// and so does the daemon's own port (`60080-ws.example`: the platform routes
/// the daemon's API and console to that host).
pub async fn host_routing(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if !app.config.host_routing {
        return next.run(req).await;
    }
    let host = match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok(),
        None => req.uri().authority().map(|a| a.as_str()),
    };
    match host.and_then(proxy::host_port) {
        None => next.run(req).await,
        Some(Ok(port)) if port == app.own_port => next.run(req).await,
        Some(Err(())) => {
            let label = host.unwrap_or("").split('-').next().unwrap_or("");
            proxy::invalid_port(label).into_response()
        }
        Some(Ok(_)) if app.draining.load(std::sync::atomic::Ordering::Relaxed) => {
            ApiError::shutting_down().into_response()
        }
        Some(Ok(port)) => proxy::handle(app, port, 0, req).await,
    }
}
