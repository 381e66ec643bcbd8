//! Single-use tickets (`POST /api/v1/ports/{port}/open`) and the per-port
//! sessions they turn into: how a browser gets into a host-routed private
//! port without a token in any URL it keeps. Pure state; time is passed in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a ticket may wait to be used.
pub const TICKET_TTL: Duration = Duration::from_secs(60);
/// Sessions kept at most; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

type Key = [u8; 32];

/// Secrets are kept as digests: a lookup never compares the secret itself.
fn key(secret: &str) -> Key {
    Sha256::digest(secret.as_bytes()).into()
}

#[derive(Debug, Default)]
struct State {
    tickets: HashMap<Key, (u16, Instant)>,
    /// Session -> (port, creation order).
    sessions: HashMap<Key, (u16, u64)>,
    next: u64,
}

#[derive(Debug, Default)]
pub struct Tickets(Mutex<State>);

impl Tickets {
    /// A fresh ticket for `port`.
    pub fn issue(&self, port: u16, now: Instant) -> String {
        let ticket = crate::auth::generate_token();
        let mut s = self.0.lock().unwrap();
        s.tickets.retain(|_, (_, exp)| *exp > now);
        s.tickets.insert(key(&ticket), (port, now + TICKET_TTL));
        ticket
    }

    /// Spends a ticket at `port`: a new session secret, or `None` when the
    /// ticket is unknown, used, expired, or for another port.
    pub fn redeem(&self, ticket: &str, port: u16, now: Instant) -> Option<String> {
        let mut s = self.0.lock().unwrap();
        let (p, exp) = s.tickets.remove(&key(ticket))?;
        if p != port || exp <= now {
            return None;
        }
        let session = crate::auth::generate_token();
        if s.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = s
                .sessions
                .iter()
                .min_by_key(|(_, (_, n))| *n)
                .map(|(k, _)| *k)
            {
                s.sessions.remove(&oldest);
            }
        }
        let n = s.next;
        s.next += 1;
        s.sessions.insert(key(&session), (port, n));
        Some(session)
    }

    /// Whether `session` is an owner's session at `port`.
    pub fn is_session(&self, session: &str, port: u16) -> bool {
        self.0
            .lock()
            .unwrap()
            .sessions
            .get(&key(session))
            .is_some_and(|(p, _)| *p == port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_use_for_one_port_within_a_minute() {
        let t = Tickets::default();
        let now = Instant::now();
        let a = t.issue(3000, now);
        assert!(t.redeem(&a, 3001, now).is_none(), "another port");
        assert!(t.redeem(&a, 3000, now).is_none(), "spent by the failed try");

        let b = t.issue(3000, now);
        let s = t.redeem(&b, 3000, now + Duration::from_secs(59)).unwrap();
        assert!(t.redeem(&b, 3000, now).is_none(), "single use");
        assert!(t.is_session(&s, 3000));
        assert!(!t.is_session(&s, 3001));
        assert!(!t.is_session("made-up", 3000));

        let c = t.issue(3000, now);
        assert!(t.redeem(&c, 3000, now + TICKET_TTL).is_none(), "expired");
    }
}
