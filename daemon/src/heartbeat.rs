//! WebSocket heartbeats: every WebSocket the daemon serves itself (terminal
//! attach, events, sync, tunnel) pings its peer and ends when the peer has
//! sent nothing back for two intervals, or has taken nothing of what was
//! sent for as long. A peer that vanished without a FIN (a laptop closed, a
//! network gone) would otherwise hold its socket, task and queues for ever.
//!
//! [`Heartbeat`] wraps the socket below the route's code, which splits it
//! into a reader and a writer as before: the reader's polls send the pings
//! and see the deadline; the writer's polls see a stalled peer. Pongs are
//! swallowed here; the route sees every other frame unchanged. A ping goes
//! out after an interval without a frame, and the peer has one more
//! interval to answer it; the clock runs only while the reader reads, so a
//! reader that was busy (a terminal's input waiting for the PTY) never
//! takes its own delay for the peer's.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::task::AtomicWaker;
use futures_util::{Sink, Stream};
use tokio::time::{Instant, Sleep};

/// Pings this often by default; a peer is dead after twice this.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(25);

/// The send timeout for a ping interval: how long a writer may wait for its
/// peer to take a byte before the connection is closed (50 s by default).
/// The same bound as the unanswered ping's, so one rule says when a peer is
/// gone; byte pumps (proxied upgrades, `forward`) use it too.
pub fn send_timeout(interval: Duration) -> Duration {
    interval.saturating_mul(2)
}

/// A WebSocket that pings its peer and ends when the peer stops answering.
pub struct Heartbeat {
    inner: WebSocket,
    interval: Duration,
    /// When the peer last sent a frame (a pong included).
    seen: Instant,
    /// When the ping now awaiting an answer fell due.
    ping_sent: Option<Instant>,
    /// The reader's timer: the next ping or the deadline, whichever is first.
    tick: Pin<Box<Sleep>>,
    ping_due: bool,
    flush_due: bool,
    /// Since when the writer has waited for the peer to take bytes.
    stalled_since: Option<Instant>,
    /// The writer's timer, armed while it waits.
    stall: Pin<Box<Sleep>>,
    dead: bool,
    wakers: Arc<Wakers>,
    /// Wakes both halves: every write goes through it, whichever half makes
    /// it, so a ping sent by the reader never steals the writer's wake-up.
    both: Waker,
}

#[derive(Default)]
struct Wakers {
    read: AtomicWaker,
    write: AtomicWaker,
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.read.wake();
        self.write.wake();
    }
}

impl Heartbeat {
    pub fn new(inner: WebSocket, interval: Duration) -> Self {
        let now = Instant::now();
        let wakers = Arc::new(Wakers::default());
        Heartbeat {
            inner,
            interval,
            seen: now,
            ping_sent: None,
            tick: Box::pin(tokio::time::sleep_until(now + interval)),
            ping_due: false,
            flush_due: false,
            stalled_since: None,
            stall: Box::pin(tokio::time::sleep_until(now + interval)),
            dead: false,
            both: Waker::from(wakers.clone()),
            wakers,
        }
    }

    /// How long the writer may wait for the peer to take bytes.
    fn timeout(&self) -> Duration {
        send_timeout(self.interval)
    }

    fn died(&mut self) {
        if !self.dead {
            tracing::debug!("websocket peer stopped answering pings");
        }
        self.dead = true;
        self.wakers.read.wake();
        self.wakers.write.wake();
    }

    fn dead_error() -> axum::Error {
        axum::Error::new(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer stopped answering pings",
        ))
    }

    /// Queues a due ping and flushes it, as far as the socket takes it now;
    /// what is left is retried at the next poll (the `both` waker brings it).
    fn send_ping(&mut self) {
        let waker = self.both.clone();
        let mut cx = Context::from_waker(&waker);
        if self.ping_due {
            match Pin::new(&mut self.inner).poll_ready(&mut cx) {
                Poll::Ready(Ok(())) => {
                    self.ping_due = false;
                    if Pin::new(&mut self.inner)
                        .start_send(Message::Ping(Default::default()))
                        .is_ok()
                    {
                        self.flush_due = true;
                    }
                }
                // A broken socket: the reads end the session.
                Poll::Ready(Err(_)) => self.ping_due = false,
                Poll::Pending => {}
            }
        }
        if self.flush_due && Pin::new(&mut self.inner).poll_flush(&mut cx).is_ready() {
            self.flush_due = false;
        }
    }

    /// One of the writer's operations on the socket, bounded by the stall
    /// deadline.
    fn poll_write_op(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut WebSocket>, &mut Context<'_>) -> Poll<Result<(), axum::Error>>,
    ) -> Poll<Result<(), axum::Error>> {
        if self.dead {
            return Poll::Ready(Err(Self::dead_error()));
        }
        self.wakers.write.register(cx.waker());
        let waker = self.both.clone();
        match op(Pin::new(&mut self.inner), &mut Context::from_waker(&waker)) {
            Poll::Ready(r) => {
                self.stalled_since = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let now = Instant::now();
                let at = *self.stalled_since.get_or_insert(now) + self.timeout();
                if now >= at {
                    self.died();
                    return Poll::Ready(Err(Self::dead_error()));
                }
                if self.stall.deadline() != at {
                    self.stall.as_mut().reset(at);
                }
                if self.stall.as_mut().poll(cx).is_ready() {
                    self.died();
                    return Poll::Ready(Err(Self::dead_error()));
                }
                Poll::Pending
            }
        }
    }
}

impl Stream for Heartbeat {
    type Item = Result<Message, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(None);
        }
        this.wakers.read.register(cx.waker());
        loop {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(msg))) => {
                    this.seen = Instant::now();
                    this.ping_sent = None;
                    if !matches!(msg, Message::Pong(_)) {
                        return Poll::Ready(Some(Ok(msg)));
                    }
                }
                Poll::Ready(other) => return Poll::Ready(other),
                Poll::Pending => break,
            }
        }
        let now = Instant::now();
        match this.ping_sent {
            Some(sent) if now >= sent + this.interval => {
                this.died();
                return Poll::Ready(None);
            }
            Some(_) => {}
            None if now >= this.seen + this.interval => {
                this.ping_due = true;
                this.ping_sent = Some(now);
            }
            None => {}
        }
        if this.ping_due || this.flush_due {
            this.send_ping();
        }
        // The next ping or the deadline: it only moves later, so a timer
        // set earlier fires early at worst, and is set again here.
        let at = match this.ping_sent {
            Some(sent) => sent + this.interval,
            None => this.seen + this.interval,
        };
        if this.tick.is_elapsed() || this.tick.deadline() > at {
            this.tick.as_mut().reset(at);
        }
        if this.tick.as_mut().poll(cx).is_ready() {
            this.tick.as_mut().reset(at);
            let _ = this.tick.as_mut().poll(cx);
        }
        Poll::Pending
    }
}

impl Sink<Message> for Heartbeat {
    type Error = axum::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_write_op(cx, |s, cx| s.poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        let this = self.get_mut();
        if this.dead {
            return Err(Self::dead_error());
        }
        Pin::new(&mut this.inner).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_write_op(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_write_op(cx, |s, cx| s.poll_close(cx))
    }
}
