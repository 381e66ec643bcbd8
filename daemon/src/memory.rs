//! Gives freed memory back to the OS after load. glibc keeps what a burst
//! freed (terminal floods, big listings, transfers) in its arenas, so the
//! daemon would stay at its peak: its thresholds are fixed (big buffers are
//! mapped on their own and unmapped when freed, the top of every arena is
//! trimmed past 1 MiB, where the default thresholds grow after the first big
//! free and then keep everything), and a trim after a burst returns the free
//! pages inside the arenas. Asked for by the code that ends a burst, run
//! once things settled, never on a timer (an idle daemon does not wake up).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// How long after the last request to release before trimming: the frees
/// of a closing terminal (its reader task, its waiter thread, its ring, a
/// catch-up parse still running) finish within it.
pub const SETTLE: Duration = Duration::from_millis(500);

/// Where `soon` rings; set once by `spawn`.
static ASKED: std::sync::OnceLock<Arc<Notify>> = std::sync::OnceLock::new();

/// Asks for a trim once things settle (many asks in a row make one trim).
/// Called where a burst ends: a terminal dropped, a big listing or apply
/// answered. A no-op before `spawn` (unit tests).
pub fn soon() {
    if let Some(n) = ASKED.get() {
        n.notify_one();
    }
}

/// Asks for a trim when dropped: held by the code of a burst.
#[derive(Debug)]
pub struct OnDrop;

impl Drop for OnDrop {
    fn drop(&mut self) {
        soon();
    }
}

/// Allocations from this size on get their own mapping, unmapped when freed.
pub const MMAP_THRESHOLD: usize = 256 * 1024;
/// Free memory at the top of an arena past this goes back at once.
pub const TRIM_THRESHOLD: usize = 1024 * 1024;

/// Starts the task that trims when asked, until `cancel`, after fixing the
/// allocator's thresholds.
pub fn spawn(tracker: &TaskTracker, cancel: CancellationToken) {
    tune();
    let asked = ASKED.get_or_init(|| Arc::new(Notify::new())).clone();
    tracker.spawn(
        async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = asked.notified() => {}
                }
                // Later asks within the settling time join this trim.
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = asked.notified() => continue,
                        _ = tokio::time::sleep(SETTLE) => break,
                    }
                }
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        }
        .instrument(tracing::debug_span!("memory")),
    );
}

/// Fixes glibc's thresholds (see the module's comment).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    crate::sys::malloc_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD);
}

/// Other allocators keep no such thresholds.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}

/// Returns the allocator's free memory to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    let released = crate::sys::malloc_trim();
    tracing::debug!(released, "memory trimmed");
}

/// musl's allocator unmaps what it frees by itself: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}
