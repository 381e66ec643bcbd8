//! Routes for files: read and conditional write of one file, the tree, and
//! batched applies. The wire shapes of changes live here and are turned
//! into `files::apply::Change` at this boundary.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, ApiJson, AppState};
use crate::files::apply::{ApplyError, Change, ChangeResult, Conflict, Op, Outcome, Refusal};
use crate::files::edit::{Encoding, Position, TextEdit};
use crate::files::{disk, tree, Entry};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePosition {
    line: u32,
    character: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRange {
    start: WirePosition,
    end: WirePosition,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEdit {
    range: WireRange,
    text: String,
}

#[derive(Debug, Deserialize)]
enum WireEncoding {
    #[serde(rename = "utf-16")]
    Utf16,
    #[serde(rename = "utf-8")]
    Utf8,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum WireChange {
    Write {
        path: String,
        #[serde(default)]
        base: Option<String>,
        content: Option<String>,
        content_base64: Option<String>,
    },
    Patch {
        path: String,
        base: String,
        diff: String,
    },
    Edit {
        path: String,
        base: String,
        edits: Vec<WireEdit>,
        encoding: Option<WireEncoding>,
    },
    Delete {
        path: String,
        base: String,
    },
    Rename {
        path: String,
        to: String,
        base: String,
        to_base: Option<String>,
    },
    Mkdir {
        path: String,
    },
}

fn yes() -> bool {
    true
}

/// The body of `POST /api/v1/sync/apply` and of a WebSocket `apply`.
#[derive(Debug, Deserialize)]
pub(super) struct ApplyRequest {
    changes: Vec<WireChange>,
    #[serde(default = "yes")]
    atomic: bool,
}

fn to_change(w: WireChange) -> Result<Change, ApiError> {
    let pos = |p: WirePosition| Position {
        line: p.line,
        character: p.character,
    };
    Ok(match w {
        WireChange::Write {
            path,
            base,
            content,
            content_base64,
        } => {
            let content = match (content, content_base64) {
                (Some(c), None) => c.into_bytes(),
                (None, Some(b)) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| {
                        ApiError::bad_request(
                            "invalid_json",
                            format!("content_base64 of {path} is not base64: {e}"),
                        )
                    })?,
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_json",
                        format!(
                            "the write of {path} needs exactly one of content and content_base64"
                        ),
                    ))
                }
            };
            Change {
                path,
                base,
                op: Op::Write { content },
            }
        }
        WireChange::Patch { path, base, diff } => Change {
            path,
            base: Some(base),
            op: Op::Patch { diff },
        },
        WireChange::Edit {
            path,
            base,
            edits,
            encoding,
        } => Change {
            path,
            base: Some(base),
            op: Op::Edit {
                edits: edits
                    .into_iter()
                    .map(|e| TextEdit {
                        start: pos(e.range.start),
                        end: pos(e.range.end),
                        text: e.text,
                    })
                    .collect(),
                encoding: match encoding {
                    Some(WireEncoding::Utf8) => Encoding::Utf8,
                    _ => Encoding::Utf16,
                },
            },
        },
        WireChange::Delete { path, base } => Change {
            path,
            base: Some(base),
            op: Op::Delete,
        },
        WireChange::Rename {
            path,
            to,
            base,
            to_base,
        } => Change {
            path,
            base: Some(base),
            op: Op::Rename { to, to_base },
        },
        WireChange::Mkdir { path } => Change {
            path,
            base: None,
            op: Op::Mkdir,
        },
    })
}

fn conflict_json(c: &Conflict) -> Value {
    json!({"path": c.path, "code": c.code.as_str(), "expected": c.expected, "actual": c.actual})
}

/// How an apply ended, for either transport.
pub(super) enum ApplyAnswer {
    Applied(Value),
    Conflicts(Value),
    Error(ApiError),
}

/// Runs an apply for a client (`origin` is its WebSocket client id).
pub(super) async fn run_apply(
    app: &AppState,
    req: ApplyRequest,
    origin: Option<Arc<str>>,
) -> ApplyAnswer {
    if req.changes.len() > app.config.max_apply_changes {
        return ApplyAnswer::Error(ApiError::too_large(format!(
            "an apply takes at most {} changes (max_apply_changes); this one has {}",
            app.config.max_apply_changes,
            req.changes.len()
        )));
    }
    let atomic = req.atomic;
    let changes = match req
        .changes
        .into_iter()
        .map(to_change)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(c) => c,
        Err(e) => return ApplyAnswer::Error(e),
    };
    let a = app.clone();
    let outcome =
        tokio::task::spawn_blocking(move || a.sync.apply(&a.root, &changes, atomic, origin)).await;
    match outcome {
        Err(e) => ApplyAnswer::Error(ApiError::internal(format!("apply task: {e}"))),
        Ok(Err(ApplyError::Refused(Refusal::Path(e)))) => ApplyAnswer::Error(e.into()),
        Ok(Err(e @ ApplyError::Refused(Refusal::InvalidEdit { .. }))) => {
            ApplyAnswer::Error(ApiError::bad_request("invalid_edit", e.to_string()))
        }
        Ok(Err(e @ ApplyError::Io { .. })) => {
            ApplyAnswer::Error(ApiError::internal(format!("{e:#}")))
        }
        Ok(Ok(Outcome::Conflicts(cs))) => {
            ApplyAnswer::Conflicts(Value::Array(cs.iter().map(conflict_json).collect()))
        }
        Ok(Ok(Outcome::Applied { results })) => ApplyAnswer::Applied(Value::Array(
            results
                .iter()
                .map(|r| match r {
                    ChangeResult::Done { path, oid } => json!({"path": path, "oid": oid}),
                    ChangeResult::Failed(c) => json!({
                        "path": c.path,
                        "error": {"code": c.code.as_str(), "message": c.message},
                    }),
                })
                .collect(),
        )),
    }
}

pub async fn apply(State(app): State<AppState>, ApiJson(req): ApiJson<ApplyRequest>) -> Response {
    match run_apply(&app, req, None).await {
        ApplyAnswer::Applied(results) => Json(json!({"results": results})).into_response(),
        ApplyAnswer::Conflicts(conflicts) => {
            let n = conflicts.as_array().map_or(0, Vec::len);
            ApiError::new(
                StatusCode::CONFLICT,
                "version_conflict",
                format!("{n} change(s) do not match the files; nothing was applied"),
            )
            .with("conflicts", conflicts)
            .into_response()
        }
        ApplyAnswer::Error(e) => e.into_response(),
    }
}

fn file_path(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request("invalid_path", format!("invalid path: {e}")))
}

fn etag(oid: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{oid}\"")).expect("hex is a valid header")
}

pub async fn get_file(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let path = file_path(path)?;
    let a = app.clone();
    let p = path.clone();
    let content = tokio::task::spawn_blocking(move || {
        let (dir, name) = a.root.open_parent(&p)?;
        disk::read_at(&dir, name).map_err(|e| match e {
            disk::ReadError::Path(e) => ApiError::from(e),
            disk::ReadError::IsDir => {
                ApiError::bad_request("is_a_directory", format!("{p} is a directory"))
            }
            disk::ReadError::NotAFile => ApiError::bad_request(
                "not_a_file",
                format!("{p} is neither a regular file nor a symlink"),
            ),
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("read task: {e}")))??;
    let Some(c) = content else {
        return Err(ApiError::not_found(&path));
    };
    let mut resp = c.bytes.clone().into_response();
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag(&c.oid()));
    h.insert("x-file-mode", HeaderValue::from_static(c.meta.git_mode()));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// The oid in an `If-Match` value: `"<oid>"` (quotes optional).
fn parse_etag(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?.trim();
    let s = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    (!s.is_empty() && s != "*").then(|| s.to_owned())
}

pub async fn put_file(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let path = file_path(path)?;
    let base = if let Some(v) = headers.get(header::IF_MATCH) {
        Some(parse_etag(v).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_precondition",
                "If-Match must name one version: \"<oid>\"",
            )
        })?)
    } else if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*")
    {
        None
    } else {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "a write needs If-Match: \"<oid>\" (replace that version) or If-None-Match: * (create)",
        ));
    };
    let body = Bytes::from_request(req, &app).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("the request body is larger than max_body_bytes")
        } else {
            ApiError::bad_request("invalid_body", format!("cannot read the body: {e}"))
        }
    })?;
    let created = base.is_none();
    let change = Change {
        path: path.clone(),
        base,
        op: Op::Write {
            content: body.to_vec(),
        },
    };
    let a = app.clone();
    let outcome = tokio::task::spawn_blocking(move || a.sync.apply(&a.root, &[change], true, None))
        .await
        .map_err(|e| ApiError::internal(format!("write task: {e}")))?;
    match outcome {
        Ok(Outcome::Applied { results }) => {
            let oid = match results.first() {
                Some(ChangeResult::Done { oid: Some(oid), .. }) => oid.clone(),
                _ => return Err(ApiError::internal("a write gave no version")),
            };
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut resp = (status, Json(json!({"path": path, "oid": oid}))).into_response();
            resp.headers_mut().insert(header::ETAG, etag(&oid));
            Ok(resp)
        }
        Ok(Outcome::Conflicts(cs)) => {
            let current = cs.first().and_then(|c| c.actual.clone());
            Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "version_conflict",
                cs.first()
                    .map(|c| c.message.clone())
                    .unwrap_or_else(|| "the file is not at the expected version".into()),
            )
            .with("current", json!(current)))
        }
        Err(ApplyError::Refused(Refusal::Path(e))) => Err(e.into()),
        Err(e) => Err(ApiError::internal(format!("{e:#}"))),
    }
}

#[derive(Debug, Deserialize)]
pub struct TreeQuery {
    #[serde(default)]
    path: String,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    ignored: bool,
}

#[derive(serde::Serialize)]
struct WireEntry<'a> {
    path: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    oid: Option<&'a str>,
    size: u64,
    mode: &'static str,
}

#[derive(serde::Serialize)]
struct WireTree<'a> {
    entries: Vec<WireEntry<'a>>,
    head: Option<&'a str>,
}

pub(super) fn entry_json(e: &Entry) -> Value {
    let mut v = json!({"path": e.path, "kind": e.kind.as_str(), "size": e.size, "mode": e.mode});
    if let Some(oid) = &e.oid {
        v["oid"] = json!(oid);
    }
    v
}

pub async fn tree(
    State(app): State<AppState>,
    q: Result<Query<TreeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let a = app.clone();
    let listing = tokio::task::spawn_blocking(move || {
        tree::list(
            &a.root,
            &q.path,
            tree::Options {
                recursive: q.recursive,
                ignored: q.ignored,
            },
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("tree task: {e}")))??;
    // Serialised straight from the entries: a big tree is tens of thousands.
    let wire = WireTree {
        entries: listing
            .entries
            .iter()
            .map(|e| WireEntry {
                path: &e.path,
                kind: e.kind.as_str(),
                oid: e.oid.as_deref(),
                size: e.size,
                mode: e.mode,
            })
            .collect(),
        head: listing.head.as_deref(),
    };
    Ok(Json(wire).into_response())
}
