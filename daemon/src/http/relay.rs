//! Terminals in the workspace's other containers (`[containers]`): each
//! runs its own daemon with the same owner token, and this one relays every
//! terminal route to it, so a client sees one API. A relayed terminal's id
//! is `<container>.<id there>`, so routing needs no state and survives a
//! restart of either daemon.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tokio_util::sync::CancellationToken;

use super::ApiError;
use crate::heartbeat::Heartbeat;

/// How long a container is given to say how it is (`GET /api/v1/containers`,
/// and each container's part of the terminal list).
pub const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long any other relayed request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer read from another daemon: a list of 64 terminals
/// is a few KiB.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// The other containers' daemons and how to reach them.
pub struct Relay {
    /// `[containers]`: name -> base URL (`http://127.0.0.1:60081`).
    containers: BTreeMap<String, String>,
    /// `Bearer <owner token>`, sent to the other daemons; never logged.
    bearer: HeaderValue,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Cancelled at the daemon's shutdown: relayed attaches are told and closed.
    closing: CancellationToken,
    max_ws_message_bytes: usize,
    /// The client side of a relayed attach gets the daemon's heartbeat too.
    ping_interval: Duration,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("containers", &self.containers)
            .finish_non_exhaustive()
    }
}

/// Why another container's daemon could not answer.
fn unreachable(name: &str, why: impl std::fmt::Display) -> ApiError {
    tracing::debug!(container = name, error = %why, "container unreachable");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "container_unreachable",
        format!("the daemon of container {name:?} is not answering: {why}"),
    )
}

fn unknown_terminal(id: &str) -> ApiError {
    ApiError::not_found(format!("terminal {id:?}"))
}

impl Relay {
    pub fn new(
        containers: BTreeMap<String, String>,
        owner_token: &str,
        closing: CancellationToken,
        max_ws_message_bytes: usize,
        ping_interval: Duration,
    ) -> anyhow::Result<Self> {
        let mut bearer = HeaderValue::from_str(&format!("Bearer {owner_token}"))
            .map_err(|_| anyhow::anyhow!("the owner token is not a valid header value"))?;
        bearer.set_sensitive(true);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(ASK_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Relay {
            containers: containers
                .into_iter()
                .map(|(n, u)| (n, u.trim_end_matches('/').to_owned()))
                .collect(),
            bearer,
            client,
            closing,
            max_ws_message_bytes,
            ping_interval,
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.containers.keys().map(String::as_str)
    }

    pub fn knows(&self, name: &str) -> bool {
        self.containers.contains_key(name)
    }

    /// `<container>.<remote id>` for a configured container and an id that
    /// can sit in a URL path as it is; `None` for any other id.
    pub fn split_id<'a>(&self, id: &'a str) -> Option<(&'a str, &'a str)> {
        let (name, rest) = id.split_once('.')?;
        let plain = !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (plain && self.knows(name)).then_some((name, rest))
    }

    /// One request to a container's daemon: its status and JSON body.
    async fn call(
        &self,
        name: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<(StatusCode, Value), ApiError> {
        let base = self
            .containers
            .get(name)
            .ok_or_else(|| unknown_container(name))?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header(header::AUTHORIZATION, self.bearer.clone());
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(ApiError::internal)?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| unreachable(name, crate::http_client::error_chain(&e)))?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(name, format!("reading its answer: {e}")))?
                .to_bytes();
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(unreachable(name, "it refused the workspace's token"));
            }
            if status == StatusCode::NO_CONTENT {
                return Ok((status, Value::Null));
            }
            let v = serde_json::from_slice(&bytes)
                .map_err(|_| unreachable(name, "its answer is not JSON"))?;
            Ok((status, v))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| unreachable(name, "timed out"))?
    }

    /// Makes a `Terminal` of `name`'s daemon one of this workspace's.
    fn adopt(name: &str, mut t: Value) -> Result<Value, ApiError> {
        let id = t
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| unreachable(name, "its answer is not a terminal"))?;
        t["id"] = json!(format!("{name}.{id}"));
        t["container"] = json!(name);
        Ok(t)
    }

    /// Passes a container's answer on: a terminal adopted, an error as it came.
    fn answer(name: &str, status: StatusCode, body: Value) -> Result<Response, ApiError> {
        if status.is_success() {
            if status == StatusCode::NO_CONTENT {
                return Ok(super::no_content());
            }
            return Ok((status, Json(Self::adopt(name, body)?)).into_response());
        }
        Ok((status, Json(body)).into_response())
    }

    pub async fn create(&self, name: &str, body: Value) -> Result<Response, ApiError> {
        let (status, v) = self
            .call(
                name,
                Method::POST,
                "/api/v1/terminals",
                Some(body),
                CALL_TIMEOUT,
            )
            .await?;
        Self::answer(name, status, v)
    }

    pub async fn get(&self, name: &str, rid: &str) -> Result<Response, ApiError> {
        let path = format!("/api/v1/terminals/{rid}");
        let (status, v) = self
            .call(name, Method::GET, &path, None, CALL_TIMEOUT)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Err(unknown_terminal(&format!("{name}.{rid}")));
        }
        Self::answer(name, status, v)
    }

    pub async fn delete(&self, name: &str, rid: &str) -> Result<Response, ApiError> {
        let path = format!("/api/v1/terminals/{rid}");
        let (status, v) = self
            .call(name, Method::DELETE, &path, None, CALL_TIMEOUT)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Err(unknown_terminal(&format!("{name}.{rid}")));
        }
        Self::answer(name, status, v)
    }

    /// Every container's terminals, asked at once; a container that does not
    /// answer within `ASK_TIMEOUT` adds none (the containers route says why).
    pub async fn list(&self) -> Vec<Value> {
        let asks = self.containers.keys().map(|name| async move {
            match self
                .call(name, Method::GET, "/api/v1/terminals", None, ASK_TIMEOUT)
                .await
            {
                Ok((StatusCode::OK, Value::Array(ts))) => ts
                    .into_iter()
                    .filter_map(|t| Self::adopt(name, t).ok())
                    .collect(),
                _ => Vec::new(),
            }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The `Container` entries of the other containers, each asked at once
    /// for at most `ASK_TIMEOUT`: its own entry of its own list says its OS.
    pub async fn containers(&self) -> Vec<Value> {
        let asks = self.containers.keys().map(|name| async move {
            let own = self
                .call(name, Method::GET, "/api/v1/containers", None, ASK_TIMEOUT)
                .await
                .ok()
                .filter(|(s, _)| *s == StatusCode::OK)
                .and_then(|(_, v)| {
                    v.as_array()?
                        .iter()
                        .find(|c| c.get("self") == Some(&Value::Bool(true)))
                        .cloned()
                });
            match own {
                Some(c) => {
                    let os = c.get("os").filter(|o| o.is_string()).cloned();
                    container(name, false, true, os)
                }
                None => container(name, false, false, None),
            }
        });
        futures_util::future::join_all(asks).await
    }

    /// Relays an attach: the container's daemon is asked first, so its
    /// refusals (unknown id, offset beyond the output) are answered before
    /// the client's upgrade; then frames go both ways as they come.
    pub async fn attach(
        &self,
        name: &str,
        rid: &str,
        offset: Option<u64>,
        ws: WebSocketUpgrade,
    ) -> Result<Response, ApiError> {
        let base = self
            .containers
            .get(name)
            .ok_or_else(|| unknown_container(name))?;
        let ws_base = base.replacen("http://", "ws://", 1);
        let url = match offset {
            Some(n) => format!("{ws_base}/api/v1/terminals/{rid}/attach?offset={n}"),
            None => format!("{ws_base}/api/v1/terminals/{rid}/attach"),
        };
        let mut req = url
            .into_client_request()
            .map_err(|e| unreachable(name, e))?;
        req.headers_mut()
            .insert(header::AUTHORIZATION, self.bearer.clone());
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(self.max_ws_message_bytes))
            .max_frame_size(Some(self.max_ws_message_bytes));
        let connect = tokio_tungstenite::connect_async_with_config(req, Some(config), true);
        let upstream = match tokio::time::timeout(CALL_TIMEOUT, connect).await {
            Err(_) => return Err(unreachable(name, "timed out")),
            Ok(Ok((upstream, _))) => upstream,
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let status = resp.status();
                if status == StatusCode::NOT_FOUND {
                    return Err(unknown_terminal(&format!("{name}.{rid}")));
                }
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(unreachable(name, "it refused the workspace's token"));
                }
                let body = resp
                    .into_body()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .unwrap_or_else(|| json!({"error": {"code": "container_unreachable", "message": "the container's daemon refused the attach"}}));
                return Ok((status, Json(body)).into_response());
            }
            Ok(Err(e)) => return Err(unreachable(name, e)),
        };
        let closing = self.closing.clone();
        let every = self.ping_interval;
        Ok(ws
            .max_message_size(self.max_ws_message_bytes)
            .max_frame_size(self.max_ws_message_bytes)
            .on_upgrade(move |socket| pump(Heartbeat::new(socket, every), upstream, closing)))
    }
}

pub fn unknown_container(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_container",
        format!("no container named {name:?} is configured"),
    )
}

/// A `Container` of `GET /api/v1/containers`.
pub fn container(name: &str, own: bool, ready: bool, os: Option<Value>) -> Value {
    json!({
        "name": name,
        "self": own,
        "state": if ready { "ready" } else { "unreachable" },
        "os": os.unwrap_or(Value::Null),
    })
}

/// `PRETTY_NAME` of an os-release file's text (shell-like quoting).
pub fn pretty_name(text: &str) -> Option<String> {
    let value = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))?
        .trim();
    let unquoted = match value.as_bytes().first() {
        Some(q @ (b'"' | b'\'')) if value.len() >= 2 && value.as_bytes()[value.len() - 1] == *q => {
            let inner = &value[1..value.len() - 1];
            if *q == b'"' {
                let mut s = String::with_capacity(inner.len());
                let mut chars = inner.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => s.extend(chars.next()),
                        c => s.push(c),
                    }
                }
                s
            } else {
                inner.to_owned()
            }
        }
        _ => value.to_owned(),
    };
    (!unquoted.is_empty()).then_some(unquoted)
}

/// This container's OS, as `/etc/os-release` (or `/usr/lib/os-release`) names it.
pub fn own_os() -> Option<String> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| pretty_name(&t))
}

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn to_upstream(msg: Message) -> Option<tungstenite::Message> {
    Some(match msg {
        Message::Binary(b) => tungstenite::Message::Binary(b),
        Message::Text(t) => tungstenite::Message::Text(t.as_str().into()),
        Message::Close(f) => {
            tungstenite::Message::Close(f.map(|f| tungstenite::protocol::CloseFrame {
                code: f.code.into(),
                reason: f.reason.as_str().into(),
            }))
        }
        // Pings are answered by each side's own WebSocket.
        Message::Ping(_) | Message::Pong(_) => return None,
    })
}

fn to_client(msg: tungstenite::Message) -> Option<Message> {
    Some(match msg {
        tungstenite::Message::Binary(b) => Message::Binary(b),
        tungstenite::Message::Text(t) => Message::Text(t.as_str().into()),
        tungstenite::Message::Close(f) => Message::Close(f.map(|f| CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        _ => return None,
    })
}

/// Frames both ways until either side closes. Each side waits for the other
/// to take a frame, so a slow client slows reading upstream and the other
/// daemon's flow control sees it as it would see the client itself.
async fn pump(client: Heartbeat, upstream: Upstream, closing: CancellationToken) {
    let (mut c_sink, mut c_stream) = client.split();
    let (mut u_sink, mut u_stream) = upstream.split();
    let up = async {
        while let Some(Ok(msg)) = c_stream.next().await {
            let close = matches!(msg, Message::Close(_));
            if let Some(m) = to_upstream(msg) {
                if u_sink.send(m).await.is_err() {
                    return;
                }
            }
            if close {
                return;
            }
        }
        let _ = u_sink.send(tungstenite::Message::Close(None)).await;
    };
    let down = async {
        loop {
            match u_stream.next().await {
                Some(Ok(msg)) => {
                    let close = matches!(msg, tungstenite::Message::Close(_));
                    if let Some(m) = to_client(msg) {
                        if c_sink.send(m).await.is_err() {
                            return;
                        }
                    }
                    if close {
                        return;
                    }
                }
                // The other daemon went away without a close: say so.
                _ => {
                    let error = json!({"type": "error", "error": {"code": "container_unreachable", "message": "the container's daemon stopped answering"}});
                    let _ = c_sink.send(Message::Text(error.to_string().into())).await;
                    let _ = c_sink
                        .send(Message::Close(Some(CloseFrame {
                            code: 1011,
                            reason: "container unreachable".into(),
                        })))
                        .await;
                    return;
                }
            }
        }
    };
    let shutting_down = tokio::select! {
        _ = up => false,
        _ = down => false,
        _ = closing.cancelled() => true,
    };
    if shutting_down {
        let _ = c_sink
            .send(Message::Text(
                json!({"type": "shutdown"}).to_string().into(),
            ))
            .await;
        let _ = c_sink
            .send(Message::Close(Some(CloseFrame {
                code: crate::terminal::attach::CLOSE_GOING_AWAY,
                reason: "shutting down".into(),
            })))
            .await;
    }
}

/// `GET /api/v1/containers`: this container first, then each of `[containers]`.
pub async fn list_containers(
    axum::extract::State(app): axum::extract::State<super::AppState>,
) -> Json<Vec<Value>> {
    let own = container(
        &app.config.container_name,
        true,
        true,
        own_os().map(Value::String),
    );
    let mut all = vec![own];
    all.extend(app.relay.containers().await);
    Json(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pretty_name() {
        let debian = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            pretty_name(debian).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            pretty_name("PRETTY_NAME='Alpine Linux v3.21'\n").as_deref(),
            Some("Alpine Linux v3.21")
        );
        assert_eq!(pretty_name("PRETTY_NAME=Plain\n").as_deref(), Some("Plain"));
        assert_eq!(
            pretty_name("PRETTY_NAME=\"say \\\"hi\\\"\"\n").as_deref(),
            Some("say \"hi\"")
        );
        assert_eq!(pretty_name("NAME=x\n"), None);
        assert_eq!(pretty_name("PRETTY_NAME=\"\"\n"), None);
    }

    #[test]
    fn relayed_ids_name_a_known_container() {
        let r = Relay::new(
            BTreeMap::from([("db".to_owned(), "http://127.0.0.1:1/".to_owned())]),
            "t",
            CancellationToken::new(),
            1 << 20,
            Duration::from_secs(25),
        )
        .unwrap();
        assert_eq!(r.split_id("db.0a1b"), Some(("db", "0a1b")));
        for id in ["0a1b", "cache.0a1b", "db.", "db.a/b", "db.a.b", "db.%2e"] {
            assert_eq!(r.split_id(id), None, "{id}");
        }
    }
}
