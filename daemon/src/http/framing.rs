//! Request framing, checked below hyper. hyper settles a request that
//! carries both `Content-Length` and `Transfer-Encoding` itself (it drops
//! the length) before any handler runs, so the contract's 400 for ambiguous
//! framing cannot come from a handler. [`Framing`] wraps each accepted
//! connection: it parses every request head with `httparse` (the parser
//! hyper uses, with the same limits), follows each body by its length or
//! its chunks to the next head, and swaps a head whose framing is ambiguous
//! or invalid for a stand-in head that [`check`] answers 400. Nothing after
//! a refused head is handed to hyper, so a smuggled request never becomes
//! one. After an upgrade request the reader waits for the router's answer:
//! a switch (101) turns the connection into raw bytes, anything else resumes
//! checking.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::limits::{Limits, Wait};
use super::ApiError;

/// The header of the stand-in head; its value names the refusal. A client
/// that sends it is refused too, so [`check`] can trust it.
const REFUSED: &str = "workspaced-refused";
/// A head longer than this is refused (431).
const MAX_HEAD: usize = 64 * 1024;
/// hyper's default limit on the number of headers.
const MAX_HEADERS: usize = 100;
/// After a refusal, at most this much of what the client still sends is
/// read and dropped, so the close is a FIN after the answer rather than a
/// reset that could destroy it.
const MAX_DRAIN: usize = 1 << 20;

/// Why a request head was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// `Content-Length` with `Transfer-Encoding`, or lengths that differ.
    Ambiguous,
    /// A length that is no number, a coding other than one `chunked`,
    /// `Transfer-Encoding` in HTTP/1.0.
    Invalid,
    /// A head that does not parse, or one that names [`REFUSED`].
    Malformed,
    /// More than [`MAX_HEAD`] bytes or [`MAX_HEADERS`] headers.
    TooLarge,
}

impl Refusal {
    /// The head handed to hyper instead of the refused one.
    fn stand_in(self) -> &'static [u8] {
        match self {
            Refusal::Ambiguous => {
                b"GET / HTTP/1.1\r\nhost: workspaced\r\nworkspaced-refused: ambiguous\r\n\r\n"
            }
            Refusal::Invalid => {
                b"GET / HTTP/1.1\r\nhost: workspaced\r\nworkspaced-refused: invalid\r\n\r\n"
            }
            Refusal::Malformed => {
                b"GET / HTTP/1.1\r\nhost: workspaced\r\nworkspaced-refused: malformed\r\n\r\n"
            }
            Refusal::TooLarge => {
                b"GET / HTTP/1.1\r\nhost: workspaced\r\nworkspaced-refused: too-large\r\n\r\n"
            }
        }
    }

    fn from_stand_in(value: &[u8]) -> Refusal {
        match value {
            b"ambiguous" => Refusal::Ambiguous,
            b"invalid" => Refusal::Invalid,
            b"too-large" => Refusal::TooLarge,
            _ => Refusal::Malformed,
        }
    }

    fn error(self) -> ApiError {
        match self {
            Refusal::Ambiguous => ApiError::bad_request(
                "ambiguous_framing",
                "a request may not carry both Content-Length and Transfer-Encoding, nor differing Content-Length values",
            ),
            Refusal::Invalid => ApiError::bad_request(
                "invalid_framing",
                "Content-Length must be a number and Transfer-Encoding, in HTTP/1.1 only, must be chunked",
            ),
            Refusal::Malformed => {
                ApiError::bad_request("invalid_request", "the request head is not valid HTTP/1")
            }
            Refusal::TooLarge => ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!("a request head may have at most {MAX_HEADERS} headers and {MAX_HEAD} bytes"),
            ),
        }
    }
}

/// Answers a stand-in head with the contract's error and closes the
/// connection; after an upgrade request, tells the connection's reader
/// whether the protocol switched. The outermost layer of the router.
pub async fn check(req: Request, next: Next) -> Response {
    if let Some(v) = req.headers().get(REFUSED) {
        let mut resp = Refusal::from_stand_in(v.as_bytes()).error().into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    let connect = req.method() == Method::CONNECT;
    let answer = req
        .extensions()
        .get::<Arc<UpgradeAnswer>>()
        .filter(|_| {
            connect
                || (req.version() == Version::HTTP_11
                    && req.headers().contains_key(header::UPGRADE))
        })
        .cloned();
    let resp = next.run(req).await;
    if let Some(answer) = answer {
        // hyper's rule for when a connection changes hands.
        let status = resp.status();
        answer.answered(
            status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()),
        );
    }
    resp
}

/// How the router answered an upgrade request, for the connection's
/// reader, which holds everything after that request until it knows.
#[derive(Debug, Default)]
pub struct UpgradeAnswer(Mutex<(Option<bool>, Option<Waker>)>);

impl UpgradeAnswer {
    fn answered(&self, switched: bool) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = Some(switched);
        if let Some(w) = s.1.take() {
            w.wake();
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match s.0.take() {
            Some(switched) => Poll::Ready(switched),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Where the reader is in the request stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Head,
    Body {
        body: Body,
        upgrade: bool,
    },
    /// After an upgrade request: nothing is handed over until it is answered.
    Upgrade,
    /// The protocol switched: bytes pass as they come.
    Raw,
    /// A head was refused: nothing more is handed over.
    Refused,
}

/// The rest of a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunked),
}

impl Body {
    /// How many bytes of `data` belong to the body, and whether it ended there.
    fn advance(&mut self, data: &[u8]) -> io::Result<(usize, bool)> {
        match self {
            Body::Length(left) => {
                let n = (*left).min(data.len() as u64);
                *left -= n;
                Ok((n as usize, *left == 0))
            }
            Body::Chunked(c) => c.advance(data),
        }
    }
}

/// The chunked decoder's states, as hyper's (`proto/h1/decode.rs`), so the
/// two always agree on where a body ends: where hyper would fail, so does this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chunked {
    Start,
    Size(u64),
    SizeLws(u64),
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

impl Chunked {
    /// How many bytes of `data` belong to the chunked body, and whether it
    /// ended there.
    pub(crate) fn advance(&mut self, data: &[u8]) -> io::Result<(usize, bool)> {
        use Chunked::*;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "invalid chunked body");
        let hex = |b: u8| (b as char).to_digit(16).map(u64::from);
        let mut i = 0;
        while i < data.len() {
            if let Data(left) = *self {
                let n = left.min((data.len() - i) as u64);
                i += n as usize;
                *self = if n == left { DataCr } else { Data(left - n) };
                continue;
            }
            let b = data[i];
            i += 1;
            *self = match (*self, b) {
                (Start, b) => Size(hex(b).ok_or_else(bad)?),
                (Size(s) | SizeLws(s), b' ' | b'\t') => SizeLws(s),
                (Size(s) | SizeLws(s), b';') => Ext(s),
                (Size(s) | SizeLws(s) | Ext(s), b'\r') => SizeLf(s),
                (Size(s), b) => Size(
                    hex(b)
                        .and_then(|d| s.checked_mul(16)?.checked_add(d))
                        .ok_or_else(bad)?,
                ),
                (Ext(_), b'\n') => return Err(bad()),
                (Ext(s), _) => Ext(s),
                (SizeLf(0), b'\n') => EndCr,
                (SizeLf(s), b'\n') => Data(s),
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Start,
                (EndCr, b'\r') => EndLf,
                (Trailer, b'\r') => TrailerLf,
                (EndCr | Trailer, _) => Trailer,
                (TrailerLf, b'\n') => EndCr,
                (EndLf, b'\n') => return Ok((i, true)),
                _ => return Err(bad()),
            };
        }
        Ok((i, false))
    }
}

/// What a buffer that starts a request holds.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// Not the whole head yet.
    Partial,
    /// A head of `len` bytes, with its body, and whether it asks for an upgrade.
    Done {
        len: usize,
        body: Option<Body>,
        upgrade: bool,
    },
    Refused(Refusal),
}

fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Head::Refused(Refusal::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(httparse::Error::TooManyHeaders) => return Head::Refused(Refusal::TooLarge),
        Err(_) => return Head::Refused(Refusal::Malformed),
    };
    if len > MAX_HEAD {
        return Head::Refused(Refusal::TooLarge);
    }
    match framing(&req) {
        Ok((body, upgrade)) => Head::Done { len, body, upgrade },
        Err(r) => Head::Refused(r),
    }
}

/// The body a request head announces (RFC 9112, 6.3) and whether it asks
/// for an upgrade (hyper's rule: CONNECT, or `Upgrade` in HTTP/1.1).
fn framing(req: &httparse::Request<'_, '_>) -> Result<(Option<Body>, bool), Refusal> {
    let http11 = req.version == Some(1);
    let mut upgrade = req.method == Some("CONNECT");
    let mut length: Option<u64> = None;
    let mut has_te = false;
    let mut chunked = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            for item in list(h.value) {
                if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
                    return Err(Refusal::Invalid);
                }
                let n = std::str::from_utf8(item)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(Refusal::Invalid)?;
                if length.is_some_and(|l| l != n) {
                    return Err(Refusal::Ambiguous);
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_te = true;
            for coding in list(h.value) {
                if chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(Refusal::Invalid);
                }
                chunked = true;
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade |= http11;
        } else if name.eq_ignore_ascii_case(REFUSED.as_bytes()) {
            return Err(Refusal::Malformed);
        }
    }
    if has_te && length.is_some() {
        return Err(Refusal::Ambiguous);
    }
    if has_te && !(chunked && http11) {
        return Err(Refusal::Invalid);
    }
    let body = match length {
        _ if chunked => Some(Body::Chunked(Chunked::Start)),
        Some(0) | None => None,
        Some(n) => Some(Body::Length(n)),
    };
    Ok((body, upgrade))
}

/// A request body's framing, for the proxy's fast lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestBody {
    None,
    Length(u64),
    Chunked,
}

/// The body a request head announces; `None` when the head asks for an
/// upgrade or its framing is refused (the general path answers those).
pub(crate) fn request_body(req: &httparse::Request<'_, '_>) -> Option<RequestBody> {
    match framing(req) {
        Ok((_, true)) | Err(_) => None,
        Ok((None, false)) => Some(RequestBody::None),
        Ok((Some(Body::Length(n)), false)) => Some(RequestBody::Length(n)),
        Ok((Some(Body::Chunked(_)), false)) => Some(RequestBody::Chunked),
    }
}

/// The items of a comma-separated header value, trimmed.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// An accepted connection as hyper reads it: request heads checked, one by
/// one, with their bodies followed to the next. Writes pass through.
pub struct Framing<IO> {
    io: IO,
    /// Bytes read from `io` and not yet handed to hyper.
    buf: BytesMut,
    /// How many bytes at the front of `buf` are cleared for hyper.
    ready: usize,
    state: State,
    answer: Arc<UpgradeAnswer>,
    drained: usize,
    /// The connection's time limits, applied whenever it waits for the peer.
    limits: Option<Limits>,
}

impl<IO> Framing<IO> {
    #[cfg(test)]
    pub fn new(io: IO, answer: Arc<UpgradeAnswer>) -> Self {
        Self::resume(io, answer, BytesMut::new())
    }

    /// A connection of which `read` was read already, by the proxy's fast
    /// lane; it starts with a request head (or is empty).
    pub fn resume(io: IO, answer: Arc<UpgradeAnswer>, read: BytesMut) -> Self {
        Framing {
            io,
            buf: read,
            ready: 0,
            state: State::Head,
            answer,
            drained: 0,
            limits: None,
        }
    }

    /// Applies `limits` to every wait for the peer until the protocol switches.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }
}

impl<IO: AsyncRead + Unpin> Framing<IO> {
    /// Reads and drops what the client still sends after a refusal, up to [`MAX_DRAIN`].
    fn drain(&mut self, cx: &mut Context<'_>) {
        let mut scratch = [0u8; 8192];
        while self.drained < MAX_DRAIN {
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => self.drained += rb.filled().len(),
                _ => return,
            }
        }
    }

    /// Clears the next head, the next piece of body, or refuses; `Pending`
    /// while waiting for bytes or for an upgrade's answer.
    fn poll_next(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.ready > 0 {
                let n = self.ready.min(out.remaining());
                out.put_slice(&self.buf[..n]);
                self.buf.advance(n);
                self.ready -= n;
                return Poll::Ready(Ok(()));
            }
            match self.state {
                State::Refused => {
                    self.drain(cx);
                    return Poll::Pending;
                }
                State::Upgrade => {
                    let switched = ready!(self.answer.poll(cx));
                    self.state = if switched { State::Raw } else { State::Head };
                }
                State::Raw if self.buf.is_empty() => {
                    return Pin::new(&mut self.io).poll_read(cx, out)
                }
                State::Raw => self.ready = self.buf.len(),
                State::Head if self.buf.is_empty() => {
                    if ready!(self.fill(cx))? == 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                State::Head => match parse_head(&self.buf) {
                    Head::Partial => {
                        if ready!(self.fill(cx))? == 0 {
                            // The end in the middle of a head: hyper sees a clean end.
                            self.buf.clear();
                            return Poll::Ready(Ok(()));
                        }
                    }
                    Head::Done { len, body, upgrade } => {
                        self.ready = len;
                        self.state = match body {
                            Some(body) => State::Body { body, upgrade },
                            None if upgrade => State::Upgrade,
                            None => State::Head,
                        };
                    }
                    Head::Refused(why) => {
                        tracing::debug!(?why, "request head refused");
                        self.buf.clear();
                        self.buf.extend_from_slice(why.stand_in());
                        self.ready = self.buf.len();
                        self.state = State::Refused;
                    }
                },
                State::Body { mut body, upgrade } => {
                    let after = if upgrade { State::Upgrade } else { State::Head };
                    if !self.buf.is_empty() {
                        let (n, done) = body.advance(&self.buf)?;
                        self.ready = n;
                        self.state = if done {
                            after
                        } else {
                            State::Body { body, upgrade }
                        };
                        continue;
                    }
                    // The common case, a body arriving after its head: read
                    // straight into hyper's buffer, keeping back only what
                    // follows the body's end.
                    let before = out.filled().len();
                    ready!(Pin::new(&mut self.io).poll_read(cx, out))?;
                    let got = &out.filled()[before..];
                    if got.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    let (n, done) = body.advance(got)?;
                    if n < got.len() {
                        self.buf.extend_from_slice(&got[n..]);
                        out.set_filled(before + n);
                    }
                    self.state = if done {
                        after
                    } else {
                        State::Body { body, upgrade }
                    };
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }

    /// Reads more into `buf`.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8192);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Framing<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = this.poll_next(cx, out);
        let Some(limits) = this.limits.as_mut() else {
            return polled;
        };
        if polled.is_ready() {
            limits.progressed();
            return polled;
        }
        let wait = match this.state {
            State::Head if this.buf.is_empty() => Some(Wait::Idle),
            State::Head => Some(Wait::Head),
            State::Body { .. } => Some(Wait::Body),
            State::Upgrade | State::Raw | State::Refused => None,
        };
        limits.poll_wait(wait, cx).map(Err)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Framing<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
        if this.state == State::Refused {
            this.drain(cx);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn framing() -> (Framing<DuplexStream>, DuplexStream, Arc<UpgradeAnswer>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let answer = Arc::new(UpgradeAnswer::default());
        (Framing::new(a, answer.clone()), b, answer)
    }

    /// What hyper would read now, in reads of 7 bytes, until the reader
    /// waits or ends (outside tokio's budget, which would make it wait early).
    fn read_now(f: &mut Framing<DuplexStream>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            match tokio::task::unconstrained(f.read(&mut buf)).now_or_never() {
                Some(Ok(0)) | None => return out,
                Some(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Some(Err(e)) => panic!("{e}"),
            }
        }
    }

    /// Sends `input` in one piece and returns what hyper reads.
    async fn through(input: &[u8]) -> Vec<u8> {
        let (mut f, mut peer, _) = framing();
        peer.write_all(input).await.unwrap();
        read_now(&mut f)
    }

    const GOOD: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello\
        POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n6 \r\n, GET \r\n0\r\nX-Trailer: 1\r\n\r\n\
        GET /d HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn well_framed_requests_pass_byte_for_byte() {
        assert_eq!(through(GOOD).await, GOOD);
        // Split at every point, so each boundary falls inside every state once.
        for cut in 1..GOOD.len() {
            let (mut f, mut peer, _) = framing();
            peer.write_all(&GOOD[..cut]).await.unwrap();
            let mut got = read_now(&mut f);
            peer.write_all(&GOOD[cut..]).await.unwrap();
            got.extend(read_now(&mut f));
            assert_eq!(got, GOOD, "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn a_refused_head_becomes_the_stand_in_and_nothing_follows() {
        let smuggle = b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(through(smuggle).await, Refusal::Ambiguous.stand_in());
        // The second request of a keep-alive connection.
        let first = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut two = first.to_vec();
        two.extend_from_slice(smuggle);
        let mut want = first.to_vec();
        want.extend_from_slice(Refusal::Ambiguous.stand_in());
        assert_eq!(through(&two).await, want);
    }

    #[tokio::test]
    async fn each_kind_of_bad_framing_is_refused() {
        let cases: &[(&[u8], Refusal)] = &[
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", Refusal::Ambiguous),
            (b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", Refusal::Ambiguous),
            (b"POST / HTTP/1.1\r\nContent-Length: 4, 5\r\n\r\n", Refusal::Ambiguous),
            (b"POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n", Refusal::Invalid),
            (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", Refusal::Invalid),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Refusal::Invalid),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", Refusal::Invalid),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Refusal::Invalid),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n", Refusal::Invalid),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Refusal::Invalid),
            (b"GET / HTTP/1.1\r\nWorkspaced-Refused: ambiguous\r\n\r\n", Refusal::Malformed),
            (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", Refusal::Malformed),
            (b"GET / HTTP/9.9\r\n\r\n", Refusal::Malformed),
        ];
        for (head, why) in cases {
            assert_eq!(
                through(head).await,
                why.stand_in(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(through(head.as_bytes()).await, Refusal::TooLarge.stand_in());
        let long = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD + 1));
        assert_eq!(through(long.as_bytes()).await, Refusal::TooLarge.stand_in());
    }

    #[tokio::test]
    async fn a_bad_chunk_fails_the_read() {
        let (mut f, mut peer, _) = framing();
        let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        peer.write_all(head).await.unwrap();
        peer.write_all(b"5\nhello\r\n0\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = f.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], head);
        assert!(f.read(&mut buf).await.is_err());
    }

    #[tokio::test]
    async fn an_upgrade_waits_for_its_answer() {
        let upgrade =
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        let after = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";

        // Switched: what follows is another protocol's bytes, passed as they are.
        let (mut f, mut peer, answer) = framing();
        peer.write_all(upgrade).await.unwrap();
        peer.write_all(after).await.unwrap();
        assert_eq!(read_now(&mut f), upgrade, "held until answered");
        answer.answered(true);
        assert_eq!(read_now(&mut f), after);

        // Refused (a 401, say): the connection stays HTTP and is checked.
        let (mut f, mut peer, answer) = framing();
        peer.write_all(upgrade).await.unwrap();
        peer.write_all(after).await.unwrap();
        assert_eq!(read_now(&mut f), upgrade);
        answer.answered(false);
        assert_eq!(read_now(&mut f), Refusal::Ambiguous.stand_in());
    }

    #[tokio::test]
    async fn the_end_of_the_stream_reaches_hyper() {
        let (mut f, mut peer, _) = framing();
        peer.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
        drop(peer);
        let mut out = Vec::new();
        f.read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty(), "a cut head is dropped");
    }
}
