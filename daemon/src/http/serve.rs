//! The accept loop: each connection goes first to the proxy's fast lane,
//! which serves plain proxied requests itself; whatever the lane hands over
//! is wrapped in [`Framing`], served by hyper's HTTP/1 (with upgrades)
//! through the router, and asked to finish its current request when the
//! daemon stops serving. At most `max_connections` are served at once: the
//! loop accepts only with a free place, so the rest wait in the kernel's
//! backlog. When a burst of connections has ended, their memory is given
//! back (`memory::soon`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::framing::{Framing, UpgradeAnswer};
use super::limits::{InFlight, Limits, Timeouts, Tracked};
use super::AppState;
use crate::proxy::lane;

/// Connections open at once from which their end is a burst's end.
const BURST: usize = 256;

/// Connections being served, and the most at once since the last trim.
#[derive(Default)]
struct Open {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Open {
    fn enter(self: &Arc<Self>) -> OpenGuard {
        let n = self.now.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        self.peak.fetch_max(n, Ordering::Relaxed);
        OpenGuard(self.clone())
    }
}

/// One connection's task; its drop may end a burst.
struct OpenGuard(Arc<Open>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let left = self.0.now.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        // Thousands of connections (slowloris, a load test) leave their
        // tasks' and buffers' memory in the allocator: once most have gone,
        // it is given back, once per burst.
        let peak = self.0.peak.load(Ordering::Relaxed);
        if peak >= BURST
            && left <= peak / 8
            && self
                .0
                .peak
                .compare_exchange(peak, left, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            crate::memory::soon();
        }
    }
}

/// Serves the daemon on `listener` until `stop`, then waits for the open
/// connections to finish their requests (upgraded ones are not waited for:
/// their owners track them).
pub async fn serve(listener: TcpListener, app: AppState, stop: CancellationToken) {
    let connections = TaskTracker::new();
    let router = TowerToHyperService::new(super::router(app.clone()));
    let places = Arc::new(Semaphore::new(app.config.max_connections));
    let timeouts = Timeouts::of(&app.config);
    let open = Arc::new(Open::default());
    loop {
        // A place first: without one, nothing is accepted.
        let place = tokio::select! {
            _ = stop.cancelled() => break,
            place = places.clone().acquire_owned() => match place {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        // Responses are written whole; Nagle would only hold back their ends.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let app = app.clone();
        let stop = stop.clone();
        let counted = open.enter();
        connections.spawn(
            async move {
                let _counted = counted;
                let (stream, read) = match lane::serve(&app, stream, peer, &stop).await {
                    lane::Outcome::Closed => return,
                    lane::Outcome::Handoff(stream, read) => (stream, read),
                };
                let answer = Arc::new(UpgradeAnswer::default());
                let in_flight = Arc::new(InFlight::default());
                // The place goes with the reader, into an upgraded connection too.
                let limits = Limits::new(timeouts, in_flight.clone(), Some(place));
                let framing = Framing::resume(stream, answer.clone(), read).with_limits(limits);
                let io = TokioIo::new(framing);
                let service =
                    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                        let guard = in_flight.start();
                        req.extensions_mut().insert(ConnectInfo(peer));
                        req.extensions_mut().insert(answer.clone());
                        let answered = router.call(req);
                        async move {
                            let resp = answered.await?;
                            Ok::<_, std::convert::Infallible>(
                                resp.map(|b| axum::body::Body::new(Tracked::new(b, guard))),
                            )
                        }
                    });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades();
                tokio::pin!(conn);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    _ = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended");
                }
            }
            .instrument(tracing::debug_span!("connection", client.addr = %peer)),
        );
    }
    connections.close();
    connections.wait().await;
}

/// Errors of one connection that `accept` reports; the listener is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
