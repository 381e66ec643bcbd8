//! The `/api/v1/sync` WebSocket: `hello`, replay or `resync`, live change
//! events, and applies whose changes come back with this client's id as
//! their `origin`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::files::{entry_json, run_apply, ApplyAnswer, ApplyRequest};
use super::{ApiError, AppState};
use crate::activity::Source as ActivitySource;
use crate::heartbeat::Heartbeat;
use crate::sync::{Event, EventKind};

const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_BIG: u16 = 1009;

#[derive(Debug, Deserialize)]
pub struct SyncQuery {
    since: Option<u64>,
    epoch: Option<String>,
}

pub(super) fn event_json(ev: &Event) -> Value {
    let mut v = match &ev.kind {
        EventKind::Changed(c) => {
            let mut v = entry_json(&c.entry());
            v["type"] = json!("changed");
            v
        }
        EventKind::Deleted { path, kind } => {
            json!({"type": "deleted", "path": path, "kind": kind.as_str()})
        }
        EventKind::Git { head, branch } => json!({"type": "git", "head": head, "branch": branch}),
    };
    v["seq"] = json!(ev.seq);
    if let Some(o) = &ev.origin {
        v["origin"] = json!(o.as_ref());
    }
    v
}

fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

fn client_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex::encode(b)
}

pub async fn sync(
    State(app): State<AppState>,
    q: Result<Query<SyncQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let ws = ws.map_err(|_| {
        ApiError::bad_request("websocket_required", "this route takes a WebSocket upgrade")
    })?;
    Ok(ws
        .max_message_size(app.config.max_ws_message_bytes)
        .max_frame_size(app.config.max_ws_message_bytes)
        .on_upgrade(move |socket| {
            let every = app.config.ws_ping_interval;
            run(Heartbeat::new(socket, every), app, q)
        }))
}

async fn run(socket: Heartbeat, app: AppState, q: SyncQuery) {
    let client: Arc<str> = client_id().into();
    let since = q.since.map(|s| (q.epoch.as_deref().unwrap_or(""), s));
    let sub = app.sync.subscribe(since);
    let mut shutdown = app.events.subscribe();
    let (mut sink, mut stream) = socket.split();
    let span = tracing::debug_span!("sync_client", client = %client);
    let _e = span.enter();
    let hello =
        json!({"type": "hello", "client": client.as_ref(), "epoch": sub.epoch, "seq": sub.seq});
    if sink.send(text(hello)).await.is_err() {
        return;
    }
    let mut last = sub.seq;
    match sub.replay {
        Ok(events) => {
            for ev in events {
                if sink.send(text(event_json(&ev))).await.is_err() {
                    return;
                }
            }
        }
        Err(_) => {
            if sink.send(text(json!({"type": "resync"}))).await.is_err() {
                return;
            }
        }
    }
    drop(_e);

    let (reply_tx, mut reply_rx) = mpsc::channel::<Message>(16);
    let reader_app = app.clone();
    let reader_client = client.clone();
    let mut reader = tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let body = match msg {
                Ok(Message::Text(t)) => t.to_string(),
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(e) => {
                    let s = format!(
                        "{e} {:?}",
                        std::error::Error::source(&e).map(|s| s.to_string())
                    );
                    if s.contains("too long") || s.contains("Space limit") || s.contains("too big")
                    {
                        let _ = reply_tx
                            .send(Message::Close(Some(CloseFrame {
                                code: CLOSE_TOO_BIG,
                                reason: "message larger than max_ws_message_bytes".into(),
                            })))
                            .await;
                    }
                    break;
                }
            };
            let reply = handle(&reader_app, &reader_client, &body).await;
            if reply_tx.send(text(reply)).await.is_err() {
                break;
            }
        }
    });
    let mut rx = sub.rx;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if ev.seq <= last {
                        continue;
                    }
                    last = ev.seq;
                    if sink.send(text(event_json(&ev))).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Catch up from the log; if even that is gone, resync.
                    let (frames, to) = match app.sync.since(last) {
                        Ok(evs) => {
                            let to = evs.last().map_or(last, |e| e.seq);
                            (evs.iter().map(|e| text(event_json(e))).collect::<Vec<_>>(), to)
                        }
                        Err(_) => (vec![text(json!({"type": "resync"}))], app.sync.subscribe(None).seq),
                    };
                    last = to;
                    let mut ok = true;
                    for f in frames {
                        if sink.send(f).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    if !ok {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            reply = reply_rx.recv() => match reply {
                Some(m) => {
                    let closing = matches!(m, Message::Close(_));
                    if sink.send(m).await.is_err() || closing {
                        break;
                    }
                }
                None => break,
            },
            ev = shutdown.recv() => {
                if matches!(ev, Ok(crate::events::Event::Shutdown) | Err(broadcast::error::RecvError::Closed)) {
                    let _ = sink.send(Message::Close(Some(CloseFrame {
                        code: CLOSE_GOING_AWAY,
                        reason: "the daemon is shutting down".into(),
                    }))).await;
                    break;
                }
            }
            _ = &mut reader => break,
        }
    }
    reader.abort();
}

/// Reads one client message: the `id` to answer with, and the apply it
/// asks for or the error frame that answers it.
fn parse_message(body: &str) -> (Value, Result<ApplyRequest, Value>) {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            return (
                Value::Null,
                Err(
                    json!({"type": "error", "id": null, "error": {"code": "invalid_json", "message": format!("the message is not JSON: {e}")}}),
                ),
            )
        }
    };
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    if v.get("type").and_then(Value::as_str) != Some("apply") {
        let e = json!({"type": "error", "id": id, "error": {"code": "invalid_message", "message": "the only message a client sends is {\"type\":\"apply\",...}"}});
        return (id, Err(e));
    }
    let mut fields = v;
    if let Some(o) = fields.as_object_mut() {
        o.remove("type");
        o.remove("id");
    }
    match serde_json::from_value(fields) {
        Ok(r) => (id, Ok(r)),
        Err(e) => {
            let e = json!({"type": "error", "id": id, "error": {"code": "invalid_json", "message": format!("the apply is not the expected JSON: {e}")}});
            (id, Err(e))
        }
    }
}

/// The parse of a client message, for the fuzz targets (`crate::fuzzing`).
pub(crate) fn fuzz_message(body: &str) {
    let (_, parsed) = parse_message(body);
    if let Err(frame) = parsed {
        assert_eq!(frame["type"], "error");
    }
}

/// Answers one client message.
async fn handle(app: &AppState, client: &Arc<str>, body: &str) -> Value {
    let (id, req) = match parse_message(body) {
        (id, Ok(req)) => (id, req),
        (_, Err(frame)) => return frame,
    };
    app.activity.touch(ActivitySource::Api);
    match run_apply(app, req, Some(client.clone())).await {
        ApplyAnswer::Applied(results) => json!({"type": "applied", "id": id, "results": results}),
        ApplyAnswer::Conflicts(conflicts) => {
            json!({"type": "conflict", "id": id, "conflicts": conflicts})
        }
        ApplyAnswer::Error(e) => json!({"type": "error", "id": id, "error": e.body()}),
    }
}
