//! Request extractors whose rejections speak the contract's error format.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON body: too large is 413 `too_large`, malformed is 400 `invalid_json`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("the request body is larger than max_body_bytes")
            } else {
                ApiError::bad_request("invalid_body", format!("cannot read the body: {e}"))
            }
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                format!("the body is not the expected JSON: {e}"),
            )
        })
    }
}
