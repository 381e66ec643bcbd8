//! Coalescing of change notifications: the first change of a quiet period
//! is flushed at once; changes during a burst wait for the end of the
//! window that began with the last flush, then go out together.

use std::collections::HashSet;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Coalescer {
    window: Duration,
    last_flush: Option<Instant>,
    deadline: Option<Instant>,
    pending: Vec<String>,
    seen: HashSet<String>,
}

impl Coalescer {
    pub fn new(window: Duration) -> Self {
        Coalescer {
            window,
            last_flush: None,
            deadline: None,
            pending: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Notes a changed path. Returns whether to flush now.
    pub fn note(&mut self, path: String, now: Instant) -> bool {
        if self.seen.insert(path.clone()) {
            self.pending.push(path);
        }
        if self.deadline.is_some() {
            return false;
        }
        match self.last_flush {
            Some(t) if now.duration_since(t) < self.window => {
                self.deadline = Some(t + self.window);
                false
            }
            _ => true,
        }
    }

    /// When the pending paths are due, if any wait.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the pending paths, in the order first noted.
    pub fn take(&mut self, now: Instant) -> Vec<String> {
        self.last_flush = Some(now);
        self.deadline = None;
        // After a burst (a checkout: tens of thousands of paths) the set's
        // table goes, not only its entries.
        if self.seen.capacity() > 1024 {
            self.seen = HashSet::new();
        } else {
            self.seen.clear();
        }
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_change_at_once_then_bursts_wait() {
        let w = Duration::from_millis(50);
        let t0 = Instant::now();
        let mut c = Coalescer::new(w);
        assert!(c.note("a".into(), t0));
        assert_eq!(c.take(t0), vec!["a"]);
        // Within the window: wait until its end.
        assert!(!c.note("b".into(), t0 + Duration::from_millis(10)));
        assert!(!c.note("c".into(), t0 + Duration::from_millis(20)));
        assert!(!c.note("b".into(), t0 + Duration::from_millis(30)));
        assert_eq!(c.deadline(), Some(t0 + w));
        assert_eq!(c.take(t0 + w), vec!["b", "c"]);
        // A quiet period later: at once again.
        assert!(c.note("d".into(), t0 + Duration::from_millis(200)));
        assert_eq!(c.take(t0 + Duration::from_millis(200)), vec!["d"]);
        assert!(!c.has_pending());
    }
}
