//! Health, status and activity routes: `/readyz`'s body, `GET
//! /api/v1/status`, `GET`/`PUT /api/v1/idle`, the heartbeats `POST
//! /api/v1/activity` and `POST /activity/tick`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiJson, AppState};
use crate::activity::Source;
use crate::auth::Role;

pub async fn readyz(State(app): State<AppState>) -> Response {
    if app.draining.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    let not_ready = app.components.not_ready();
    if not_ready.is_empty() {
        return Json(json!({"status": "ready"})).into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not_ready", "components": not_ready})),
    )
        .into_response()
}

pub async fn status(State(app): State<AppState>) -> Json<serde_json::Value> {
    app.components.set_builtin("watcher", watcher_state(&app));
    let ports = if app.ports.is_degraded() {
        crate::health::State::Degraded
    } else {
        crate::health::State::Ready
    };
    app.components.set_builtin("ports", ports);
    let cgroup = app.cgroup.clone();
    let resources = tokio::task::spawn_blocking(move || cgroup.read())
        .await
        .unwrap_or_default();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "workspace": {
            "name": app.config.name,
            "root": app.config.workspace.to_string_lossy(),
        },
        "started_at": crate::time::rfc3339(app.started_at),
        "components": app.components.list(),
        "idle": app.idle.info(),
        "resources": resources,
    }))
}

pub async fn get_idle(State(app): State<AppState>) -> Json<crate::idle::IdleInfo> {
    Json(app.idle.info())
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeoutValue {
    Seconds(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
pub struct PutIdle {
    timeout: TimeoutValue,
}

pub async fn put_idle(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<PutIdle>,
) -> Result<Json<crate::idle::IdleInfo>, ApiError> {
    let timeout = match body.timeout {
        TimeoutValue::Seconds(n) => Duration::from_secs(n),
        TimeoutValue::Text(s) => {
            let t = s.trim();
            t.parse::<u64>()
                .map(Duration::from_secs)
                .ok()
                .or_else(|| humantime::parse_duration(t).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_timeout",
                        format!("timeout {s:?} is not a duration; give e.g. \"10m\", \"1h30m\" or seconds"),
                    )
                })?
        }
    };
    app.idle
        .set_user_timeout(timeout)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, "timeout_not_allowed", e.to_string()))?;
    Ok(Json(app.idle.info()))
}

/// `POST /api/v1/activity`: a client's heartbeat.
pub async fn heartbeat(State(app): State<AppState>) -> Response {
    app.activity.touch(Source::Heartbeat);
    super::no_content()
}

/// `POST /activity/tick` (Che's activity tracker): anyone from a loopback
/// address, whatever credential they carry; from elsewhere the owner. A
/// cookie-credentialed tick from another origin is refused first.
pub async fn tick(State(app): State<AppState>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, _) = req.into_parts();
    // A page of another origin must not keep the workspace alive with the
    // browser's session, also when a proxy on loopback forwards it.
    if let Some(refused) = super::guard::cookie_origin_refusal(&app, &parts) {
        return refused;
    }
    // The credential is only looked at when the peer is not on loopback.
    let role = || {
        super::guard::identify(&app, &parts)
            .and_then(|f| f.identity)
            .map(|(id, _)| id.role)
    };
    if let Err(e) = tick_allowed(peer, role) {
        return e.into_response();
    }
    app.activity.touch(Source::Heartbeat);
    super::no_content()
}

/// The rule of `/activity/tick`: loopback peers whatever they carry, else the owner.
fn tick_allowed(
    peer: Option<SocketAddr>,
    role: impl FnOnce() -> Option<Role>,
) -> Result<(), ApiError> {
    if peer.is_some_and(|p| p.ip().is_loopback()) {
        return Ok(());
    }
    match role() {
        None => Err(ApiError::unauthorized()),
        Some(Role::Owner) => Ok(()),
        Some(_) => Err(ApiError::forbidden()),
    }
}

/// The file watcher's state as a component state.
pub fn watcher_state(app: &crate::http::App) -> crate::health::State {
    match app.sync.watcher_state() {
        "degraded" => crate::health::State::Degraded,
        _ => crate::health::State::Ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_lets_loopback_through_and_asks_others_for_the_owner() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let local6: SocketAddr = "[::1]:5000".parse().unwrap();
        let remote: SocketAddr = "10.0.0.7:5000".parse().unwrap();
        let never = || -> Option<Role> { panic!("a loopback peer's credential is ignored") };
        assert!(tick_allowed(Some(local), never).is_ok());
        assert!(tick_allowed(Some(local6), never).is_ok());
        assert!(tick_allowed(Some(remote), || Some(Role::Owner)).is_ok());
        let e = tick_allowed(Some(remote), || None).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let e = tick_allowed(Some(remote), || Some(Role::Member)).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(
            tick_allowed(None, || None).is_err(),
            "unknown peer: not loopback"
        );
    }
}
