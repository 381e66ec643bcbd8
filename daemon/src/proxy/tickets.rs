//! Single-use tickets (`POST /api/v1/ports/{port}/open`) and the per-port
//! sessions they turn into: how a browser gets into a host-routed private
//! port without a token in any URL it keeps. A session ends like a browser
//! session, `session_ttl` after its last use, when the daemon restarts
//! (it lives in memory only) and when the credential that opened its ticket
//! expires, and at once when its port falls below the
//! level its ticket was for or closes (the registry's cut counts,
//! `Ports::cuts`). Pure state; time and cut counts are passed in.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::Visibility;

/// How long a ticket may wait to be used.
pub const TICKET_TTL: Duration = Duration::from_secs(60);
/// Sessions kept at most; the least recently used go first.
const MAX_SESSIONS: usize = 10_000;
/// Unspent tickets kept at most; those closest to expiry go first.
const MAX_TICKETS: usize = 10_000;

type Key = [u8; 32];

/// Secrets are kept as digests: a lookup never compares the secret itself,
/// and a memory dump holds no usable id.
fn key(secret: &str) -> Key {
    Sha256::digest(secret.as_bytes()).into()
}

/// What a ticket or a session is for: a port, the visibility the port had
/// when the ticket was made, the port's cut count for that level then, and
/// when the credential that opened it expires.
#[derive(Debug, Clone, Copy)]
struct Grant {
    port: u16,
    level: Visibility,
    cut: u64,
    ends_at: Option<Instant>,
}

impl Grant {
    fn holds(&self, port: u16, now: Instant, cut: impl Fn(Visibility) -> u64) -> bool {
        self.port == port && cut(self.level) == self.cut && self.ends_at.is_none_or(|end| now < end)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Ticket -> (grant, expiry).
    tickets: HashMap<Key, (Grant, Instant)>,
    /// Session -> (grant, last use).
    sessions: HashMap<Key, (Grant, Instant)>,
}

#[derive(Debug)]
pub struct Tickets {
    session_ttl: Duration,
    state: Mutex<State>,
}

impl Tickets {
    pub fn new(session_ttl: Duration) -> Self {
        Tickets {
            session_ttl,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic
        // elsewhere while it was held leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh ticket for `port`, which has visibility `level` and cut
    /// count `cut` for that level now.
    /// `ends_at` is when the opener's credential expires, if it does.
    pub fn issue(
        &self,
        port: u16,
        level: Visibility,
        cut: u64,
        ends_at: Option<Instant>,
        now: Instant,
    ) -> String {
        let ticket = crate::auth::generate_token();
        let mut s = self.lock();
        if s.tickets.len() >= MAX_TICKETS {
            s.tickets.retain(|_, (_, exp)| *exp > now);
        }
        if s.tickets.len() >= MAX_TICKETS {
            if let Some(first) = s
                .tickets
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(k, _)| *k)
            {
                s.tickets.remove(&first);
            }
        }
        let grant = Grant {
            port,
            level,
            cut,
            ends_at,
        };
        s.tickets.insert(key(&ticket), (grant, now + TICKET_TTL));
        ticket
    }

    /// Spends a ticket at `port`: a new session id (256 random bits), or
    /// `None` when the ticket is unknown, used, expired, for another port,
    /// or its port fell below its level or closed since it was issued.
    /// `cut` gives the port's cut count for a level now.
    pub fn redeem(
        &self,
        ticket: &str,
        port: u16,
        now: Instant,
        cut: impl Fn(Visibility) -> u64,
    ) -> Option<String> {
        let mut s = self.lock();
        let (grant, exp) = s.tickets.remove(&key(ticket))?;
        if exp <= now || !grant.holds(port, now, cut) {
            return None;
        }
        let session = crate::auth::generate_token();
        if s.sessions.len() >= MAX_SESSIONS {
            let ttl = self.session_ttl;
            s.sessions
                .retain(|_, (_, used)| now.duration_since(*used) < ttl);
        }
        if s.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = s
                .sessions
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            {
                s.sessions.remove(&oldest);
            }
        }
        s.sessions.insert(key(&session), (grant, now));
        Some(session)
    }

    /// Whether `session` is a live owner's session at `port`; a use keeps
    /// it alive for another `session_ttl`. A session found ended is dropped.
    pub fn session(
        &self,
        session: &str,
        port: u16,
        now: Instant,
        cut: impl Fn(Visibility) -> u64,
    ) -> bool {
        let k = key(session);
        let mut s = self.lock();
        let Some((grant, used)) = s.sessions.get_mut(&k) else {
            return false;
        };
        if grant.port != port {
            // Another port's session: not this port's to end.
            return false;
        }
        if now.duration_since(*used) >= self.session_ttl || !grant.holds(port, now, cut) {
            s.sessions.remove(&k);
            return false;
        }
        *used = now;
        true
    }

    #[cfg(test)]
    fn sessions(&self) -> usize {
        self.lock().sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn never_cut(_: Visibility) -> u64 {
        0
    }

    #[test]
    fn single_use_for_one_port_within_a_minute() {
        let t = Tickets::new(HOUR);
        let now = Instant::now();
        let a = t.issue(3000, Visibility::Private, 0, None, now);
        assert!(t.redeem(&a, 3001, now, never_cut).is_none(), "another port");
        assert!(
            t.redeem(&a, 3000, now, never_cut).is_none(),
            "spent by the failed try"
        );

        let b = t.issue(3000, Visibility::Private, 0, None, now);
        let s = t
            .redeem(&b, 3000, now + Duration::from_secs(59), never_cut)
            .unwrap();
        assert!(s.len() >= 22, "at least 128 bits: {s}");
        assert!(t.redeem(&b, 3000, now, never_cut).is_none(), "single use");
        assert!(t.session(&s, 3000, now, never_cut));
        assert!(!t.session(&s, 3001, now, never_cut));
        assert!(t.session(&s, 3000, now, never_cut), "kept for its own port");
        assert!(!t.session("made-up", 3000, now, never_cut));

        let c = t.issue(3000, Visibility::Private, 0, None, now);
        assert!(
            t.redeem(&c, 3000, now + TICKET_TTL, never_cut).is_none(),
            "expired"
        );
    }

    #[test]
    fn a_session_ends_its_ttl_after_its_last_use() {
        let t = Tickets::new(HOUR);
        let now = Instant::now();
        let ticket = t.issue(3000, Visibility::Private, 0, None, now);
        let s = t.redeem(&ticket, 3000, now, never_cut).unwrap();
        let later = now + HOUR - Duration::from_secs(1);
        assert!(t.session(&s, 3000, later, never_cut), "used just in time");
        assert!(
            t.session(&s, 3000, later + HOUR - Duration::from_secs(1), never_cut),
            "each use extends it"
        );
        assert!(!t.session(&s, 3000, later + HOUR * 3, never_cut));
        assert_eq!(t.sessions(), 0, "an ended session is dropped");
    }

    #[test]
    fn a_session_ends_when_its_port_falls_below_its_level_or_closes() {
        let t = Tickets::new(HOUR);
        let now = Instant::now();
        // The registry's counts, per level: private, internal, public.
        let cuts = std::cell::Cell::new([0u64; 3]);
        let cut = |l: Visibility| {
            cuts.get()[match l {
                Visibility::None | Visibility::Private => 0,
                Visibility::Internal => 1,
                Visibility::Public => 2,
            }]
        };
        let private = t.issue(3000, Visibility::Private, 0, None, now);
        let private = t.redeem(&private, 3000, now, cut).unwrap();
        let public = t.issue(3000, Visibility::Public, 0, None, now);
        let public = t.redeem(&public, 3000, now, cut).unwrap();
        // Public lowered to private: the public ticket's session ends.
        cuts.set([0, 1, 1]);
        assert!(!t.session(&public, 3000, now, cut));
        assert!(t.session(&private, 3000, now, cut));
        // Then to none (and back): the private one ends too, for good.
        cuts.set([1, 1, 1]);
        assert!(!t.session(&private, 3000, now, cut));
        assert!(!t.session(&private, 3000, now, |_| 0));

        // A ticket issued before a cut is spent for nothing.
        let ticket = t.issue(
            3000,
            Visibility::Private,
            cut(Visibility::Private),
            None,
            now,
        );
        cuts.set([2, 2, 2]);
        assert!(t.redeem(&ticket, 3000, now, cut).is_none());
    }

    #[test]
    fn the_stores_are_bounded() {
        let t = Tickets::new(HOUR);
        let now = Instant::now();
        let first = t.issue(1, Visibility::Private, 0, None, now);
        let first = t.redeem(&first, 1, now, never_cut).unwrap();
        for i in 1..=MAX_SESSIONS as u64 {
            let at = now + Duration::from_millis(i);
            let ticket = t.issue(2, Visibility::Private, 0, None, at);
            t.redeem(&ticket, 2, at, never_cut).unwrap();
        }
        assert_eq!(t.sessions(), MAX_SESSIONS);
        assert!(!t.session(&first, 1, now, never_cut), "the oldest went");
        for _ in 0..MAX_TICKETS + 5 {
            t.issue(3, Visibility::Private, 0, None, now);
        }
        assert_eq!(t.lock().tickets.len(), MAX_TICKETS);
    }

    #[test]
    fn a_session_ends_with_the_credential_that_opened_it() {
        let t = Tickets::new(HOUR);
        let now = Instant::now();
        let end = now + Duration::from_secs(10);
        let ticket = t.issue(3000, Visibility::Private, 0, Some(end), now);
        let session = t.redeem(&ticket, 3000, now, never_cut).unwrap();
        assert!(t.session(&session, 3000, end - Duration::from_secs(1), never_cut));
        assert!(
            !t.session(&session, 3000, end, never_cut),
            "ended at the JWT's exp"
        );
        assert!(
            !t.session(&session, 3000, end - Duration::from_secs(1), never_cut),
            "and gone"
        );
        // A ticket whose opener's credential expired is not redeemed.
        let late = t.issue(3000, Visibility::Private, 0, Some(now), now);
        assert_eq!(t.redeem(&late, 3000, now, never_cut), None);
    }
}
