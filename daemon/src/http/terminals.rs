//! Terminal routes and the event stream.

use std::collections::BTreeMap;

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;

use super::{relay, ApiError, ApiJson, AppState};
use crate::heartbeat::Heartbeat;
use crate::terminal::{self, CreateError, Spec};

#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    command: Option<Vec<String>>,
    cwd: Option<String>,
    env: Option<BTreeMap<String, String>>,
    // Any JSON value, so that -1 or 1.5 get `invalid_size`, not `invalid_json`.
    cols: Option<serde_json::Value>,
    rows: Option<serde_json::Value>,
    title: Option<String>,
    container: Option<String>,
}

impl CreateRequest {
    /// The request as the container's daemon gets it (its own terminal).
    fn relayed(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "command": self.command, "cwd": self.cwd, "env": self.env,
            "cols": self.cols, "rows": self.rows, "title": self.title,
        });
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, v| !v.is_null());
        }
        v
    }
}

fn size(n: Option<serde_json::Value>, default: u16) -> Result<u16, ApiError> {
    match n {
        None => Ok(default),
        Some(v) => terminal::size_of(&v).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_size",
                format!("cols and rows must be integers from 1 to 1000, got {v}"),
            )
        }),
    }
}

pub async fn create(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<Response, ApiError> {
    if let Some(name) = req
        .container
        .as_deref()
        .filter(|n| *n != app.config.container_name)
    {
        if !app.relay.knows(name) {
            return Err(relay::unknown_container(name));
        }
        return app.relay.create(name, req.relayed()).await;
    }
    if req
        .command
        .as_ref()
        .is_some_and(|c| c.is_empty() || c[0].is_empty())
    {
        return Err(ApiError::bad_request(
            "invalid_command",
            "command must be a non-empty array whose first element names a program",
        ));
    }
    let spec = Spec {
        command: req.command,
        cwd: req.cwd.unwrap_or_default(),
        env: req.env.unwrap_or_default(),
        cols: size(req.cols, 80)?,
        rows: size(req.rows, 24)?,
        title: req.title,
    };
    let t = app.terminals.create(&app.root, spec).map_err(|e| match e {
        CreateError::TooMany(_) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_terminals",
            format!("{e}; close one first"),
        ),
        CreateError::Path(p) => p.into(),
        CreateError::Spawn { .. } => ApiError::bad_request("spawn_failed", format!("{e}")),
        CreateError::Internal(_) => ApiError::internal(format!("{e:#}")),
    })?;
    Ok((StatusCode::CREATED, Json(t.info())).into_response())
}

pub async fn list(State(app): State<AppState>) -> Json<Vec<serde_json::Value>> {
    let mut all: Vec<serde_json::Value> = app
        .terminals
        .list()
        .iter()
        .filter_map(|t| serde_json::to_value(t.info()).ok())
        .collect();
    all.extend(app.relay.list().await);
    Json(all)
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("terminal {id:?}"))
}

pub async fn get_one(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some((name, rid)) = app.relay.split_id(&id) {
        return app.relay.get(name, rid).await;
    }
    let t = app.terminals.get(&id).ok_or_else(|| unknown(&id))?;
    Ok(Json(t.info()).into_response())
}

pub async fn remove(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some((name, rid)) = app.relay.split_id(&id) {
        return app.relay.delete(name, rid).await;
    }
    if app.terminals.delete(&id) {
        Ok(super::no_content())
    } else {
        Err(unknown(&id))
    }
}

#[derive(Debug, Deserialize)]
pub struct AttachQuery {
    offset: Option<String>,
}

pub async fn attach(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<AttachQuery>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let offset = match q.offset.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid_offset", "offset must be a non-negative integer")
        })?),
    };
    if let Some((name, rid)) = app.relay.split_id(&id) {
        let ws = ws.map_err(|_| {
            ApiError::bad_request("websocket_required", "this route takes a WebSocket upgrade")
        })?;
        return app.relay.attach(name, rid, offset, ws).await;
    }
    let t = app.terminals.get(&id).ok_or_else(|| unknown(&id))?;
    let total = t.output.lock().unwrap().end();
    if offset.is_some_and(|n| n > total) {
        return Err(ApiError::bad_request(
            "invalid_offset",
            format!("offset is beyond the output so far ({total} bytes)"),
        ));
    }
    let ws = ws.map_err(|_| {
        ApiError::bad_request("websocket_required", "this route takes a WebSocket upgrade")
    })?;
    let limit = app.terminals.settings.client_queue_bytes;
    let activity = app.activity.clone();
    let every = app.config.ws_ping_interval;
    Ok(ws
        .max_message_size(app.config.max_ws_message_bytes)
        .max_frame_size(app.config.max_ws_message_bytes)
        .on_upgrade(move |socket| {
            let socket = Heartbeat::new(socket, every);
            terminal::attach::run(socket, t, offset, limit, activity)
        }))
}

pub async fn events(
    State(app): State<AppState>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|_| {
        ApiError::bad_request("websocket_required", "this route takes a WebSocket upgrade")
    })?;
    let rx = app.events.subscribe();
    let every = app.config.ws_ping_interval;
    Ok(ws
        .max_message_size(app.config.max_ws_message_bytes)
        .on_upgrade(move |socket| stream_events(Heartbeat::new(socket, every), rx)))
}

/// Sends the events as they come. A client too slow for the bus's queue is
/// told `{"type":"lagged"}` (it missed some and should re-read what it
/// shows, e.g. `/api/v1/status` and `/api/v1/ports`), then gets the events
/// after.
async fn stream_events(
    socket: Heartbeat,
    mut rx: tokio::sync::broadcast::Receiver<crate::events::Event>,
) {
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let (text, last) = match ev {
                    Ok(ev) => {
                        let shutdown = matches!(ev, crate::events::Event::Shutdown);
                        match serde_json::to_string(&ev) {
                            Ok(text) => (text, shutdown),
                            Err(e) => {
                                tracing::warn!(error = %e, "an event did not serialize");
                                continue;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(skipped = n, "event client lagged");
                        (r#"{"type":"lagged"}"#.to_owned(), false)
                    }
                    Err(_) => return,
                };
                if sink.send(Message::Text(text.into())).await.is_err() || last {
                    return;
                }
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}
