//! The accept loop: each connection is wrapped in [`Framing`], served by
//! hyper's HTTP/1 (with upgrades) through the router, and asked to finish
//! its current request when the daemon stops serving.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::framing::{Framing, UpgradeAnswer};

/// Serves `router` on `listener` until `stop`, then waits for the open
/// connections to finish their requests (upgraded ones are not waited for:
/// their owners track them).
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) {
    let connections = TaskTracker::new();
    let router = TowerToHyperService::new(router);
    loop {
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
        let answer = Arc::new(UpgradeAnswer::default());
        let io = TokioIo::new(Framing::new(stream, answer.clone()));
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(answer.clone());
            router.call(req)
        });
        let stop = stop.clone();
        connections.spawn(
            async move {
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
