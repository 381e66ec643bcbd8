//! One attached client: replay (bytes from an offset, or the current screen),
//! then live output pulled from the ring at the client's own pace (the
//! terminal's reader waits for it while it reads, and skips it ahead when it
//! stops), input, resizes, mode changes, exit and shutdown.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::{size_of, Control, Terminal};
use crate::activity::{Activity, Source};

/// Largest binary frame of output sent at once.
const MAX_FRAME: usize = 256 * 1024;
/// A frame this large means output is streaming rather than echoing.
const COALESCE_FROM: usize = 4096;
/// How long a streaming client lets output gather before its next frame.
const COALESCE_WAIT: std::time::Duration = std::time::Duration::from_millis(1);
/// How often the echo state is looked at while a client is attached: a
/// program may turn echo off without writing anything.
const MODE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_TOO_BIG: u16 = 1009;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    // Any JSON value, so that -1 or 1.5 get `invalid_size`.
    Resize {
        cols: serde_json::Value,
        rows: serde_json::Value,
    },
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
        Ok(ClientMessage::Resize { cols, rows }) => {
            match (super::size_of(&cols), super::size_of(&rows)) {
                (Some(c), Some(r)) => Ok((c.into(), r.into())),
                _ => Err("invalid_size".into()),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Runs an attached client until it leaves, the terminal exits, or the
/// daemon shuts down. `offset` is the client's resume point, if any.
pub async fn run(
    socket: crate::heartbeat::Heartbeat,
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
    let (key, first, screen) = match offset.and_then(|n| Some((n, t.attach_at(n, queue_limit)?))) {
        Some((n, (key, end, echo))) => {
            let first = json!({"type":"attached","offset":n,"output_offset":end,"replay":"bytes","echo":echo});
            (key, first, None)
        }
        None => {
            let (key, screen, at, echo) = t.attach_screen(queue_limit);
            let first = json!({"type":"attached","offset":at,"output_offset":at,"replay":"screen","echo":echo});
            (key, first, Some(screen))
        }
    };
    let _guard = ClientGuard(t.clone(), key);
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
                            if let (Some(cols), Some(rows)) = (size_of(&cols), size_of(&rows)) {
                                if let Err(e) = reader_t.resize(cols, rows) {
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

    let mut mode_poll = tokio::time::interval(MODE_POLL);
    mode_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = Vec::with_capacity(MAX_FRAME);
    loop {
        // Everything already produced is sent before waiting again.
        buf.clear();
        let step = t.step(key, MAX_FRAME, &mut buf);
        let exited = step.exited.clone();
        if let Some(k) = step.lagged {
            if sink
                .send(text(json!({"type":"lagged","offset":k})))
                .await
                .is_err()
            {
                return;
            }
        }
        if !buf.is_empty() {
            // A copy of the exact size: the buffer is kept for the next step.
            let frame = axum::body::Bytes::copy_from_slice(&buf);
            if sink.send(Message::Binary(frame)).await.is_err() {
                return;
            }
            if (COALESCE_FROM..MAX_FRAME).contains(&step.sent) {
                // Output is streaming: let more gather, so that a flood goes
                // out in large frames rather than one per PTY read.
                tokio::time::sleep(COALESCE_WAIT).await;
            }
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
            _ = mode_poll.tick() => t.check_mode(),
            c = control.recv() => match c {
                Ok(Control::Mode { echo }) => {
                    t.wake(key);
                    if sink.send(text(json!({"type":"mode","echo":echo}))).await.is_err() {
                        return;
                    }
                }
                Err(_) => {}
            },
            reply = reply_rx.recv() => match reply {
                Some(msg) => {
                    t.wake(key);
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

struct ClientGuard(Arc<Terminal>, u64);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.detach(self.1);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
