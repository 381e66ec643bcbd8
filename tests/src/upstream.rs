//! Test upstreams for the proxy: a small HTTP/1.1 app (records what it is
//! sent, counts uploads, streams downloads, server-sent events on cue,
//! echoes chunked bodies, echoes WebSocket messages or floods its client
//! with them), and misbehaving servers (one that hangs, one that closes
//! mid-body).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

/// One request as the app saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, byte for byte.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The connection's far end: requests on one connection share it.
    pub peer: SocketAddr,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in the order the app got them.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A running test app; it stops when dropped.
pub struct App {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Each `notify_one` lets `/sse` send its next event.
    pub sse_next: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl App {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests seen at a path, the daemon's HTTP probe left out.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target.split('?').next() == Some(path))
            .filter(|s| s.header("user-agent") != Some("workspaced-probe"))
            .cloned()
            .collect()
    }
}

/// A body fed from a channel (SSE, chunked answers).
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// `n` bytes of a repeating pattern, made as they are read.
struct Generated {
    left: u64,
    chunk: Bytes,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

type BoxBody = http_body_util_lite::Boxed;

mod http_body_util_lite {
    //! A boxed body without another dependency.
    use super::*;
    pub struct Boxed(pub Pin<Box<dyn Body<Data = Bytes, Error = Infallible> + Send>>);
    impl Body for Boxed {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.as_mut().poll_frame(cx)
        }
        fn size_hint(&self) -> hyper::body::SizeHint {
            self.0.size_hint()
        }
    }
}

fn boxed(b: impl Body<Data = Bytes, Error = Infallible> + Send + 'static) -> BoxBody {
    http_body_util_lite::Boxed(Box::pin(b))
}

fn full(s: impl Into<Bytes>) -> BoxBody {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(s.into());
    boxed(ChannelBody(rx))
}

fn query_n(target: &str) -> u64 {
    target
        .split_once("n=")
        .and_then(|(_, n)| n.split('&').next()?.parse().ok())
        .unwrap_or(0)
}

async fn serve(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    sse_next: Arc<Notify>,
) -> Result<Response<BoxBody>, Infallible> {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        target: target.clone(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        peer,
    });
    let path = target.split('?').next().unwrap_or("").to_owned();
    let resp = match path.as_str() {
        // Counts the body as it streams, never holding it.
        "/count" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                if let Ok(d) = frame.map(|f| f.into_data()) {
                    n += d.map(|d| d.len() as u64).unwrap_or(0);
                }
            }
            Response::new(full(n.to_string()))
        }
        "/download" => Response::new(boxed(Generated {
            left: query_n(&target),
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        })),
        "/sse" => {
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                for i in 1..=3 {
                    if tx
                        .send(Bytes::from(format!("data: event {i}\n\n")))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    sse_next.notified().await;
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(boxed(ChannelBody(rx)))
                .unwrap()
        }
        // Echoes the body back in chunks of unknown total length.
        "/echo" => {
            let (tx, rx) = mpsc::channel(16);
            let mut body = req.into_body();
            tokio::spawn(async move {
                while let Some(Ok(frame)) =
                    std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
                {
                    if let Ok(d) = frame.into_data() {
                        if tx.send(d).await.is_err() {
                            return;
                        }
                    }
                }
            });
            Response::new(boxed(ChannelBody(rx)))
        }
        // `/ws` echoes each message; `/ws-flood` sends 64 KiB binary
        // messages as fast as it may, until its peer goes.
        "/ws" | "/ws-flood" => {
            let flood = path == "/ws-flood";
            let key = req
                .headers()
                .get("sec-websocket-key")
                .map(|k| k.as_bytes().to_owned())
                .unwrap_or_default();
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = upgrade.await else { return };
                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(up),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                if flood {
                    let chunk = Bytes::from(vec![b'f'; 64 * 1024]);
                    while ws
                        .send(tokio_tungstenite::tungstenite::Message::Binary(
                            chunk.clone(),
                        ))
                        .await
                        .is_ok()
                    {}
                    return;
                }
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if ws.send(msg).await.is_err() {
                            return;
                        }
                    } else if msg.is_close() {
                        return;
                    }
                }
            });
            Response::builder()
                .status(101)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header(
                    "sec-websocket-accept",
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key),
                )
                .body(full(Bytes::new()))
                .unwrap()
        }
        _ => Response::builder()
            .header("content-type", "text/plain")
            .body(full("hello from the app"))
            .unwrap(),
    };
    Ok(resp)
}

/// Starts the app on `bind` (`127.0.0.1:0`, `[::1]:0`, ...).
pub async fn start(bind: &str) -> App {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sse_next = Arc::new(Notify::new());
    let (s, n) = (seen.clone(), sse_next.clone());
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let (s, n) = (s.clone(), n.clone());
            conns.spawn(async move {
                let svc = service_fn(move |req| serve(req, peer, s.clone(), n.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    App {
        addr,
        seen,
        sse_next,
        task,
    }
}

/// A server that accepts, reads, and never answers.
pub async fn hanging() -> (u16, tokio::task::JoinHandle<()>) {
    raw_server(|mut s| async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await
}

/// A server that announces 100000 bytes, sends 1000, and closes.
pub async fn closing_mid_body() -> (u16, tokio::task::JoinHandle<()>) {
    raw_server(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
            .await;
        let _ = s.write_all(&[b'y'; 1000]).await;
    })
    .await
}

/// A server that runs `f` on each accepted connection.
pub async fn raw_server<F, Fut>(f: F) -> (u16, tokio::task::JoinHandle<()>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((s, _)) = listener.accept().await {
            conns.spawn(f(s));
        }
    });
    (port, task)
}
