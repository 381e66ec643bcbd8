//! The HTTP surface: the router, its route list, and the middleware every
//! request passes (drain, credentials, activity). Only `http/` knows JSON
//! wire shapes of requests and errors.

pub mod error;
mod extract;
mod files;
pub(crate) mod framing;
pub(crate) mod guard;
pub(crate) mod limits;
pub(crate) mod pages;
mod ports;
pub mod relay;
pub mod serve;
mod status;
pub(crate) mod sync;
mod terminals;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, MethodRouter};
use axum::{Json, Router};
use serde_json::json;
use tracing::Instrument;

use crate::activity::{Activity, Source as ActivitySource};
use crate::auth::{self, Authenticator, Role};
use crate::config::Config;
use crate::confine::Root;
use crate::events::EventBus;
use crate::ports::Ports;
use crate::proxy::Proxy;
use crate::sync::SyncHub;
use crate::terminal::Terminals;
pub use error::ApiError;
pub use extract::ApiJson;

/// Everything the handlers share.
pub struct App {
    pub config: Config,
    pub auth: Authenticator,
    pub root: Root,
    pub terminals: Arc<Terminals>,
    pub events: EventBus,
    pub activity: Activity,
    pub components: crate::health::Components,
    pub idle: Arc<crate::idle::Idle>,
    pub cgroup: crate::health::cgroup::Cgroup,
    pub sync: SyncHub,
    pub ports: Arc<Ports>,
    pub proxy: Proxy,
    /// Browser sessions: what the `workspaced_session` cookie names.
    pub sessions: crate::session::Sessions,
    /// The port the daemon listens on: `Host: <own_port>-...` is the daemon.
    pub own_port: u16,
    pub relay: relay::Relay,
    pub draining: AtomicBool,
    pub started_at: SystemTime,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

pub type AppState = Arc<App>;

/// One route of the owner's API: a method, a path template, a handler.
type ApiRoute = (Method, &'static str, MethodRouter<AppState>);

/// Every route under `/api/v1`, all of which need the `owner` role. The
/// router is built from this list, so a route cannot miss the credential
/// check, and tests walk the same list.
fn api_routes() -> Vec<ApiRoute> {
    use axum::routing::{delete, post, put};
    vec![
        (Method::GET, "/api/v1/terminals", get(terminals::list)),
        (Method::POST, "/api/v1/terminals", post(terminals::create)),
        (
            Method::GET,
            "/api/v1/terminals/{id}",
            get(terminals::get_one),
        ),
        (
            Method::DELETE,
            "/api/v1/terminals/{id}",
            delete(terminals::remove),
        ),
        (
            Method::GET,
            "/api/v1/terminals/{id}/attach",
            get(terminals::attach),
        ),
        (Method::GET, "/api/v1/events", get(terminals::events)),
        (
            Method::GET,
            "/api/v1/containers",
            get(relay::list_containers),
        ),
        (Method::GET, "/api/v1/status", get(status::status)),
        (Method::GET, "/api/v1/idle", get(status::get_idle)),
        (Method::PUT, "/api/v1/idle", put(status::put_idle)),
        (Method::POST, "/api/v1/activity", post(status::heartbeat)),
        (Method::GET, "/api/v1/files/{*path}", get(files::get_file)),
        (Method::PUT, "/api/v1/files/{*path}", put(files::put_file)),
        (Method::GET, "/api/v1/tree", get(files::tree)),
        (Method::POST, "/api/v1/sync/apply", post(files::apply)),
        (Method::GET, "/api/v1/sync", get(sync::sync)),
        (Method::GET, "/api/v1/ports", get(ports::list)),
        (
            Method::PUT,
            "/api/v1/ports/{port}",
            axum::routing::put(ports::set_visibility),
        ),
        (Method::POST, "/api/v1/ports/{port}/open", post(ports::open)),
        (
            Method::GET,
            "/api/v1/ports/{port}/tunnel",
            get(ports::tunnel),
        ),
        (Method::DELETE, "/api/v1/session", delete(guard::sign_out)),
    ]
}

/// The owner-only API's routes as (method, path template), for tests.
pub fn api_route_list() -> Vec<(Method, &'static str)> {
    api_routes().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// Paths whose reads never count as activity.
const PASSIVE_READS: &[&str] = &["/api/v1/status", "/api/v1/idle", "/api/v1/events"];

pub fn router(app: AppState) -> Router {
    let mut api = Router::new();
    for (_, path, handler) in api_routes() {
        api = api.route(path, handler);
    }
    let owner_only = api
        .route("/", get(pages::console))
        .route("/assets/{*path}", get(pages::asset))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_owner));

    // The proxy checks visibility itself, so it sits beside the owner layer.
    let proxied = Router::new()
        .route("/proxy/{port}", any(ports::proxy_bare))
        .route("/proxy/{port}/", any(ports::proxy_path))
        .route("/proxy/{port}/{*rest}", any(ports::proxy_path));

    let daemon = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(status::readyz))
        .route("/activity/tick", axum::routing::post(status::tick))
        .merge(owner_only)
        .merge(proxied)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(app.clone(), guard::cors))
        .layer(middleware::from_fn_with_state(app.clone(), drain_and_trace))
        .with_state(app.clone());
    // Host routing comes before any route: `3000-ws.example/api/v1/x` is the app's.
    // The framing check comes before anything: it answers the stand-in of a
    // refused request head and learns how upgrades were answered.
    Router::new()
        .fallback_service(daemon)
        .layer(middleware::from_fn_with_state(app, ports::host_routing))
        .layer(middleware::from_fn(framing::check))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Refuses new work while draining, and traces each request by its route
/// template (never the raw URI, which may carry a credential).
async fn drain_and_trace(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if app.draining.load(Ordering::Relaxed) && path != "/healthz" && path != "/readyz" {
        return ApiError::shutting_down().into_response();
    }
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let span = tracing::debug_span!("request", method = %req.method(), route = %route, client.addr = %client);
    async move {
        let resp = next.run(req).await;
        tracing::debug!(status = resp.status().as_u16(), "answered");
        resp
    }
    .instrument(span)
    .await
}

/// Lets only the owner through. A cookie-credentialed upgrade or unsafe
/// method from another origin is refused before anything else. A page load
/// that carried the credential in its query is redirected to the same URL
/// without it, with the cookie of a new session.
async fn require_owner(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let page_load = auth::is_page_load(&parts.method, &parts.headers);
    if let Some(refused) = guard::cookie_origin_refusal(&app, &parts) {
        return refused;
    }
    let Some(found) = guard::identify(&app, &parts) else {
        return unauthorized(page_load);
    };
    match &found.identity {
        None => return unauthorized(page_load),
        Some((id, _)) if id.role != Role::Owner => {
            if page_load {
                return pages::login(StatusCode::FORBIDDEN).into_response();
            }
            return ApiError::forbidden().into_response();
        }
        Some(_) => {}
    }
    let ends = found.identity.as_ref().and_then(|(_, ends)| *ends);
    if let (Some((identity, expires)), Some(_)) = (found.identity, found.query) {
        if page_load && !auth::is_websocket_upgrade(&parts.headers) {
            let session = app.sessions.start(
                identity,
                expires,
                std::time::Instant::now(),
                SystemTime::now(),
            );
            return redirect_with_cookie(&parts, &session, &[auth::QUERY_PARAM]);
        }
    }
    let path = parts.uri.path();
    if path.starts_with("/api/v1/")
        && !(parts.method == Method::GET && PASSIVE_READS.contains(&path))
    {
        app.activity.touch(ActivitySource::Api);
    }
    let mut parts = parts;
    parts.extensions.insert(guard::CredentialEnd(ends));
    next.run(Request::from_parts(parts, body)).await
}

fn unauthorized(page_load: bool) -> Response {
    if page_load {
        return pages::login(StatusCode::UNAUTHORIZED).into_response();
    }
    ApiError::unauthorized().into_response()
}

/// 303 to the same URL without the `strip` query parameters, setting the
/// cookie of `session` (a session's id, never a credential): how a
/// credential leaves a URL.
pub(crate) fn redirect_with_cookie(parts: &Parts, session: &str, strip: &[&str]) -> Response {
    let query = auth::strip_query_params(parts.uri.query().unwrap_or(""), strip);
    let location = if query.is_empty() {
        parts.uri.path().to_owned()
    } else {
        format!("{}?{query}", parts.uri.path())
    };
    let cookie = auth::session_cookie(session, auth::is_secure(&parts.headers));
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    if let (Ok(l), Ok(c)) = (
        HeaderValue::from_str(&location),
        HeaderValue::from_str(&cookie),
    ) {
        h.insert(header::LOCATION, l);
        h.insert(header::SET_COOKIE, c);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An empty body with a status, for 204 answers.
pub fn no_content() -> Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .expect("static response")
}
