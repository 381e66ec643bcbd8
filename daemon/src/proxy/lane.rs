//! The proxy's fast lane. Most proxied traffic is plain HTTP/1.1: a head,
//! maybe a small body, an answer. The lane serves that on the accepted
//! connection's own task: heads parsed with `httparse`, one upstream
//! connection per client connection kept alive, two reads and two writes a
//! request and no task in between. Anything else (an upgrade, a large or
//! chunked upload, `Expect`, HTTP/1.0, a credential or ticket in the query,
//! a refused or unknown caller, a port that is not available, a head that
//! does not parse, a daemon that is draining, an upstream that refuses the
//! connection) is handed over before a byte of it is consumed: the general
//! path (hyper and the router) then answers it as it always has, together
//! with the rest of the connection.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::policy::{self, Verdict};
use crate::activity::Source as ActivitySource;
use crate::config::Visibility;
use crate::http::framing::{self, Chunked, RequestBody};
use crate::http::{ApiError, App};

/// How the lane left a connection.
pub enum Outcome {
    /// The connection is finished.
    Closed,
    /// The general path takes over: the stream, and what was read of it
    /// and not answered (it starts with a request head, or is empty).
    Handoff(TcpStream, BytesMut),
}

/// hyper's limits, so the lane hands over what the general path refuses.
const MAX_HEADERS: usize = 100;
const MAX_HEAD: usize = 64 * 1024;
/// A request body up to this size is read whole and sent with its head; a
/// larger one is streamed by the general path.
const MAX_BODY: u64 = 64 * 1024;
/// What is read from the upstream at once, at first; while reads fill the
/// buffer (a big body), it doubles up to [`MAX_CHUNK`], so a big download
/// costs few system calls and a small answer little memory.
const CHUNK: usize = 64 * 1024;
const MAX_CHUNK: usize = 1024 * 1024;
/// As the general path's connector.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers of one hop, never forwarded as they are (as `HOP_BY_HOP`).
fn hop_by_hop(name: &str) -> bool {
    super::HOP_BY_HOP
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// The upstream connection a client connection keeps between requests.
struct Upstream {
    stream: TcpStream,
    addr: SocketAddr,
}

impl Upstream {
    /// An idle upstream connection with something to read was closed by
    /// the app (or sent something unasked): either way it is not reused.
    /// A connection the runtime knows has nothing costs no system call.
    fn is_usable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// What the lane makes of one request head it serves.
struct Plan {
    /// The head's length and the body's, both in the client's buffer.
    head_len: usize,
    body_len: usize,
    upstream: SocketAddr,
    port: u16,
    /// The request counts as proxy activity (idle detection).
    counts: bool,
    /// The client asked to close after this answer.
    close: bool,
    head_request: bool,
    /// May be sent again on a new connection when a kept one was found closed.
    idempotent: bool,
}

/// Serves a client connection's plain proxied requests until it ends, the
/// daemon stops, or a request needs the general path.
pub async fn serve(
    app: &App,
    mut client: TcpStream,
    peer: SocketAddr,
    stop: &CancellationToken,
) -> Outcome {
    let header_timeout = app.config.header_timeout;
    let idle_timeout = app.config.idle_connection_timeout;
    // The first head is due `header_timeout` after the accept; a later one
    // `header_timeout` after its first byte, and that first byte
    // `idle_connection_timeout` after the answer before.
    let mut head_due = Some(Instant::now() + header_timeout);
    let mut idle_due = Instant::now() + idle_timeout;
    let mut buf = BytesMut::with_capacity(8192);
    let mut up: Option<Upstream> = None;
    // The request for the upstream, then the answer for the client.
    let mut out = Vec::with_capacity(4096);
    let mut ubuf = BytesMut::with_capacity(CHUNK);
    loop {
        let plan = loop {
            match plan(app, &buf, peer, &mut out) {
                Parsed::Serve(p) => break p,
                Parsed::Handoff => return Outcome::Handoff(client, buf),
                Parsed::Partial => {}
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(8192);
            }
            let due = match head_due {
                None if buf.is_empty() => idle_due,
                _ => *head_due.get_or_insert_with(|| Instant::now() + header_timeout),
            };
            let read = tokio::select! {
                r = tokio::time::timeout_at(due, client.read_buf(&mut buf)) => r,
                _ = stop.cancelled() => return Outcome::Closed,
            };
            match read {
                Ok(Ok(0) | Err(_)) => return Outcome::Closed,
                Ok(Ok(_)) => {}
                Err(_) => {
                    tracing::debug!(
                        waited_for = if head_due.is_some() {
                            "head"
                        } else {
                            "request"
                        },
                        "connection timed out"
                    );
                    return Outcome::Closed;
                }
            }
        };
        head_due = None;
        if plan.counts {
            app.activity.touch(ActivitySource::Proxy);
        }
        let total = plan.head_len + plan.body_len;
        // A body may not pause longer than a head may take.
        while buf.len() < total {
            buf.reserve(total - buf.len());
            match tokio::time::timeout(header_timeout, client.read_buf(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return Outcome::Closed,
                Ok(Ok(_)) => {}
                Err(_) => {
                    tracing::debug!("request body paused longer than header_timeout");
                    return Outcome::Closed;
                }
            }
        }
        out.extend_from_slice(&buf[plan.head_len..total]);

        if up
            .as_ref()
            .is_some_and(|u| u.addr != plan.upstream || !u.is_usable())
        {
            up = None;
        }
        let keep = match exchange(app, &mut up, &plan, &out, &mut ubuf).await {
            Exchange::Refused => return Outcome::Handoff(client, buf),
            Exchange::Failed(e) => {
                up = None;
                write_error(&mut client, &e, plan.close).await.is_ok()
            }
            Exchange::Answered(head) => {
                let relayed = relay(&mut client, &mut up, head, &plan, &mut ubuf, &mut out);
                matches!(relayed.await, Relayed::Done)
            }
        };
        buf.advance(total);
        if !keep || plan.close || stop.is_cancelled() {
            let _ = client.shutdown().await;
            return Outcome::Closed;
        }
        idle_due = Instant::now() + idle_timeout;
    }
}

enum Parsed {
    Serve(Plan),
    Partial,
    Handoff,
}

/// Decides on the head at the start of `buf` and, when the lane serves it,
/// writes the upstream's request head into `out`.
fn plan(app: &App, buf: &[u8], peer: SocketAddr, out: &mut Vec<u8>) -> Parsed {
    if buf.is_empty() {
        return Parsed::Partial;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::Handoff,
    };
    match plan_head(app, &req, head_len, peer, out) {
        Some(p) => Parsed::Serve(p),
        None => Parsed::Handoff,
    }
}

/// The request's facts the lane needs, from one pass over its headers.
#[derive(Default)]
struct Facts<'a> {
    host: Option<&'a str>,
    close: bool,
    expect: bool,
    forwarded_for: Option<&'a [u8]>,
    forwarded_proto: bool,
    forwarded_host: bool,
}

fn plan_head(
    app: &App,
    req: &httparse::Request<'_, '_>,
    head_len: usize,
    peer: SocketAddr,
    out: &mut Vec<u8>,
) -> Option<Plan> {
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return None;
    };
    if !target.starts_with('/') || app.draining.load(Ordering::Relaxed) {
        return None;
    }
    let body_len = match framing::request_body(req)? {
        RequestBody::None => 0,
        RequestBody::Length(n) if n <= MAX_BODY => n as usize,
        _ => return None,
    };

    let mut facts = Facts::default();
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            // The first, as the general path reads it.
            let host = std::str::from_utf8(h.value).ok()?;
            facts.host.get_or_insert(host);
        } else if name.eq_ignore_ascii_case("connection") {
            facts.close |= tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case("expect") {
            facts.expect = true;
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            facts.forwarded_for.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            facts.forwarded_proto = true;
        } else if name.eq_ignore_ascii_case("x-forwarded-host") {
            facts.forwarded_host = true;
        }
    }
    if facts.expect {
        return None;
    }

    // The port, as `host_routing` and the `/proxy/{port}/` routes find it;
    // the daemon's own port names the daemon, as 127.0.0.1 does.
    let host_port = match facts.host.filter(|_| app.config.host_routing) {
        Some(host) => super::host_port(host).filter(|p| *p != Ok(app.own_port)),
        None => None,
    };
    let (port, prefix) = match host_port {
        Some(Ok(port)) => (port, 0),
        Some(Err(())) => return None,
        None => {
            let rest = target.strip_prefix("/proxy/")?;
            let digits = &rest[..rest.find('/')?];
            (super::parse_port(digits)?, "/proxy/".len() + digits.len())
        }
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    // A ticket is spent and a credential leaves the URL by a redirect,
    // which the general path makes.
    if query.is_some_and(policy::carries_daemon_params) {
        return None;
    }
    let (visibility, upstream) = app.ports.target(port)?;
    let counts = match visibility {
        Visibility::None => return None,
        Visibility::Public => app.config.public_traffic_is_activity,
        _ => true,
    };
    let head = policy::Head {
        method,
        query,
        headers: policy::Headers::Parsed(req.headers),
    };
    let judge = policy::Judge::of(app);
    // Refusals are the general path's to answer, as it always does.
    let Verdict::Forward(forward) =
        policy::decide(&judge, &head, port, visibility, std::time::Instant::now())
    else {
        return None;
    };

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    let path = &path[prefix..];
    if path.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(path.as_bytes());
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut cleaner = policy::Cleaner::default();
    for h in req.headers.iter() {
        let name = h.name;
        // Every header goes past the cleaner, so it counts positions as the policy did.
        let clean = cleaner.next(&forward, name, h.value);
        if hop_by_hop(name) || listed_in_connection(req.headers, name) {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            continue;
        }
        policy::write_header(out, clean, name.as_bytes(), h.value);
    }
    if facts.host.is_none() {
        // As hyper's client does: the app is told where it was reached.
        header(out, b"host", upstream.to_string().as_bytes());
    }
    // Written in place: no string for the address on every request.
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = facts.forwarded_for {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    let _ = write!(out, "{}\r\n", peer.ip());
    if !facts.forwarded_proto {
        header(out, b"x-forwarded-proto", b"http");
    }
    if let (false, Some(host)) = (facts.forwarded_host, facts.host) {
        header(out, b"x-forwarded-host", host.as_bytes());
    }
    out.extend_from_slice(b"\r\n");

    Some(Plan {
        head_len,
        body_len,
        upstream,
        port,
        counts,
        close: facts.close,
        head_request: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        ),
    })
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The items of a comma-separated header value, trimmed.
fn tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Whether a `Connection` header among `headers` names `name` (so it is of this hop).
fn listed_in_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("connection")
            && tokens(h.value).any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    })
}

/// How the upstream answered, or why it did not.
enum Exchange {
    /// No connection could be made: the general path answers (502 page).
    Refused,
    Failed(ApiError),
    Answered(ResponseHead),
}

/// Sends the request (in `out`) and reads the answer's head into `ubuf`,
/// once more on a new connection when a kept one turns out closed.
async fn exchange(
    app: &App,
    up: &mut Option<Upstream>,
    plan: &Plan,
    out: &[u8],
    ubuf: &mut BytesMut,
) -> Exchange {
    let limit = app.proxy.upstream_timeout;
    loop {
        let reused = up.is_some();
        let u = match up {
            Some(u) => u,
            None => {
                let connected =
                    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(plan.upstream)).await;
                let Ok(Ok(stream)) = connected else {
                    return Exchange::Refused;
                };
                let _ = stream.set_nodelay(true);
                up.insert(Upstream {
                    stream,
                    addr: plan.upstream,
                })
            }
        };
        ubuf.clear();
        let sent = async {
            u.stream.write_all(out).await?;
            read_response_head(&mut u.stream, ubuf, plan.head_request).await
        };
        let failed = |message: String| {
            Exchange::Failed(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                message,
            ))
        };
        let port = plan.port;
        match tokio::time::timeout(limit, sent).await {
            Ok(Ok(Some(head))) => return Exchange::Answered(head),
            Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::debug!(error = %e, port, "upstream answer refused");
                return failed(format!("the server on port {port} answered with {e}"));
            }
            Ok(_) if reused && plan.idempotent && ubuf.is_empty() => {
                // The app closed the kept connection as the request went out.
                *up = None;
            }
            Ok(_) => {
                return failed(format!(
                    "the server on port {port} closed the connection without an answer"
                ))
            }
            Err(_) => {
                return Exchange::Failed(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    format!(
                        "the server on port {port} did not answer within {}s",
                        limit.as_secs()
                    ),
                ))
            }
        }
    }
}

/// An upstream answer's head, already rewritten for the client.
struct ResponseHead {
    /// Its length in the upstream buffer.
    len: usize,
    /// The head as the client gets it.
    head: Vec<u8>,
    body: ResponseBody,
    /// The upstream connection may serve another request after this one.
    keep_alive: bool,
}

/// How an answer's body ends (RFC 9112, 6.3).
enum ResponseBody {
    Empty,
    Length(u64),
    /// Passed on as it comes, its chunks followed to find the end.
    Chunked(Chunked),
    /// Ends when the upstream closes; passed on in chunks of our own.
    UntilClose,
}

/// Reads an answer's head into `ubuf`, skipping interim (1xx) answers as
/// hyper does. `None`: the upstream closed before sending anything.
async fn read_response_head(
    stream: &mut TcpStream,
    ubuf: &mut BytesMut,
    head_request: bool,
) -> io::Result<Option<ResponseHead>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    loop {
        if !ubuf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(ubuf) {
                Ok(httparse::Status::Complete(len)) => {
                    let code = resp.code.unwrap_or(0);
                    if (100..200).contains(&code) && code != 101 {
                        ubuf.advance(len);
                        continue;
                    }
                    return rewrite_response(&resp, len, head_request).map(Some);
                }
                Ok(httparse::Status::Partial) if ubuf.len() <= MAX_HEAD => {}
                Ok(httparse::Status::Partial) => return Err(invalid("a head over 64 KiB")),
                Err(_) => return Err(invalid("a head that is not HTTP/1")),
            }
        }
        if ubuf.capacity() - ubuf.len() < 1024 {
            ubuf.reserve(CHUNK);
        }
        if stream.read_buf(ubuf).await? == 0 {
            if ubuf.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// The client's head for an answer: hop-by-hop headers removed, and the
/// body's framing as the lane passes it on.
fn rewrite_response(
    resp: &httparse::Response<'_, '_>,
    len: usize,
    head_request: bool,
) -> io::Result<ResponseHead> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let code = resp.code.unwrap_or(0);
    if code == 101 {
        return Err(invalid("a switch of protocols it was not asked for"));
    }
    // httparse reads any three digits; hyper (the general path) refuses a
    // code below 100, and `042` written back as `42` would not parse.
    if code < 100 {
        return Err(invalid("a status code below 100"));
    }
    let http11 = resp.version == Some(1);
    let mut keep_alive = http11;
    let mut length: Option<u64> = None;
    let mut codings: Option<&[u8]> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for item in tokens(h.value) {
                let n = std::str::from_utf8(item)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| invalid("a Content-Length that is no number"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(invalid("differing Content-Length values"));
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            codings = Some(h.value);
        }
    }
    let chunked = codings.is_some_and(|c| {
        tokens(c)
            .next_back()
            .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
    });
    let body = if head_request || code == 204 || code == 304 {
        ResponseBody::Empty
    } else if chunked {
        ResponseBody::Chunked(Chunked::Start)
    } else if codings.is_some() {
        ResponseBody::UntilClose
    } else {
        match length {
            Some(0) => ResponseBody::Empty,
            Some(n) => ResponseBody::Length(n),
            None => ResponseBody::UntilClose,
        }
    };
    if matches!(body, ResponseBody::UntilClose) {
        keep_alive = false;
    }

    let mut head = Vec::with_capacity(len + 64);
    let _ = write!(head, "HTTP/1.1 {code} ");
    head.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        let name = h.name;
        let te = name.eq_ignore_ascii_case("transfer-encoding");
        if (hop_by_hop(name) && !te) || listed_in_connection(resp.headers, name) {
            continue;
        }
        match body {
            // Chunks are passed on as they are, under the upstream's codings.
            ResponseBody::Chunked(_) if name.eq_ignore_ascii_case("content-length") => continue,
            // Chunked by the lane: its own Transfer-Encoding follows.
            ResponseBody::UntilClose if te || name.eq_ignore_ascii_case("content-length") => {
                continue
            }
            _ => {}
        }
        header(&mut head, name.as_bytes(), h.value);
    }
    if let ResponseBody::UntilClose = body {
        match codings {
            Some(c) => header(&mut head, b"transfer-encoding", &[c, b", chunked"].concat()),
            None => header(&mut head, b"transfer-encoding", b"chunked"),
        }
    }
    Ok(ResponseHead {
        len,
        head,
        body,
        keep_alive,
    })
}

enum Relayed {
    /// The answer reached the client whole.
    Done,
    /// The client or the upstream went away mid-answer: the client's
    /// connection ends, so a cut body never looks whole.
    ClientGone,
}

/// Passes an answer on: its head, then its body as it arrives.
async fn relay(
    client: &mut TcpStream,
    up: &mut Option<Upstream>,
    head: ResponseHead,
    plan: &Plan,
    ubuf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> Relayed {
    let Some(u) = up.as_mut() else {
        return Relayed::ClientGone;
    };
    ubuf.advance(head.len);
    out.clear();
    out.extend_from_slice(&head.head);
    if plan.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let mut body = head.body;
    let mut done = matches!(body, ResponseBody::Empty);
    let mut clean = true;
    let mut want = CHUNK;
    loop {
        // How much of what was read belongs to the body; the rest ends
        // the upstream connection's use.
        let take = match &mut body {
            ResponseBody::Empty => 0,
            ResponseBody::Length(left) => {
                let n = (*left).min(ubuf.len() as u64);
                *left -= n;
                done = *left == 0;
                n as usize
            }
            ResponseBody::Chunked(c) => match c.advance(ubuf) {
                Ok((n, end)) => {
                    done = end;
                    n
                }
                Err(_) => {
                    tracing::debug!(port = plan.port, "upstream sent a bad chunk");
                    *up = None;
                    return Relayed::ClientGone;
                }
            },
            ResponseBody::UntilClose => {
                if !ubuf.is_empty() {
                    out.extend_from_slice(format!("{:x}\r\n", ubuf.len()).as_bytes());
                    out.extend_from_slice(ubuf);
                    out.extend_from_slice(b"\r\n");
                }
                0
            }
        };
        clean &= take == ubuf.len() || matches!(body, ResponseBody::UntilClose);
        // The head goes with the first bytes of the body in one write;
        // after it, the body goes straight from the upstream's buffer.
        let written = if out.is_empty() {
            client.write_all(&ubuf[..take]).await
        } else {
            out.extend_from_slice(&ubuf[..take]);
            client.write_all(out).await
        };
        if written.is_err() {
            *up = None;
            return Relayed::ClientGone;
        }
        out.clear();
        ubuf.clear();
        if done {
            break;
        }
        if ubuf.capacity() < want {
            ubuf.reserve(want);
        }
        let spare = ubuf.capacity() - ubuf.len();
        match u.stream.read_buf(ubuf).await {
            Ok(n) if n == spare && want < MAX_CHUNK => want *= 2,
            Ok(0) if matches!(body, ResponseBody::UntilClose) => {
                out.extend_from_slice(b"0\r\n\r\n");
                done = true;
            }
            Ok(0) | Err(_) => {
                tracing::debug!(port = plan.port, "upstream closed mid-body");
                *up = None;
                return Relayed::ClientGone;
            }
            Ok(_) => {}
        }
    }
    // Between answers a kept connection holds only a small buffer.
    if ubuf.capacity() > CHUNK {
        *ubuf = BytesMut::with_capacity(CHUNK);
    }
    if !(clean && head.keep_alive) {
        *up = None;
    }
    Relayed::Done
}

/// The contract's error body, as the general path writes it.
async fn write_error(client: &mut TcpStream, e: &ApiError, close: bool) -> io::Result<()> {
    let body = e.document().to_string();
    let reason = e.status.canonical_reason().unwrap_or("");
    let conn = if close { "connection: close\r\n" } else { "" };
    let msg = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{conn}\r\n{body}",
        e.status.as_u16(),
        body.len()
    );
    client.write_all(msg.as_bytes()).await
}

/// The lane's pure head handling, for the fuzz targets (`crate::fuzzing`):
/// a request head's framing, cookies and `Connection` tokens, and an
/// upstream answer's rewrite, which must parse again as the same answer.
#[doc(hidden)]
pub fn fuzz_heads(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = req.parse(data) {
        let _ = framing::request_body(&req);
        // The cookie and Authorization cleaning the lane applies to a head.
        let mut cleaner = policy::Cleaner::default();
        let forward = policy::Forward::default();
        let mut out = Vec::new();
        for h in req.headers.iter() {
            let _ = listed_in_connection(req.headers, h.name);
            let clean = cleaner.next(&forward, h.name, h.value);
            policy::write_header(&mut out, clean, h.name.as_bytes(), h.value);
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    if let Ok(httparse::Status::Complete(len)) = resp.parse(data) {
        for head_request in [false, true] {
            let Ok(r) = rewrite_response(&resp, len, head_request) else {
                continue;
            };
            assert_eq!(r.len, len);
            let mut head = r.head;
            head.extend_from_slice(b"\r\n");
            let mut again = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut again);
            let status = parsed.parse(&head);
            assert!(
                matches!(status, Ok(httparse::Status::Complete(n)) if n == head.len()),
                "the rewritten head does not parse: {status:?}"
            );
            assert_eq!(parsed.code, resp.code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's head and body framing for an upstream answer.
    fn rewritten(answer: &str, head_request: bool) -> (String, ResponseBody, bool) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = resp.parse(answer.as_bytes()).unwrap() else {
            panic!("partial: {answer:?}");
        };
        let r = rewrite_response(&resp, len, head_request).unwrap();
        assert_eq!(r.len, len);
        (String::from_utf8(r.head).unwrap(), r.body, r.keep_alive)
    }

    #[test]
    fn answers_keep_their_headers_and_lose_those_of_the_hop() {
        let (head, body, keep) = rewritten(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=b\r\n\r\n",
            false,
        );
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=b\r\n"
        );
        assert!(matches!(body, ResponseBody::Length(5)));
        assert!(keep);
    }

    #[test]
    fn a_status_code_below_100_is_refused() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let answer = b"HTTP/1.1 042 Odd\r\nContent-Length: 0\r\n\r\n";
        let httparse::Status::Complete(len) = resp.parse(answer).unwrap() else {
            panic!("partial");
        };
        let e = rewrite_response(&resp, len, false).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "a status code below 100");
    }

    #[test]
    fn each_framing_of_an_answer_is_followed() {
        let (head, body, keep) = rewritten(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            false,
        );
        assert_eq!(head, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n");
        assert!(matches!(body, ResponseBody::Chunked(Chunked::Start)));
        assert!(keep);

        // No length: the lane chunks it, and the upstream connection ends.
        let (head, body, keep) = rewritten("HTTP/1.0 200 OK\r\nServer: x\r\n\r\n", false);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nServer: x\r\ntransfer-encoding: chunked\r\n"
        );
        assert!(matches!(body, ResponseBody::UntilClose));
        assert!(!keep);
        let (head, _, _) = rewritten("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n"
        );

        // No body, whatever the headers say.
        for (answer, head_request) in [
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            ("HTTP/1.1 204 No Content\r\n\r\n", false),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                false,
            ),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
        ] {
            let (_, body, keep) = rewritten(answer, head_request);
            assert!(matches!(body, ResponseBody::Empty), "{answer}");
            assert!(keep, "{answer}");
        }

        // HTTP/1.0 keeps the connection only when it says so; 1.1 unless it says not.
        assert!(
            rewritten(
                "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n",
                false
            )
            .2
        );
        assert!(!rewritten("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).2);
        assert!(
            !rewritten(
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
                false
            )
            .2
        );
    }

    #[test]
    fn answers_the_lane_cannot_pass_on_are_refused() {
        for answer in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        ] {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(len) = resp.parse(answer.as_bytes()).unwrap() else {
                panic!("partial");
            };
            let e = rewrite_response(&resp, len, false).err().expect(answer);
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{answer}");
        }
    }
}
