//! The daemon's own outgoing requests (component health probes and the idle
//! webhook) over `http://` or `https://`: hyper's pooled client, with TLS by
//! rustls trusting the system's roots (or `SSL_CERT_FILE`).

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported URL {0:?}: only http:// and https:// URLs with a host are supported")]
    Url(String),
    #[error("TLS is not available: {0}")]
    Tls(String),
    #[error("{0}")]
    Request(String),
    #[error("timed out")]
    Timeout,
}

type Plain = Client<HttpConnector, Full<Bytes>>;
type Secure = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(Duration::from_secs(5)));
    // The TLS connector below takes `https://` URLs through this one.
    c.enforce_http(false);
    c
}

/// Requests are rare (a probe a second at most): no connection is kept, so
/// none outlives the runtime that opened it.
fn builder() -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_max_idle_per_host(0);
    b
}

fn plain() -> &'static Plain {
    static CLIENT: OnceLock<Plain> = OnceLock::new();
    CLIENT.get_or_init(|| builder().build(connector()))
}

/// Built at the first `https://` request: the system's roots are read once.
fn secure() -> Result<&'static Secure, Error> {
    static CLIENT: OnceLock<Result<Secure, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let config = crate::tls::client_config(None).map_err(|e| format!("{e:#}"))?;
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*config).clone())
                .https_only()
                .enable_http1()
                .wrap_connector(connector());
            Ok(builder().build(https))
        })
        .as_ref()
        .map_err(|e| Error::Tls(e.clone()))
}

/// Checks a URL: `http` or `https`, a host, no user info.
pub fn parse(url: &str) -> Result<Uri, Error> {
    let bad = || Error::Url(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(bad());
    }
    match uri.scheme_str() {
        Some("http") | Some("https") => Ok(uri),
        _ => Err(bad()),
    }
}

/// Sends one request and returns the response's status code.
pub async fn request(
    method: &str,
    url: &str,
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<u16, Error> {
    let uri = parse(url)?;
    let https = uri.scheme_str() == Some("https");
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header(hyper::header::USER_AGENT, "workspaced");
    let body = match body {
        Some((content_type, bytes)) => {
            req = req.header(hyper::header::CONTENT_TYPE, content_type);
            Full::new(Bytes::copy_from_slice(bytes))
        }
        None => Full::new(Bytes::new()),
    };
    let req = req
        .body(body)
        .map_err(|e| Error::Request(format!("build the request: {e}")))?;
    let exchange = async {
        let resp = if https {
            secure()?.request(req).await
        } else {
            plain().request(req).await
        };
        // The status is all that matters; the body is dropped unread.
        resp.map(|r| r.status().as_u16())
            .map_err(|e| Error::Request(error_chain(&e)))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Error::Timeout)?
}

/// hyper's errors say little at the top ("client error (Connect)"): the
/// cause (refused, certificate unknown) is further down.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn checks_urls() {
        assert!(parse("http://127.0.0.1:8080/hook?x=1").is_ok());
        assert!(parse("https://example.test").is_ok());
        assert!(parse("http://[::1]/a").is_ok());
        for bad in [
            "ftp://example.test/",
            "http://user:pw@example.test/",
            "/just/a/path",
            "example.test",
            "http://",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn posts_and_reads_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&got).contains("{\"a\":1}") {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let code = request(
            "POST",
            &url,
            Some(("application/json", b"{\"a\":1}")),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(code, 204);
        let req = server.await.unwrap().to_ascii_lowercase();
        assert!(req.starts_with("post /hook http/1.1\r\n"), "{req}");
        assert!(req.contains("content-length: 7\r\n"), "{req}");
    }
}
