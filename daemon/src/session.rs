//! Browser sessions (PROTOCOL.md, "Browsers, other origins and sessions"):
//! the `workspaced_session` cookie names one of these by an opaque random
//! id, so neither the token nor a JWT ever sits in a browser's cookie jar.
//! Kept in memory only: a restart ends every session. Time is passed in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::auth::Identity;

/// Live sessions kept at most. Anyone with a credential can mint sessions
/// (one per page load with `access_token`), so the store is bounded: at the
/// cap the least recently used session ends.
pub const MAX_SESSIONS: usize = 10_000;
/// How often a new session also sweeps out the ended ones.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

type Key = [u8; 32];

/// Ids are looked up by digest, so a lookup never compares the secret itself.
fn key(id: &str) -> Key {
    Sha256::digest(id.as_bytes()).into()
}

#[derive(Debug)]
struct Session {
    identity: Identity,
    last_use: Instant,
    /// When the credential it came from expires (a JWT's `exp`).
    ends_at: Option<Instant>,
}

impl Session {
    fn live(&self, now: Instant, ttl: Duration) -> bool {
        now.saturating_duration_since(self.last_use) < ttl
            && self.ends_at.is_none_or(|end| now < end)
    }
}

#[derive(Debug)]
struct State {
    sessions: HashMap<Key, Session>,
    last_sweep: Instant,
}

/// The daemon's browser sessions.
#[derive(Debug)]
pub struct Sessions {
    state: Mutex<State>,
    ttl: Duration,
    cap: usize,
}

impl Sessions {
    /// A store whose sessions end `ttl` after their last use.
    pub fn new(ttl: Duration) -> Self {
        Self::with_cap(ttl, MAX_SESSIONS)
    }

    fn with_cap(ttl: Duration, cap: usize) -> Self {
        Sessions {
            state: Mutex::new(State {
                sessions: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            ttl,
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent map behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session for `identity`, ending no later than `expires` (a
    /// wall-clock instant, as a JWT's `exp`); returns its id for the cookie.
    pub fn start(
        &self,
        identity: Identity,
        expires: Option<SystemTime>,
        now: Instant,
        wall: SystemTime,
    ) -> String {
        let ends_at = expires.map(|exp| {
            let left = exp.duration_since(wall).unwrap_or(Duration::ZERO);
            now.checked_add(left)
                .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
        });
        let id = crate::auth::generate_token();
        let mut s = self.lock();
        if s.sessions.len() >= self.cap
            || now.saturating_duration_since(s.last_sweep) >= SWEEP_EVERY
        {
            let ttl = self.ttl;
            s.sessions.retain(|_, v| v.live(now, ttl));
            s.last_sweep = now;
        }
        if s.sessions.len() >= self.cap {
            if let Some(oldest) = s
                .sessions
                .iter()
                .min_by_key(|(_, v)| v.last_use)
                .map(|(k, _)| *k)
            {
                s.sessions.remove(&oldest);
            }
        }
        s.sessions.insert(
            key(&id),
            Session {
                identity,
                last_use: now,
                ends_at,
            },
        );
        id
    }

    /// The identity of a live session, counting this as a use; an ended
    /// session is removed and is `None`, as an unknown one.
    pub fn identity(&self, id: &str, now: Instant) -> Option<Identity> {
        self.identity_until(id, now).map(|(identity, _)| identity)
    }

    /// As [`Sessions::identity`], with the instant the session's credential
    /// expires (a JWT's `exp`), which what it grants must not outlive.
    pub fn identity_until(&self, id: &str, now: Instant) -> Option<(Identity, Option<Instant>)> {
        let k = key(id);
        let mut s = self.lock();
        let session = s.sessions.get_mut(&k)?;
        if !session.live(now, self.ttl) {
            s.sessions.remove(&k);
            return None;
        }
        session.last_use = now;
        Some((session.identity.clone(), session.ends_at))
    }

    /// Ends a session (sign out). Whether it was live is not told.
    pub fn end(&self, id: &str) {
        self.lock().sessions.remove(&key(id));
    }

    /// Sessions held, ended ones not yet swept included.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn owner() -> Identity {
        Identity {
            role: Role::Owner,
            user: None,
        }
    }

    #[test]
    fn ids_are_opaque_and_unique() {
        let s = Sessions::new(Duration::from_secs(60));
        let (now, wall) = (Instant::now(), SystemTime::now());
        let a = s.start(owner(), None, now, wall);
        let b = s.start(owner(), None, now, wall);
        assert_ne!(a, b);
        // 256 bits of base64url: no dots, so never mistaken for a JWT.
        assert_eq!(a.len(), 43);
        assert!(!a.contains('.'));
        assert_eq!(s.identity(&a, now), Some(owner()));
        assert_eq!(s.identity("made-up", now), None);
    }

    #[test]
    fn a_session_ends_ttl_after_its_last_use() {
        let ttl = Duration::from_secs(60);
        let s = Sessions::new(ttl);
        let now = Instant::now();
        let id = s.start(owner(), None, now, SystemTime::now());
        // Each use pushes the end out.
        assert!(s.identity(&id, now + Duration::from_secs(50)).is_some());
        assert!(s.identity(&id, now + Duration::from_secs(100)).is_some());
        assert!(s.identity(&id, now + Duration::from_secs(160)).is_none());
        // Ended is ended, even for an earlier clock.
        assert!(s.identity(&id, now).is_none());
        assert!(s.is_empty());
    }

    #[test]
    fn a_session_ends_when_its_jwt_expires() {
        let s = Sessions::new(Duration::from_secs(3600));
        let (now, wall) = (Instant::now(), SystemTime::now());
        let member = Identity {
            role: Role::Member,
            user: Some("alice".into()),
        };
        let id = s.start(
            member.clone(),
            Some(wall + Duration::from_secs(30)),
            now,
            wall,
        );
        assert_eq!(s.identity(&id, now + Duration::from_secs(29)), Some(member));
        assert!(s.identity(&id, now + Duration::from_secs(30)).is_none());
        // A JWT already expired makes a session that is ended at once.
        let gone = s.start(owner(), Some(wall - Duration::from_secs(1)), now, wall);
        assert!(s.identity(&gone, now).is_none());
    }

    #[test]
    fn sign_out_ends_a_session() {
        let s = Sessions::new(Duration::from_secs(60));
        let now = Instant::now();
        let id = s.start(owner(), None, now, SystemTime::now());
        s.end(&id);
        assert!(s.identity(&id, now).is_none());
        s.end("made-up");
    }

    #[test]
    fn the_store_is_bounded() {
        let ttl = Duration::from_secs(60);
        let s = Sessions::with_cap(ttl, 3);
        let (now, wall) = (Instant::now(), SystemTime::now());
        let ids: Vec<String> = (0..3)
            .map(|i| s.start(owner(), None, now + Duration::from_secs(i), wall))
            .collect();
        // The first is used last: the second is the least recently used.
        assert!(s.identity(&ids[0], now + Duration::from_secs(5)).is_some());
        let fourth = s.start(owner(), None, now + Duration::from_secs(6), wall);
        assert_eq!(s.len(), 3);
        assert!(s.identity(&ids[1], now + Duration::from_secs(6)).is_none());
        for id in [&ids[0], &ids[2], &fourth] {
            assert!(s.identity(id, now + Duration::from_secs(7)).is_some());
        }
        // Ended sessions are swept before anything live is dropped.
        let later = now + Duration::from_secs(7) + ttl;
        let fresh = s.start(owner(), None, later, wall);
        assert_eq!(s.len(), 1);
        assert!(s.identity(&fresh, later).is_some());
    }
}
