//! The reverse proxy to the workspace's ports (PROTOCOL.md, "Ports"): by
//! path (`/proxy/{port}/...`) and by host (`{port}-...`), HTTP/1.1 with
//! streamed bodies both ways, WebSocket (any upgrade) spliced after the 101,
//! visibility-based access, and the daemon's credential removed before
//! anything reaches the app.

pub mod lane;
pub mod policy;
pub mod splice;
pub mod tickets;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper::body::{Bytes, Frame, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::activity::Source as ActivitySource;
use crate::auth;
use crate::config::Visibility;
use crate::http::{pages, ApiError, App};
pub use policy::TICKET_PARAM;
use policy::{Refusal, Verdict};
pub use tickets::Tickets;

/// Headers that belong to one hop and are never forwarded as they are.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The proxy's long-lived parts: the pooled upstream client and the tickets.
pub struct Proxy {
    client: Client<HttpConnector, ProgressBody>,
    pub tickets: Tickets,
    upstream_timeout: Duration,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    pub fn new(
        upstream_timeout: Duration,
        session_ttl: Duration,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Proxy {
            client,
            tickets: Tickets::new(session_ttl),
            upstream_timeout,
            tracker,
            cancel,
        }
    }

    /// For a connection task the proxy does not spawn itself (a tunnel
    /// after its upgrade): a token that keeps the shutdown drain waiting,
    /// and the signal to stop.
    pub fn task(
        &self,
    ) -> (
        tokio_util::task::task_tracker::TaskTrackerToken,
        CancellationToken,
    ) {
        (self.tracker.token(), self.cancel.clone())
    }
}

/// The port a `Host` routes to: its first label (any `:port` removed)
/// starts with `<digits>-`. `Some(Err(()))` for digits that are no port.
pub fn host_port(host: &str) -> Option<Result<u16, ()>> {
    let label = host.split(['.', ':']).next()?;
    let (digits, _) = label.split_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(parse_port(digits).ok_or(()))
}

/// A port number from 1 to 65535.
pub fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p > 0)
}

pub fn invalid_port(got: &str) -> ApiError {
    let got: String = got.chars().take(20).collect();
    ApiError::bad_request(
        "invalid_port",
        format!("the port must be a number from 1 to 65535, got {got:?}"),
    )
}

fn unavailable(port: u16, page: bool) -> Response {
    if page {
        return pages::port_unavailable(port);
    }
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "port_not_available",
        format!("nothing is listening on port {port}, or its visibility is none"),
    )
    .into_response()
}

/// Proxies one request to `port`. `prefix` is the length of the path that
/// names the port in the path form (`/proxy/3000`), removed before forwarding.
pub async fn handle(app: Arc<App>, port: u16, prefix: usize, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let page = auth::is_page_load(&parts.method, &parts.headers);
    let Some((visibility, upstream)) = app
        .ports
        .target(port)
        .filter(|(v, _)| *v != Visibility::None)
    else {
        return unavailable(port, page);
    };

    let head = policy::Head::of_parts(&parts);
    let judge = policy::Judge::of(&app);
    let forward = match policy::decide(&judge, &head, port, visibility, Instant::now()) {
        Verdict::Forward(f) => f,
        Verdict::Redeemed(session) => return redirect_with_cookie(&parts, &session),
        // The cookie names a session, never the credential.
        Verdict::FromQuery(credential) => {
            return match crate::http::guard::start_session(&app, &credential) {
                Some(session) => redirect_with_cookie(&parts, &session),
                None => refused(Refusal::Unauthorized, page, port),
            }
        }
        Verdict::Refused(r) => return refused(r, page, port),
    };
    let counts = match visibility {
        Visibility::Public => app.config.public_traffic_is_activity,
        _ => true,
    };
    if counts {
        app.activity.touch(ActivitySource::Proxy);
    }

    let upgrade = is_upgrade(&parts.headers);
    let client_upgrade = if upgrade {
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };
    let uri = match upstream_uri(upstream, &parts.uri, prefix) {
        Some(u) => u,
        None => {
            return ApiError::bad_request("invalid_path", "the path cannot be forwarded")
                .into_response()
        }
    };
    let client_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let headers = upstream_headers(
        std::mem::take(&mut parts.headers),
        &forward,
        client_ip,
        upgrade,
    );
    let progress = Progress::new();
    let body = ProgressBody {
        inner: if upgrade { Body::empty() } else { body },
        progress: progress.clone(),
    };
    let mut up_req = hyper::Request::new(body);
    *up_req.method_mut() = parts.method;
    *up_req.uri_mut() = uri;
    *up_req.headers_mut() = headers;

    let sent = app.proxy.client.request(up_req);
    let mut resp = match until_quiet(sent, &progress, app.proxy.upstream_timeout).await {
        None => {
            return ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!(
                    "the server on port {port} did not answer within {}s",
                    app.proxy.upstream_timeout.as_secs()
                ),
            )
            .into_response()
        }
        Some(Err(e)) if e.is_connect() => return unavailable(port, page),
        Some(Err(e)) => {
            tracing::debug!(error = %e, port, "upstream failed");
            return ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                format!("the server on port {port} closed the connection without an answer"),
            )
            .into_response();
        }
        Some(Ok(r)) => r,
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                format!("the server on port {port} switched protocols unasked"),
            )
            .into_response();
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let activity = counts.then(|| app.activity.clone());
        let cancel = app.proxy.cancel.clone();
        let stall = crate::heartbeat::send_timeout(app.config.ws_ping_interval);
        app.proxy.tracker.spawn(
            async move {
                let (Ok(a), Ok(b)) = tokio::join!(client_upgrade, upstream_upgrade) else {
                    tracing::debug!("an upgrade did not complete");
                    return;
                };
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = splice::splice(TokioIo::new(a), TokioIo::new(b), activity, stall) => {}
                }
            }
            .instrument(tracing::debug_span!("upgraded", port)),
        );
        let (head, _) = resp.into_parts();
        return Response::from_parts(head, Body::empty());
    }

    let (mut head, incoming) = resp.into_parts();
    strip_hop_by_hop(&mut head.headers);
    Response::from_parts(head, Body::new(incoming))
}

/// The answer to a request the policy refused: a page for a page load
/// (never the app's content), else the contract's error.
fn refused(r: Refusal, page: bool, port: u16) -> Response {
    match r {
        Refusal::OriginNotAllowed => ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!(
                "a request to port {port} with its session cookie must come from a page of that port's own origin"
            ),
        )
        .into_response(),
        Refusal::Forbidden if page => pages::port_refused(StatusCode::FORBIDDEN, port),
        Refusal::Unauthorized if page => pages::port_refused(StatusCode::UNAUTHORIZED, port),
        Refusal::Forbidden => ApiError::forbidden().into_response(),
        Refusal::Unauthorized => ApiError::unauthorized().into_response(),
    }
}

/// 303 to the same URL without the credential parameters, with the session cookie.
fn redirect_with_cookie(parts: &Parts, session: &str) -> Response {
    crate::http::redirect_with_cookie(parts, session, &[auth::QUERY_PARAM, TICKET_PARAM])
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The upstream URI: the path without the proxy prefix, the query without
/// the daemon's parameters and otherwise byte for byte.
fn upstream_uri(upstream: SocketAddr, uri: &Uri, prefix: usize) -> Option<Uri> {
    let path = uri.path().get(prefix..)?;
    let path = if path.is_empty() { "/" } else { path };
    use std::fmt::Write;
    let mut s = String::with_capacity(64 + uri.path().len() + uri.query().map_or(0, str::len));
    let _ = write!(s, "http://{upstream}{path}");
    if let Some(q) = uri.query() {
        let q = policy::app_query(q);
        if !q.is_empty() {
            s.push('?');
            s.push_str(&q);
        }
    }
    s.parse().ok()
}

fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            h.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        h.remove(*name);
    }
}

/// The headers the app sees: the daemon's credentials removed (by the
/// policy), hop-by-hop removed (the upgrade kept), `X-Forwarded-*` set.
fn upstream_headers(
    mut h: HeaderMap,
    forward: &policy::Forward,
    client_ip: Option<std::net::IpAddr>,
    upgrade: bool,
) -> HeaderMap {
    policy::clean_map(&mut h, forward);
    let upgrade_to = h.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut h);
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(u) = upgrade_to {
            h.insert(header::UPGRADE, u);
        }
    }
    if let Some(ip) = client_ip {
        let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert("x-forwarded-for", v);
        }
    }
    if !h.contains_key("x-forwarded-proto") {
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if !h.contains_key("x-forwarded-host") {
        if let Some(host) = h.get(header::HOST).cloned() {
            h.insert("x-forwarded-host", host);
        }
    }
    h
}

/// When the request body last moved, so the upstream timeout counts from
/// the end of an upload rather than its start.
#[derive(Clone)]
struct Progress {
    start: tokio::time::Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            start: tokio::time::Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> tokio::time::Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Awaits `fut` unless `limit` passes with neither an answer nor request body progress.
async fn until_quiet<F: std::future::Future>(
    fut: F,
    progress: &Progress,
    limit: Duration,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        let deadline = progress.last() + limit;
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = tokio::time::sleep_until(deadline) => {
                if progress.last() + limit <= tokio::time::Instant::now() {
                    return None;
                }
            }
        }
    }
}

/// The client's body, streamed as it comes, noting progress.
struct ProgressBody {
    inner: Body,
    progress: Progress,
}

impl hyper::body::Body for ProgressBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if r.is_ready() {
            self.progress.touch();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_labels() {
        assert_eq!(host_port("3000-ws1.example.dev"), Some(Ok(3000)));
        assert_eq!(host_port("3000-ws1.example.dev:443"), Some(Ok(3000)));
        assert_eq!(host_port("8080-x"), Some(Ok(8080)));
        assert_eq!(host_port("0-ws.example"), Some(Err(())));
        assert_eq!(host_port("70000-ws.example"), Some(Err(())));
        assert_eq!(host_port("abc-ws.example"), None);
        assert_eq!(host_port("3000ws.example"), None);
        assert_eq!(host_port("-ws.example"), None);
        assert_eq!(host_port("127.0.0.1:60080"), None);
        assert_eq!(host_port("localhost"), None);
    }

    #[test]
    fn upstream_uris() {
        let up: SocketAddr = "[::1]:3000".parse().unwrap();
        let u = |s: &str, p: usize| {
            upstream_uri(up, &s.parse().unwrap(), p)
                .unwrap()
                .to_string()
        };
        let prefix = "/proxy/3000".len();
        assert_eq!(u("/proxy/3000", prefix), "http://[::1]:3000/");
        assert_eq!(
            u("/proxy/3000/a%20b?x=1&access_token=t&y=%2F&", prefix),
            "http://[::1]:3000/a%20b?x=1&y=%2F&"
        );
        assert_eq!(u("/a?workspaced_ticket=t", 0), "http://[::1]:3000/a");
        assert_eq!(u("/a?b=c+d&&e", 0), "http://[::1]:3000/a?b=c+d&&e");
    }

    #[tokio::test(start_paused = true)]
    async fn the_upstream_timeout_counts_from_the_last_body_progress() {
        let limit = Duration::from_secs(60);
        let progress = Progress::new();
        let start = tokio::time::Instant::now();
        let p = progress.clone();
        let uploader = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                p.touch();
            }
        });
        let out = until_quiet(std::future::pending::<()>(), &progress, limit).await;
        assert!(out.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(150 + 60));
        uploader.await.unwrap();

        let answer = async {
            tokio::time::sleep(Duration::from_secs(59)).await;
            7
        };
        assert_eq!(until_quiet(answer, &Progress::new(), limit).await, Some(7));
    }

    #[test]
    fn hop_by_hop_and_listed_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
