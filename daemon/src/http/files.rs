//! Routes for files: read and conditional write of one file, the tree, and
//! batched applies. The wire shapes of changes live here and are turned
//! into `files::apply::Change` at this boundary.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, ApiJson, AppState};
use crate::files::apply::{
    ApplyError, Change, ChangeResult, Conflict, Limits, Op, Outcome, Refusal,
};
use crate::files::edit::{Encoding, Position, TextEdit};
use crate::files::{disk, tree, upload, Entry};
use crate::sync::Committed;

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
    // Its parsed changes, plans and contents are freed after it.
    let _release = (req.changes.len() > BIG_LISTING).then_some(crate::memory::OnDrop);
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
    let limits = Limits::from_body_limit(app.config.max_body_bytes);
    let outcome = tokio::task::spawn_blocking(move || {
        a.sync.apply(&a.root, &changes, atomic, limits, origin)
    })
    .await;
    match outcome {
        Err(e) => ApplyAnswer::Error(ApiError::internal(format!("apply task: {e}"))),
        Ok(Err(ApplyError::Refused(Refusal::Path(e)))) => ApplyAnswer::Error(e.into()),
        Ok(Err(e @ ApplyError::Refused(Refusal::InvalidEdit { .. }))) => {
            ApplyAnswer::Error(ApiError::bad_request("invalid_edit", e.to_string()))
        }
        Ok(Err(e @ ApplyError::Refused(Refusal::TooLarge { .. }))) => {
            ApplyAnswer::Error(ApiError::too_large(e.to_string()))
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

fn etag(oid: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!("\"{oid}\""))
        .map_err(|_| ApiError::internal("a version is not a valid header value"))
}

/// The path as the events name it: components joined by `/`.
fn normalized(path: &str) -> Result<String, ApiError> {
    let parts = crate::confine::components(path)?;
    if parts.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_path",
            "invalid path: it names the workspace root",
        ));
    }
    Ok(parts.join("/"))
}

fn read_error(path: &str, e: disk::ReadError) -> ApiError {
    match e {
        disk::ReadError::Path(e) => ApiError::from(e),
        disk::ReadError::IsDir => {
            ApiError::bad_request("is_a_directory", format!("{path} is a directory"))
        }
        disk::ReadError::NotAFile => ApiError::bad_request(
            "not_a_file",
            format!("{path} is neither a regular file nor a symlink"),
        ),
    }
}

/// Pieces of a file in flight to a client at once.
const READ_AHEAD: usize = 4;

/// Sends `file` in `READ_CHUNK` pieces; the last piece goes only if the file
/// still has the signature it had when it was hashed, so the client gets
/// exactly the version its `ETag` names or a body cut short.
fn send_file(
    file: std::fs::File,
    sig: disk::Sig,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut offset = 0u64;
    while offset < sig.size {
        let n = usize::try_from(sig.size - offset)
            .map_or(disk::READ_CHUNK, |r| r.min(disk::READ_CHUNK));
        let mut buf = vec![0u8; n];
        let piece = match disk::read_exact_at(&file, &mut buf, offset) {
            Ok(true) => Ok(Bytes::from(buf)),
            Ok(false) => Err(std::io::Error::other("the file shrank while it was sent")),
            Err(e) => Err(e),
        };
        offset = offset.saturating_add(n as u64);
        let piece = piece.and_then(|p| {
            if offset < sig.size {
                return Ok(p);
            }
            match nix::sys::stat::fstat(&file) {
                Ok(st) if disk::sig_of(&st) == sig => Ok(p),
                Ok(_) => Err(std::io::Error::other("the file changed while it was sent")),
                Err(e) => Err(e.into()),
            }
        });
        let failed = piece.is_err();
        if tx.blocking_send(piece).is_err() || failed {
            return;
        }
    }
}

pub async fn get_file(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let path = file_path(path)?;
    let a = app.clone();
    let p = path.clone();
    // Hashed in bounded pieces first (the ETag comes before the body), then
    // streamed: a file of any size costs a few pieces of memory.
    let found = tokio::task::spawn_blocking(move || {
        let (dir, name) = a.root.open_parent(&p)?;
        match disk::open_at(&dir, name).map_err(|e| read_error(&p, e))? {
            None => Ok(None),
            Some(disk::Opened::Symlink { meta, target }) => {
                let oid = crate::files::oid::blob_oid(&target);
                Ok(Some((meta, oid, Body::from(target))))
            }
            Some(disk::Opened::File { file, meta }) => {
                let (oid, sig) = disk::hash_file(&file).map_err(|e| read_error(&p, e))?;
                let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
                // Ends when the file is sent or the client goes (the send fails).
                tokio::task::spawn_blocking(move || send_file(file, sig, tx));
                let pieces = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|piece| (piece, rx))
                });
                let meta = disk::Meta {
                    size: sig.size,
                    ..meta
                };
                Ok::<_, ApiError>(Some((meta, oid, Body::from_stream(pieces))))
            }
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("read task: {e}")))??;
    let Some((meta, oid, body)) = found else {
        return Err(ApiError::not_found(&path));
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag(&oid)?);
    h.insert("x-file-mode", HeaderValue::from_static(meta.git_mode()));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
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

fn mismatch(current: &upload::Current) -> ApiError {
    let message = match current {
        upload::Current::Missing => "the file does not exist",
        upload::Current::NotABlob => "the path is not a file",
        upload::Current::Blob { .. } => "the file is not at the expected version",
    };
    ApiError::new(StatusCode::PRECONDITION_FAILED, "version_conflict", message)
        .with("current", json!(current.oid()))
}

fn too_large(max: usize) -> ApiError {
    ApiError::too_large(format!(
        "the request body is larger than max_body_bytes ({max})"
    ))
}

/// Pieces of a body in flight to the disk at once.
const WRITE_AHEAD: usize = 4;

pub async fn put_file(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let path = normalized(&file_path(path)?)?;
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
    let max = app.config.max_body_bytes;
    // framing.rs has checked the head: one valid length at most.
    let length = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_body", "Content-Length is not a number")
                })?,
        ),
        None => None,
    };
    if length.is_some_and(|n| u64::try_from(max).is_ok_and(|max| n > max)) {
        return Err(too_large(max));
    }

    // The version is checked before a byte of the body is read, and again
    // just before the rename.
    let a = app.clone();
    let (p, b) = (path.clone(), base.clone());
    let (seen, upload) = tokio::task::spawn_blocking(move || {
        let seen = upload::current(&a.root, &p)?;
        if !upload::matches(b.as_deref(), &seen) {
            return Err(mismatch(&seen));
        }
        let up = upload::Upload::start(&a.root, &p, length)?;
        Ok((seen, up))
    })
    .await
    .map_err(|e| ApiError::internal(format!("write task: {e}")))??;

    // A writer thread owns the temporary file; the body's pieces reach it
    // through a bounded queue. Dropping the upload removes the file.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(WRITE_AHEAD);
    let writer = tokio::task::spawn_blocking(move || {
        let mut upload = upload;
        while let Some(piece) = rx.blocking_recv() {
            upload.write(&piece)?;
        }
        Ok::<_, crate::confine::PathError>(upload)
    });
    let mut body = req.into_body().into_data_stream();
    let mut total = 0usize;
    let read = loop {
        match body.next().await {
            None => break Ok(()),
            Some(Err(e)) => {
                break Err(ApiError::bad_request(
                    "invalid_body",
                    format!("cannot read the body: {e}"),
                ))
            }
            Some(Ok(piece)) => {
                match total.checked_add(piece.len()) {
                    Some(t) if t <= max => total = t,
                    _ => break Err(too_large(max)),
                }
                // The writer stopped: its error is reported below.
                if tx.send(piece).await.is_err() {
                    break Ok(());
                }
            }
        }
    };
    drop(tx);
    let written = writer
        .await
        .map_err(|e| ApiError::internal(format!("write task: {e}")))?;
    read?;
    let upload = written?;

    let created = matches!(seen, upload::Current::Missing);
    let a = app.clone();
    let p = path.clone();
    let committed = tokio::task::spawn_blocking(move || {
        let done = upload.finish()?;
        a.sync.commit_upload(&p, base.as_deref(), &seen, done)
    })
    .await
    .map_err(|e| ApiError::internal(format!("write task: {e}")))??;
    let entry = match committed {
        Committed::Done(entry) => entry,
        Committed::Conflict(current) => return Err(mismatch(&current)),
    };
    let oid = entry
        .oid
        .ok_or_else(|| ApiError::internal("a write gave no version"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(json!({"path": path, "oid": oid}))).into_response();
    resp.headers_mut().insert(header::ETAG, etag(&oid)?);
    Ok(resp)
}

/// Entries past which a listing's memory is given back to the OS after it.
const BIG_LISTING: usize = 5_000;

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
    entries: WireEntries<'a>,
    head: Option<&'a str>,
}

/// The entries of a listing, serialised one by one as they are read.
struct WireEntries<'a>(&'a [Entry]);

impl serde::Serialize for WireEntries<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|e| WireEntry {
            path: &e.path,
            kind: e.kind.as_str(),
            oid: e.oid.as_deref(),
            size: e.size,
            mode: e.mode,
        }))
    }
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
    if listing.entries.len() > BIG_LISTING {
        // Freed once the answer is sent: trimmed after that.
        crate::memory::soon();
    }
    // Serialised straight from the entries into one buffer sized for them
    // (a big tree is tens of thousands, each about this many bytes), so it
    // is not copied as it grows.
    let wire = WireTree {
        entries: WireEntries(&listing.entries),
        head: listing.head.as_deref(),
    };
    let mut body = Vec::with_capacity(listing.entries.len().saturating_mul(200).saturating_add(64));
    serde_json::to_writer(&mut body, &wire)
        .map_err(|e| ApiError::internal(format!("tree answer: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
