//! Byte pumps between two connections (an upgraded HTTP connection and the
//! app's; a WebSocket tunnel and a TCP socket), noting activity per chunk.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::activity::{Activity, Source};

const CHUNK: usize = 64 * 1024;

/// Copies `r` to `w` until end of stream, then shuts `w` down.
pub async fn pump<R, W>(mut r: R, mut w: W, activity: Option<Activity>) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            let _ = w.shutdown().await;
            return Ok(total);
        }
        if let Some(a) = &activity {
            a.touch(Source::Proxy);
        }
        w.write_all(&buf[..n]).await?;
        total += n as u64;
    }
}

/// Both directions between `a` and `b`, each half-closed as its source ends;
/// returns when both have ended or either failed.
pub async fn splice<A, B>(a: A, b: B, activity: Option<Activity>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let there = pump(ar, bw, activity.clone());
    let back = pump(br, aw, activity);
    tokio::pin!(there, back);
    // Either direction failing ends both; a clean end waits for the other.
    tokio::select! {
        r = &mut there => if r.is_ok() { let _ = back.await; },
        r = &mut back => if r.is_ok() { let _ = there.await; },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_ways_and_half_close() {
        let (a, mut a_peer) = tokio::io::duplex(1024);
        let (b, mut b_peer) = tokio::io::duplex(1024);
        let activity = Activity::default();
        let task = tokio::spawn(splice(a, b, Some(activity.clone())));
        a_peer.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        b_peer.write_all(b"pong").await.unwrap();
        b_peer.shutdown().await.unwrap();
        let mut back = Vec::new();
        a_peer.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong");
        a_peer.shutdown().await.unwrap();
        task.await.unwrap();
        assert!(activity.sources().contains_key(&Source::Proxy));
    }
}
