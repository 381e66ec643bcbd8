//! The time limits of a connection on the general path (`header_timeout`,
//! `idle_connection_timeout`, and a read timeout on request bodies), the
//! count of its requests in flight they depend on, and its place among
//! `max_connections`. [`super::framing::Framing`] applies them where it
//! reads, so they hold for every head hyper parses; the fast lane applies
//! the same rules with its own reads (`proxy/lane.rs`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use crate::config::Config;

/// The connection time limits of the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For a whole request head: from the accept for the first, from its
    /// first byte for a later one; also the longest pause in a request body.
    pub header: Duration,
    /// For a kept-alive connection with no request in flight.
    pub idle: Duration,
}

impl Timeouts {
    pub fn of(config: &Config) -> Self {
        Timeouts {
            header: config.header_timeout,
            idle: config.idle_connection_timeout,
        }
    }
}

/// The requests of one connection that hyper is serving: from the call of
/// the service to the end of the answer's body. While one is, the
/// connection is not idle, however long the answer takes.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    /// The reader, woken when the last request ends: hyper, having seen
    /// its read pending, would not look again before the peer sends.
    reader: AtomicWaker,
}

impl InFlight {
    pub fn start(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    /// Whether no request is in flight; if one is, `cx` is woken when none is.
    fn idle(&self, cx: &mut Context<'_>) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return true;
        }
        self.reader.register(cx.waker());
        // It may have ended between the two looks.
        self.count.load(Ordering::Acquire) == 0
    }
}

/// One request in flight; dropped with the answer's body.
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

/// An answer's body that keeps its request in flight until hyper drops it.
pub struct Tracked<B> {
    body: B,
    _guard: InFlightGuard,
}

impl<B> Tracked<B> {
    pub fn new(body: B, guard: InFlightGuard) -> Self {
        Tracked {
            body,
            _guard: guard,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What the reader of a connection is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The rest of a request head (or the first head of the connection).
    Head,
    /// The next request, with none in flight.
    Idle,
    /// More of a request body.
    Body,
}

/// The limits of one connection on the general path, held by its reader
/// (and so by an upgraded connection too, for its `max_connections` place).
pub struct Limits {
    timeouts: Timeouts,
    in_flight: Arc<InFlight>,
    waiting: Option<(Wait, Instant)>,
    timer: Pin<Box<Sleep>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Limits {
    pub fn new(
        timeouts: Timeouts,
        in_flight: Arc<InFlight>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        let now = Instant::now();
        Limits {
            timeouts,
            in_flight,
            waiting: Some((Wait::Head, now)),
            timer: Box::pin(tokio::time::sleep_until(now + timeouts.header)),
            _permit: permit,
        }
    }

    /// The reader handed bytes on: whatever it waited for came.
    pub fn progressed(&mut self) {
        self.waiting = None;
    }

    /// The reader has nothing to hand on and waits for the peer, for `wait`
    /// (`None`: no limit applies, as after an upgrade); an error when the
    /// wait has lasted past its limit.
    pub fn poll_wait(&mut self, wait: Option<Wait>, cx: &mut Context<'_>) -> Poll<io::Error> {
        let wait = match wait {
            Some(Wait::Idle) if !self.in_flight.idle(cx) => None,
            w => w,
        };
        let Some(wait) = wait else {
            self.waiting = None;
            return Poll::Pending;
        };
        let now = Instant::now();
        let since = match self.waiting {
            // The first head is timed from the accept, before any byte.
            Some((Wait::Head, since)) if wait == Wait::Idle => since,
            Some((w, since)) if w == wait => since,
            _ => now,
        };
        let kind = if matches!(self.waiting, Some((Wait::Head, _))) && wait == Wait::Idle {
            Wait::Head
        } else {
            wait
        };
        self.waiting = Some((kind, since));
        let limit = match kind {
            Wait::Head | Wait::Body => self.timeouts.header,
            Wait::Idle => self.timeouts.idle,
        };
        let at = since + limit;
        if now >= at {
            return Poll::Ready(timed_out(kind));
        }
        if self.timer.deadline() != at {
            self.timer.as_mut().reset(at);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(timed_out(kind)),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn timed_out(wait: Wait) -> io::Error {
    let what = match wait {
        Wait::Head => "no whole request head within header_timeout",
        Wait::Idle => "no request within idle_connection_timeout",
        Wait::Body => "the request body paused longer than header_timeout",
    };
    tracing::debug!(what, "connection closed");
    io::Error::new(io::ErrorKind::TimedOut, what)
}
