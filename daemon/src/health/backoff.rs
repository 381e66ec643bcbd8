//! The restart backoff of a supervised component: 1 s doubling to 60 s, back
//! to 1 s after a run that stayed up 60 s. Pure.

use std::time::Duration;

pub const FIRST: Duration = Duration::from_secs(1);
pub const MAX: Duration = Duration::from_secs(60);
/// A run this long resets the backoff.
pub const STABLE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// The pause before the next start, given how long the last run was up.
    pub fn after_run(&mut self, uptime: Duration) -> Duration {
        if uptime >= STABLE {
            self.next = FIRST;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(MAX);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets_after_a_stable_run() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(10);
        let pauses: Vec<u64> = (0..8).map(|_| b.after_run(quick).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.after_run(STABLE), FIRST);
        assert_eq!(b.after_run(quick), FIRST * 2);
    }
}
