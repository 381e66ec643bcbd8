//! The one HTTP error type: it renders the contract's
//! `{"error":{"code","message"}}` body with the fitting status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Fields next to `error` in the body (`current`, `conflicts`).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} was not found"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid credential is required: the owner token or a JWT, as a Bearer header, an access_token parameter on a page load, or the session cookie",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the credential is valid but its role may not do this",
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the daemon is shutting down",
        )
    }

    /// An internal failure: logged with its chain; the client gets a generic message.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; the daemon's log has the details",
        )
    }

    /// The JSON value of the `error` member, for WebSocket `error` frames.
    pub fn body(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}

impl ApiError {
    /// The whole response body: `{"error": {...}}` and any fields beside it.
    pub fn document(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("error".into(), self.body());
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.document())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<crate::confine::PathError> for ApiError {
    fn from(e: crate::confine::PathError) -> Self {
        use crate::confine::PathError as P;
        match e {
            P::Invalid(why) => Self::bad_request("invalid_path", format!("invalid path: {why}")),
            P::Outside => Self::bad_request(
                "path_outside_workspace",
                "a symlink on the path leads outside the workspace",
            ),
            P::NotFound => Self::not_found("the path"),
            P::NotADirectory => Self::bad_request(
                "not_a_directory",
                "a component of the path is not a directory",
            ),
            P::Io(e) => Self::internal(format!("path lookup: {e}")),
        }
    }
}
