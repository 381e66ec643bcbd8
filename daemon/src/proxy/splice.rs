//! Byte pumps between two connections (an upgraded HTTP connection and the
//! app's), noting activity per chunk. A side that takes nothing of what is
//! written to it for `stall` ends the splice: a peer that stopped reading
//! (its TCP window full) would otherwise hold both sockets and the task for
//! ever, and hold the other side's writer back with it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::activity::{Activity, Source};

const CHUNK: usize = 64 * 1024;

/// Writes all of `buf`, failing with `TimedOut` when `w` takes no byte for
/// `stall`; progress of any size restarts the clock, so a slow reader is
/// kept and only one that stopped is dropped.
pub async fn write_all_within<W>(w: &mut W, mut buf: &[u8], stall: Duration) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    while !buf.is_empty() {
        match tokio::time::timeout(stall, w.write(buf)).await {
            Err(_) => return Err(stalled(stall)),
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => buf = &buf[n..],
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(())
}

fn stalled(stall: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the peer took no byte for {stall:?}"),
    )
}

/// Copies `r` to `w` until end of stream, then shuts `w` down.
pub async fn pump<R, W>(
    mut r: R,
    mut w: W,
    activity: Option<Activity>,
    stall: Duration,
) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            let _ = tokio::time::timeout(stall, w.shutdown()).await;
            return Ok(total);
        }
        if let Some(a) = &activity {
            a.touch(Source::Proxy);
        }
        write_all_within(&mut w, &buf[..n], stall).await?;
        total = total.saturating_add(n as u64);
    }
}

/// Both directions between `a` and `b`, each half-closed as its source ends;
/// returns when both have ended or either failed (a stalled writer included).
pub async fn splice<A, B>(a: A, b: B, activity: Option<Activity>, stall: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let there = pump(ar, bw, activity.clone(), stall);
    let back = pump(br, aw, activity, stall);
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

    const STALL: Duration = Duration::from_secs(50);

    #[tokio::test]
    async fn both_ways_and_half_close() {
        let (a, mut a_peer) = tokio::io::duplex(1024);
        let (b, mut b_peer) = tokio::io::duplex(1024);
        let activity = Activity::default();
        let task = tokio::spawn(splice(a, b, Some(activity.clone()), STALL));
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

    #[tokio::test(start_paused = true)]
    async fn a_side_that_stops_reading_ends_the_splice_after_the_stall() {
        let (a, mut a_peer) = tokio::io::duplex(1024);
        let (b, _b_peer_never_reads) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(a, b, None, STALL));
        // Twice what the pipe to `b` holds: the pump waits on `b`.
        a_peer.write_all(&[b'x'; 2048]).await.unwrap();
        let start = tokio::time::Instant::now();
        task.await.unwrap();
        let took = start.elapsed();
        assert!(took >= STALL && took < STALL * 2, "{took:?}");
        // Its end reached `a`'s peer too.
        let mut rest = Vec::new();
        a_peer.read_to_end(&mut rest).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_is_kept_past_the_stall() {
        let (mut w, mut r) = tokio::io::duplex(16);
        let stall = Duration::from_secs(1);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            loop {
                tokio::time::sleep(Duration::from_millis(400)).await;
                match r.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        // 10 pieces at 400 ms each: 4 s in all, never 1 s without progress.
        write_all_within(&mut w, &[b'y'; 160], stall).await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), vec![b'y'; 160]);
    }
}
