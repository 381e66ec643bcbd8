//! `workspaced forward`: listens on `127.0.0.1:LOCAL` and carries each
//! accepted connection through the daemon's tunnel to port REMOTE in the
//! workspace (PROTOCOL.md, "Ports"). An `https://` URL is reached over TLS
//! (rustls), trusting the system's roots (or `SSL_CERT_FILE`)
//! plus an optional CA file.

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The most read from a local connection at once: one WebSocket message.
/// Small, so that the daemon never holds a large message whole, and far
/// below any `max_ws_message_bytes` a daemon would be given.
pub const CHUNK: usize = 64 * 1024;

/// What to forward where.
#[derive(Clone, PartialEq, Eq)]
pub struct Forward {
    /// The tunnel's WebSocket URL, `ws[s]://host:port/api/v1/ports/N/tunnel`.
    pub tunnel_url: String,
    pub token: String,
    pub local: u16,
    pub remote: u16,
    /// PEM certificates trusted besides the system's roots (`--ca-file`).
    pub ca_pem: Option<Vec<u8>>,
    /// The send timeout: a local client that takes no byte for this long
    /// loses its connection (and its tunnel), as the daemon's own peers do.
    pub stall: std::time::Duration,
}

/// The send timeout: the daemon's (`heartbeat::send_timeout`), from the same
/// hidden `WORKSPACED_WS_PING_INTERVAL` knob, so tests need not wait 50 s.
pub fn send_timeout_from_env() -> std::time::Duration {
    let interval = std::env::var("WORKSPACED_WS_PING_INTERVAL")
        .ok()
        .and_then(|s| crate::config::parse_duration(&s))
        .filter(|d| !d.is_zero())
        .unwrap_or(crate::heartbeat::DEFAULT_INTERVAL);
    crate::heartbeat::send_timeout(interval)
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Forward")
            .field("tunnel_url", &self.tunnel_url)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// The TLS client for `wss://` URLs: the system's roots, plus `ca_pem`.
fn tls_connector(ca_pem: Option<&[u8]>) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    crate::tls::client_config(ca_pem).context("read the certificates of --ca-file")
}

fn tls_failed(e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "TLS with the daemon failed: {e}; if its certificate is signed by a private CA, \
         give that CA's certificate with --ca-file FILE (or SSL_CERT_FILE)"
    )
}

/// `LOCAL[:REMOTE]`; REMOTE defaults to LOCAL. LOCAL may be 0 (any free
/// port) only with a REMOTE.
pub fn parse_ports(spec: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid ports {spec:?}: expected LOCAL[:REMOTE], each from 1 to 65535");
    let port = |s: &str| s.parse::<u16>().map_err(|_| bad());
    match spec.split_once(':') {
        Some((l, r)) => {
            let (l, r) = (port(l)?, port(r)?);
            if r == 0 {
                return Err(bad());
            }
            Ok((l, r))
        }
        None => match port(spec)? {
            0 => Err(bad()),
            p => Ok((p, p)),
        },
    }
}

/// The tunnel URL for a daemon base URL (`http://host:port[/]`).
pub fn tunnel_url(base: &str, remote: u16) -> Result<String, String> {
    let base = base.trim_end_matches('/');
    let rest = if let Some(r) = base.strip_prefix("http://") {
        format!("ws://{r}")
    } else if let Some(r) = base.strip_prefix("https://") {
        format!("wss://{r}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_owned()
    } else {
        return Err(format!(
            "invalid --url {base:?}: expected the daemon's base URL, http://HOST:PORT"
        ));
    };
    Ok(format!("{rest}/api/v1/ports/{remote}/tunnel"))
}

/// Accepts until `shutdown`; each connection gets its own tunnel.
pub async fn run(
    f: Forward,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Roots are read only for `wss://`: a plain tunnel needs no certificate store.
    let tls = if f.tunnel_url.starts_with("wss://") {
        Some(tls_connector(f.ca_pem.as_deref())?)
    } else {
        None
    };
    let listener = TcpListener::bind(("127.0.0.1", f.local))
        .await
        .with_context(|| format!("listen on 127.0.0.1:{}", f.local))?;
    let local = listener.local_addr()?;
    eprintln!(
        "workspaced: forwarding {local} to port {} in the workspace",
        f.remote
    );
    let tasks = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (conn, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let f = f.clone();
        let tls = tls.clone();
        tasks.spawn(
            async move {
                if let Err(e) = carry(conn, &f, tls).await {
                    eprintln!("workspaced: connection from {peer}: {e:#}");
                }
            }
            .instrument(tracing::debug_span!("forward", client.addr = %peer)),
        );
    }
    tasks.close();
    Ok(())
}

async fn carry(
    conn: TcpStream,
    f: &Forward,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> anyhow::Result<()> {
    let mut req = f
        .tunnel_url
        .as_str()
        .into_client_request()
        .context("build the tunnel request")?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", f.token)
            .parse()
            .context("the token is not a valid header value")?,
    );
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        Some(config),
        true,
        tls.map(tokio_tungstenite::Connector::Rustls),
    )
    .await
    .map_err(|e| match e {
        tungstenite::Error::Http(r) => {
            anyhow::anyhow!(
                "the daemon refused the tunnel to port {}: {}",
                f.remote,
                r.status()
            )
        }
        // rustls reports a refused certificate as an I/O error.
        tungstenite::Error::Io(e) if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => {
            tls_failed(&e)
        }
        tungstenite::Error::Tls(e) => tls_failed(&e),
        other => anyhow::Error::from(other).context("open the tunnel"),
    })?;
    let _ = conn.set_nodelay(true);
    let (mut sink, mut ws_in) = ws.split();
    let (mut tcp_in, mut tcp_out) = conn.into_split();
    let up = async move {
        // Each read becomes a frame without a copy (see the daemon's side).
        use bytes::BufMut;
        let mut buf = bytes::BytesMut::new();
        loop {
            buf.reserve(CHUNK);
            match tcp_in.read_buf(&mut (&mut buf).limit(CHUNK)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if sink
                        .send(Message::Binary(buf.split().freeze()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    let stall = f.stall;
    let down = async move {
        while let Some(Ok(msg)) = ws_in.next().await {
            match msg {
                Message::Binary(b) => {
                    // A local client that stopped reading would hold this
                    // task, and the tunnel behind it, for ever.
                    let written =
                        crate::proxy::splice::write_all_within(&mut tcp_out, &b, stall).await;
                    if let Err(e) = written {
                        tracing::debug!(error = %e, "the local client stopped taking bytes");
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = tokio::time::timeout(stall, tcp_out.shutdown()).await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(parse_ports("5432"), Ok((5432, 5432)));
        assert_eq!(parse_ports("15432:5432"), Ok((15432, 5432)));
        assert_eq!(parse_ports("0:5432"), Ok((0, 5432)));
        for bad in ["0", "70000", "a", "1:0", "1:", ":2", "1:2:3", ""] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tunnel_urls() {
        assert_eq!(
            tunnel_url("http://127.0.0.1:60080/", 5432).unwrap(),
            "ws://127.0.0.1:60080/api/v1/ports/5432/tunnel"
        );
        assert_eq!(
            tunnel_url("https://ws.example", 1).unwrap(),
            "wss://ws.example/api/v1/ports/1/tunnel"
        );
        assert!(tunnel_url("ftp://x", 1).is_err());
    }
}
