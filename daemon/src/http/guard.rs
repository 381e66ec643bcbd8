//! What stands before the daemon's own routes besides the role check: the
//! origin check of cookie-credentialed requests, the session cookie's
//! lookup, CORS for `allowed_origins`, and sign-out (PROTOCOL.md, "Browsers,
//! other origins and sessions").

use std::time::{Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, App, AppState};
use crate::auth::{self, Identity};
use crate::origin;

/// The credential of a request to the daemon's own routes: whom it proves
/// (`None`: nothing) until when (a JWT's `exp`).
pub(crate) struct Found {
    pub identity: Option<(Identity, Option<SystemTime>)>,
    /// The credential itself when it came from the query (a page load turns
    /// it into a session).
    pub query: Option<String>,
}

/// The request's credential, in the contract's order. A cookie names a
/// session; it is never a credential itself.
pub(crate) fn identify(app: &App, parts: &Parts) -> Option<Found> {
    let (credential, source) = auth::find_credential(parts)?;
    let identity = match source {
        auth::Source::Cookie => {
            let now = Instant::now();
            auth::cookies(&parts.headers, auth::COOKIE)
                .find_map(|id| app.sessions.identity_until(id, now))
                .map(|(id, ends)| (id, ends.map(|end| wall_clock(end, now))))
        }
        _ => app.auth.check_until(&credential),
    };
    Some(Found {
        identity,
        query: (source == auth::Source::Query).then_some(credential),
    })
}

/// The wall-clock time of a monotonic instant (a session's end).
fn wall_clock(end: Instant, now: Instant) -> SystemTime {
    SystemTime::now() + end.saturating_duration_since(now)
}

/// When the credential that admitted a request to the daemon's own routes
/// expires (a JWT's `exp`, also through the session it started), for what
/// the request creates (a port's ticket) not to outlive it.
#[derive(Debug, Clone, Copy)]
pub struct CredentialEnd(pub Option<SystemTime>);

/// A new session for a credential (a page load's `access_token`), or `None`
/// when the credential proves nothing.
pub(crate) fn start_session(app: &App, credential: &str) -> Option<String> {
    let (identity, expires) = app.auth.check_until(credential)?;
    Some(
        app.sessions
            .start(identity, expires, Instant::now(), SystemTime::now()),
    )
}

/// The origin check of a request whose credential is the session cookie,
/// made before the session is looked up (so a refused request does not even
/// count as its use); `None` when the request may go on.
pub(crate) fn cookie_origin_refusal(app: &App, parts: &Parts) -> Option<Response> {
    match auth::find_credential(parts) {
        Some((_, auth::Source::Cookie)) => origin_refusal(app, &parts.method, &parts.headers),
        _ => None,
    }
}

/// 403 `origin_not_allowed` for a WebSocket upgrade or an unsafe method
/// whose `Origin` (or `Sec-Fetch-Site`) is neither the daemon's own origin
/// as this request reached it nor an entry of `allowed_origins`. Only for
/// requests whose credential is the cookie: the caller decides that.
pub(crate) fn origin_refusal(app: &App, method: &Method, headers: &HeaderMap) -> Option<Response> {
    if !origin::needs_check(method, auth::is_websocket_upgrade(headers)) {
        return None;
    }
    let facts = origin::Facts::from_headers(headers, auth::is_secure(headers));
    if origin::allowed(&facts, &app.config.allowed_origins) {
        return None;
    }
    Some(
        ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "a page of another origin may not act with this browser's session; call with a Bearer credential",
        )
        .into_response(),
    )
}

/// `DELETE /api/v1/session`: ends the session the cookie names and tells
/// the browser to forget the cookie.
pub async fn sign_out(State(app): State<AppState>, headers: HeaderMap) -> Response {
    for id in auth::cookies(&headers, auth::COOKIE) {
        app.sessions.end(id);
    }
    let mut resp = super::no_content();
    let cookie = auth::cleared_cookie(auth::is_secure(&headers));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The request's `Origin` when it is one entry of `allowed_origins`.
fn listed_origin(app: &App, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin::Header::One(raw) = origin::Header::of(headers, header::ORIGIN) else {
        return None;
    };
    let origin = origin::normalize(raw)?;
    app.config
        .allowed_origins
        .iter()
        .filter_map(|o| origin::normalize(o.as_bytes()))
        .any(|o| o == origin)
        .then(|| HeaderValue::from_bytes(raw).ok())
        .flatten()
}

/// CORS for the entries of `allowed_origins` on `/api/v1/`: preflights are
/// answered without a credential, answers say which origin may read them.
/// Never `Access-Control-Allow-Credentials`: those pages call with a Bearer
/// JWT, and the browser's cookie must not be usable from them.
pub async fn cors(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let Some(origin) = listed_origin(&app, req.headers()) else {
        return next.run(req).await;
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, PUT, POST, DELETE"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, if-match, if-none-match"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        return resp;
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("etag, location"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    resp
}
