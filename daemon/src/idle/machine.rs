//! The idle state machine, pure: given the time, the last activity and the
//! limits, it says what to do next. No clock, no I/O; the driver in
//! `idle/mod.rs` feeds it and sleeps until the instant it names.

use std::time::Duration;

use tokio::time::Instant;

/// The effective limits (all levels applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Inactivity before idle; `None` turns inactivity detection off.
    pub timeout: Option<Duration>,
    /// Time since the start after which the workspace is idle whatever happens.
    pub max_active: Option<Duration>,
    /// How long before the stop the warning goes out.
    pub warn_before: Duration,
}

/// What the driver does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do until this instant (or, for `None`, until something changes).
    Wait(Option<Instant>),
    /// Send the warning for a stop at this instant, then step again.
    Warn(Instant),
    /// The workspace just became idle: run the action, then step again.
    Idle,
}

#[derive(Debug)]
pub struct Machine {
    started: Instant,
    limits: Limits,
    /// When the machine entered `idle`, while it is there.
    idle_since: Option<Instant>,
    /// The stop instant the last warning announced.
    warned_for: Option<Instant>,
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Machine {
    pub fn new(started: Instant, limits: Limits) -> Self {
        Machine {
            started,
            limits,
            idle_since: None,
            warned_for: None,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The earlier of last activity + timeout and start + `max_active`.
    pub fn stop_at(&self, last: Instant) -> Option<Instant> {
        earliest(
            self.limits.timeout.map(|t| last + t),
            self.limits.max_active.map(|m| self.started + m),
        )
    }

    pub fn max_passed(&self, now: Instant) -> bool {
        self.limits
            .max_active
            .is_some_and(|m| now >= self.started + m)
    }

    /// Whether the workspace is idle now: it entered idle and no activity
    /// came since, or `max_active` has passed (then it stays idle).
    pub fn is_idle(&self, now: Instant, last: Instant) -> bool {
        match self.idle_since {
            Some(since) => self.max_passed(now) || last <= since,
            None => false,
        }
    }

    /// Whether the driver should wake on the next activity (idle in a way
    /// that activity ends).
    pub fn waits_for_activity(&self, now: Instant) -> bool {
        self.idle_since.is_some() && !self.max_passed(now)
    }

    pub fn step(&mut self, now: Instant, last: Instant) -> Step {
        if self.idle_since.is_some() {
            if self.is_idle(now, last) {
                return Step::Wait(None);
            }
            // Activity came after the idle action: active again.
            self.idle_since = None;
        }
        let Some(stop) = self.stop_at(last) else {
            return Step::Wait(None);
        };
        if now >= stop {
            self.idle_since = Some(now);
            self.warned_for = None;
            return Step::Idle;
        }
        let warn_at = stop
            .checked_sub(self.limits.warn_before)
            .unwrap_or(self.started);
        if now >= warn_at {
            if self.warned_for != Some(stop) {
                self.warned_for = Some(stop);
                return Step::Warn(stop);
            }
            return Step::Wait(Some(stop));
        }
        Step::Wait(Some(warn_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits(timeout: u64, max_active: Option<u64>, warn: u64) -> Limits {
        Limits {
            timeout: (timeout > 0).then(|| S * timeout as u32),
            max_active: max_active.map(|m| S * m as u32),
            warn_before: S * warn as u32,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn warns_then_goes_idle_after_the_timeout() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, limits(10, None, 3));
        assert_eq!(m.step(t0, t0), Step::Wait(Some(t0 + S * 7)));
        tokio::time::advance(S * 7).await;
        let now = Instant::now();
        assert_eq!(m.step(now, t0), Step::Warn(t0 + S * 10));
        assert_eq!(m.step(now, t0), Step::Wait(Some(t0 + S * 10)));
        tokio::time::advance(S * 3).await;
        assert_eq!(m.step(Instant::now(), t0), Step::Idle);
        assert!(m.is_idle(Instant::now(), t0));
        // Idle once per entry: stepping again does not repeat it.
        assert_eq!(m.step(Instant::now(), t0), Step::Wait(None));
        assert!(m.waits_for_activity(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn activity_postpones_and_ends_idle() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, limits(10, None, 3));
        tokio::time::advance(S * 7).await;
        let last = Instant::now(); // activity before the warning is due
        assert_eq!(m.step(last, last), Step::Wait(Some(last + S * 7)));
        tokio::time::advance(S * 7).await;
        assert_eq!(m.step(Instant::now(), last), Step::Warn(last + S * 10));
        tokio::time::advance(S * 3).await;
        assert_eq!(m.step(Instant::now(), last), Step::Idle);
        tokio::time::advance(S).await;
        let again = Instant::now();
        assert!(
            !m.is_idle(again, again),
            "activity ends idle in report mode"
        );
        assert_eq!(m.step(again, again), Step::Wait(Some(again + S * 7)));
        tokio::time::advance(S * 7).await;
        assert_eq!(m.step(Instant::now(), again), Step::Warn(again + S * 10));
        tokio::time::advance(S * 3).await;
        assert_eq!(
            m.step(Instant::now(), again),
            Step::Idle,
            "a new entry into idle"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn max_active_fires_despite_constant_activity_and_stays_idle() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, limits(10, Some(30), 3));
        let mut fired = None;
        for _ in 0..40 {
            tokio::time::advance(S).await;
            let now = Instant::now();
            // Activity every second.
            loop {
                match m.step(now, now) {
                    Step::Idle => fired = fired.or(Some(now - t0)),
                    Step::Warn(stop) => assert_eq!(stop, t0 + S * 30),
                    Step::Wait(_) => break,
                }
            }
            if fired.is_some() {
                assert!(m.is_idle(now, now), "stays idle whatever happens");
            }
        }
        assert_eq!(fired, Some(S * 30));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_timeout_turns_detection_off() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, limits(0, None, 3));
        assert_eq!(m.stop_at(t0), None);
        tokio::time::advance(S * 100_000).await;
        assert_eq!(m.step(Instant::now(), t0), Step::Wait(None));
        m.set_limits(limits(0, Some(5), 1));
        assert_eq!(m.stop_at(t0), Some(t0 + S * 5));
        assert_eq!(m.step(Instant::now(), t0), Step::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_timeout_takes_effect_at_once() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, limits(600, None, 60));
        assert_eq!(m.step(t0, t0), Step::Wait(Some(t0 + S * 540)));
        m.set_limits(limits(5, None, 60));
        // The warning time is already behind: warn now, stop at +5 s.
        assert_eq!(m.step(t0, t0), Step::Warn(t0 + S * 5));
        tokio::time::advance(S * 5).await;
        assert_eq!(m.step(Instant::now(), t0), Step::Idle);
    }
}
