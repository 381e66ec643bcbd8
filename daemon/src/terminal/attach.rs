//! One attached client: replay (bytes from an offset, or the current screen),
//! then live output pulled from the ring at the client's own pace, input,
//! resizes, lag, exit and shutdown.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Control, Terminal, MAX_SIZE, MIN_SIZE};
use crate::activity::{Activity, Source};

/// Largest binary frame of output sent at once.
const MAX_FRAME: usize = 256 * 1024;

pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_TOO_BIG: u16 = 1009;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Resize { cols: u32, rows: u32 },
}

fn text(v: serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }))
}

fn error_frame(code: &str, message: &str) -> Message {
    text(json!({"type":"error","error":{"code":code,"message":message}}))
}

/// The parse of a client's text message, for the fuzz targets
/// (`crate::fuzzing`): a resize's size, or why the message is refused.
#[doc(hidden)]
pub fn fuzz_control(body: &str) -> Result<(u32, u32), String> {
    match serde_json::from_str::<ClientMessage>(body) {
        Ok(ClientMessage::Resize { cols, rows }) => Ok((cols, rows)),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs an attached client until it leaves, the terminal exits, or the
/// daemon shuts down. `offset` is the client's resume point, if any.
pub async fn run(
    socket: WebSocket,
    t: Arc<Terminal>,
    offset: Option<u64>,
    queue_limit: usize,
    activity: Activity,
) {
    let (mut sink, mut stream) = socket.split();
    let mut changed = t.changed.subscribe();
    let mut control = t.control.subscribe();

    // Replay, decided and taken under the output lock so that nothing is
    // missed or repeated between the replay and live output.
    let (mut cursor, first, screen) = {
        let mut out = t.output.lock().unwrap();
        match offset.filter(|&n| n >= out.start()) {
            Some(n) => {
                out.clients += 1;
                let first = json!({"type":"attached","offset":n,"output_offset":out.end(),"replay":"bytes","echo":out.echo});
                (n, first, None)
            }
            None => {
                drop(out);
                let (screen, at, echo) = t.attach_screen();
                let first = json!({"type":"attached","offset":at,"output_offset":at,"replay":"screen","echo":echo});
                (at, first, Some(screen))
            }
        }
    };
    let _guard = ClientGuard(t.clone());
    activity.touch(Source::TerminalInput);

    if sink.send(text(first)).await.is_err() {
        return;
    }
    if let Some(screen) = screen {
        if sink.send(Message::Binary(screen.into())).await.is_err() {
            return;
        }
    }

    // The reader forwards input to the PTY and replies to the writer side.
    let (reply_tx, mut reply_rx) = mpsc::channel::<Message>(8);
    let reader_t = t.clone();
    let reader = tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(Message::Binary(bytes)) => {
                    activity.touch(Source::TerminalInput);
                    reader_t.write(bytes.to_vec()).await;
                }
                Ok(Message::Text(body)) => {
                    let reply = match serde_json::from_str::<ClientMessage>(&body) {
                        Ok(ClientMessage::Resize { cols, rows }) => {
                            let ok = |n: u32| (MIN_SIZE as u32..=MAX_SIZE as u32).contains(&n);
                            if ok(cols) && ok(rows) {
                                if let Err(e) = reader_t.resize(cols as u16, rows as u16) {
                                    tracing::warn!(error = %e, "resize failed");
                                }
                                None
                            } else {
                                Some(error_frame(
                                    "invalid_size",
                                    "cols and rows must be from 1 to 1000",
                                ))
                            }
                        }
                        Err(e) => Some(error_frame(
                            "invalid_message",
                            &format!("unknown or malformed message: {e}"),
                        )),
                    };
                    if let Some(r) = reply {
                        if reply_tx.send(r).await.is_err() {
                            break;
                        }
                    }
                }
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(e) => {
                    let too_big = std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| e.to_string())
                        .contains("too long")
                        || e.to_string().contains("too long")
                        || e.to_string().contains("Space limit");
                    if too_big {
                        let _ = reply_tx.send(close(CLOSE_TOO_BIG, "message too big")).await;
                    }
                    tracing::debug!(error = %e, "client connection ended");
                    break;
                }
            }
        }
    });
    let _abort_reader = AbortOnDrop(reader);

    let mut buf = Vec::with_capacity(MAX_FRAME);
    loop {
        // Everything already produced is sent before waiting again.
        let (lagged, exited) = {
            let out = t.output.lock().unwrap();
            let end = out.end();
            let mut lagged = None;
            if cursor < out.start() || end - cursor > queue_limit as u64 {
                cursor = end;
                lagged = Some(end);
            }
            buf.clear();
            let n = out.read(cursor, MAX_FRAME, &mut buf).unwrap_or(0);
            cursor += n as u64;
            let exited = (cursor == end).then(|| out.exited.clone()).flatten();
            (lagged, exited)
        };
        if let Some(k) = lagged {
            if sink
                .send(text(json!({"type":"lagged","offset":k})))
                .await
                .is_err()
            {
                return;
            }
        }
        if !buf.is_empty() {
            if sink
                .send(Message::Binary(std::mem::take(&mut buf).into()))
                .await
                .is_err()
            {
                return;
            }
            buf = Vec::with_capacity(MAX_FRAME);
            continue;
        }
        if let Some(status) = exited {
            let _ = sink
                .send(text(
                    json!({"type":"exit","code":status.code,"signal":status.signal}),
                ))
                .await;
            let _ = sink.send(close(CLOSE_NORMAL, "exited")).await;
            return;
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            c = control.recv() => match c {
                Ok(Control::Mode { echo }) => {
                    if sink.send(text(json!({"type":"mode","echo":echo}))).await.is_err() {
                        return;
                    }
                }
                Err(_) => {}
            },
            reply = reply_rx.recv() => match reply {
                Some(msg) => {
                    let closing = matches!(msg, Message::Close(_));
                    if sink.send(msg).await.is_err() || closing {
                        return;
                    }
                }
                // The client went away.
                None => return,
            },
            _ = t.closing.cancelled() => {
                let _ = sink.send(text(json!({"type":"shutdown"}))).await;
                let _ = sink.send(close(CLOSE_GOING_AWAY, "shutting down")).await;
                return;
            }
        }
    }
}

struct ClientGuard(Arc<Terminal>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.output.lock().unwrap().clients -= 1;
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
