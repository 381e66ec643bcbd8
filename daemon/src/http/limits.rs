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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::framing::{Framing, UpgradeAnswer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(30),
        idle: Duration::from_secs(300),
    };

    fn conn() -> (Framing<DuplexStream>, DuplexStream, Arc<InFlight>) {
        let (ours, peer) = tokio::io::duplex(1 << 16);
        let in_flight = Arc::new(InFlight::default());
        let limits = Limits::new(T, in_flight.clone(), None);
        let framing = Framing::new(ours, Arc::new(UpgradeAnswer::default())).with_limits(limits);
        (framing, peer, in_flight)
    }

    /// Reads until the connection fails; how long that took.
    async fn fails_after(f: &mut Framing<DuplexStream>) -> Duration {
        let start = Instant::now();
        let mut buf = [0u8; 1024];
        loop {
            match f.read(&mut buf).await {
                Ok(0) => panic!("ended without a timeout"),
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
                    return start.elapsed();
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_has_header_timeout() {
        let (mut f, _peer, _) = conn();
        assert_eq!(fails_after(&mut f).await, T.header);
    }

    #[tokio::test(start_paused = true)]
    async fn idleness_starts_when_the_last_answer_ends_and_a_new_head_has_header_timeout() {
        let (mut f, mut peer, in_flight) = conn();
        let mut buf = [0u8; 1024];
        peer.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(f.read(&mut buf).await.unwrap() > 0);

        // While the request is in flight, a read waits past both limits.
        let guard = in_flight.start();
        let waited = tokio::time::timeout(T.idle * 2, f.read(&mut buf)).await;
        assert!(waited.is_err(), "{waited:?}");
        // Once it has ended, the idle limit runs.
        drop(guard);
        let idle = tokio::time::timeout(Duration::from_secs(100), f.read(&mut buf)).await;
        assert!(idle.is_err(), "{idle:?}");
        // Half a head: header_timeout from its first byte, not what is
        // left of the idle limit.
        peer.write_all(b"GET / HT").await.unwrap();
        assert_eq!(fails_after(&mut f).await, T.header);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_answer_ending_wakes_a_waiting_reader() {
        let (mut f, mut peer, in_flight) = conn();
        peer.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        assert!(f.read(&mut buf).await.unwrap() > 0);
        let guard = in_flight.start();
        let ends = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(guard);
        };
        // The read that started while the request was in flight times out
        // idle_connection_timeout after it ended, without a byte to wake it.
        let (took, ()) = tokio::join!(fails_after(&mut f), ends);
        assert_eq!(took, Duration::from_secs(10) + T.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_pauses_longer_than_header_timeout_fails() {
        let (mut f, mut peer, _in_flight) = conn();
        peer.write_all(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf.")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let mut got = 0;
        while got < "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf.".len() {
            got += f.read(&mut buf).await.unwrap();
        }
        // A body that goes on in time is read.
        tokio::time::sleep(Duration::from_secs(20)).await;
        peer.write_all(b"ha").await.unwrap();
        assert_eq!(f.read(&mut buf).await.unwrap(), 2);
        assert_eq!(fails_after(&mut f).await, T.header);
    }
}
