//! The event log: numbered events of this daemon run (the `epoch`), kept
//! for replay to a client that reconnects with `since`. It keeps the
//! contract's minimum (so many events, so much time) unless that would pass
//! its maximum in events or bytes: a burst cannot grow it without bound, and
//! a client whose `since` fell out is told to resync.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::files::{Entry, Kind};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Changed(Changed),
    Deleted {
        path: String,
        kind: Kind,
    },
    Git {
        head: Option<String>,
        branch: Option<String>,
    },
}

/// A changed path as the log keeps it: the log holds every event of the
/// last 5 minutes (30,000 after a checkout), so the blob id is binary and
/// the path a box, not two growable strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub path: Box<str>,
    pub kind: Kind,
    /// The blob id; `None` for directories.
    pub oid: Option<[u8; 20]>,
    pub size: u64,
    pub mode: &'static str,
}

impl From<Entry> for Changed {
    fn from(e: Entry) -> Changed {
        Changed {
            oid: super::oid_bin(e.oid.as_deref()),
            path: e.path.into(),
            kind: e.kind,
            size: e.size,
            mode: e.mode,
        }
    }
}

impl Changed {
    /// The entry as the API shows it.
    pub fn entry(&self) -> Entry {
        Entry {
            path: self.path.to_string(),
            kind: self.kind,
            oid: self.oid.map(hex::encode),
            size: self.size,
            mode: self.mode,
        }
    }
}

#[derive(Debug)]
pub struct Event {
    pub seq: u64,
    /// The client whose apply caused it.
    pub origin: Option<Arc<str>>,
    pub kind: EventKind,
    pub at: Instant,
}

impl Event {
    /// The memory it holds, roughly: the struct, its strings, and the
    /// allocator's and the queue's share.
    pub fn weight(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let strings = match &self.kind {
            EventKind::Changed(c) => c.path.len(),
            EventKind::Deleted { path, .. } => path.len(),
            EventKind::Git { head, branch } => text(head).saturating_add(text(branch)),
        };
        std::mem::size_of::<Event>()
            .saturating_add(64)
            .saturating_add(strings)
    }
}

/// Why a replay is impossible: the client must fetch the tree.
#[derive(Debug, PartialEq, Eq)]
pub struct Resync;

#[derive(Debug)]
pub struct EventLog {
    epoch: String,
    events: VecDeque<Arc<Event>>,
    last_seq: u64,
    /// Every event up to this seq has been dropped.
    dropped_to: u64,
    keep_events: usize,
    keep_for: Duration,
    max_events: usize,
    max_bytes: usize,
    /// The sum of the kept events' weights.
    bytes: usize,
}

impl EventLog {
    /// A log that keeps at least `keep_events` events and at least every
    /// event younger than `keep_for`.
    pub fn new(epoch: String, keep_events: usize, keep_for: Duration) -> Self {
        EventLog {
            epoch,
            events: VecDeque::new(),
            last_seq: 0,
            dropped_to: 0,
            keep_events,
            keep_for,
            max_events: usize::MAX,
            max_bytes: usize::MAX,
            bytes: 0,
        }
    }

    /// Caps the log at `max_events` events and `max_bytes` of weight, the
    /// minimum notwithstanding; the newest event is always kept.
    pub fn with_max(mut self, max_events: usize, max_bytes: usize) -> Self {
        self.max_events = max_events.max(1);
        self.max_bytes = max_bytes;
        self
    }

    /// How many events are kept, and their weight.
    pub fn kept(&self) -> (usize, usize) {
        (self.events.len(), self.bytes)
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn push(&mut self, kind: EventKind, origin: Option<Arc<str>>, now: Instant) -> Arc<Event> {
        self.last_seq = self.last_seq.saturating_add(1);
        let ev = Arc::new(Event {
            seq: self.last_seq,
            origin,
            kind,
            at: now,
        });
        self.bytes = self.bytes.saturating_add(ev.weight());
        self.events.push_back(ev.clone());
        while let Some(front) = self.events.front() {
            if self.events.len() <= 1 {
                break;
            }
            let over_max = self.events.len() > self.max_events || self.bytes > self.max_bytes;
            let past_min = self.events.len() > self.keep_events
                && now.saturating_duration_since(front.at) >= self.keep_for;
            if !over_max && !past_min {
                break;
            }
            self.dropped_to = front.seq;
            self.bytes = self.bytes.saturating_sub(front.weight());
            self.events.pop_front();
        }
        ev
    }

    /// The events after `seq` of `epoch`, or `Resync` when they are not all
    /// kept (or the epoch is another run's, or `seq` is in the future).
    pub fn since(&self, epoch: &str, seq: u64) -> Result<Vec<Arc<Event>>, Resync> {
        if epoch != self.epoch || seq < self.dropped_to || seq > self.last_seq {
            return Err(Resync);
        }
        let skip = usize::try_from(seq - self.dropped_to).map_err(|_| Resync)?;
        Ok(self.events.iter().skip(skip).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(n: u64) -> EventKind {
        EventKind::Git {
            head: Some(n.to_string()),
            branch: None,
        }
    }

    #[test]
    fn replays_after_seq_and_refuses_other_epochs() {
        let t0 = Instant::now();
        let mut log = EventLog::new("e1".into(), 10, Duration::from_secs(300));
        assert_eq!(log.since("e1", 0).unwrap().len(), 0);
        for i in 0..5 {
            log.push(git(i), None, t0);
        }
        let r = log.since("e1", 2).unwrap();
        assert_eq!(r.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(log.since("e1", 5).unwrap().is_empty());
        assert_eq!(log.since("e1", 6).unwrap_err(), Resync);
        assert_eq!(log.since("e0", 2).unwrap_err(), Resync);
    }

    #[test]
    fn keeps_count_and_age() {
        let t0 = Instant::now();
        let mut log = EventLog::new("e".into(), 3, Duration::from_secs(300));
        for i in 0..10 {
            log.push(git(i), None, t0);
        }
        // All younger than 5 minutes: all kept.
        assert_eq!(log.since("e", 0).unwrap().len(), 10);
        let later = t0 + Duration::from_secs(301);
        log.push(git(10), None, later);
        // Old ones dropped down to the count.
        assert_eq!(log.since("e", 0).unwrap_err(), Resync);
        let r = log.since("e", 8).unwrap();
        assert_eq!(r.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![9, 10, 11]);
        assert_eq!(log.since("e", 7).unwrap_err(), Resync);
    }

    fn changed(path: String) -> EventKind {
        EventKind::Changed(
            Entry {
                path,
                kind: Kind::File,
                oid: Some("0".repeat(40)),
                size: 1,
                mode: "100644",
            }
            .into(),
        )
    }

    #[test]
    fn a_changed_event_gives_back_its_entry() {
        let e = Entry {
            path: "src/a.rs".into(),
            kind: Kind::File,
            oid: Some("0123456789abcdef0123456789abcdef01234567".into()),
            size: 7,
            mode: "100755",
        };
        assert_eq!(Changed::from(e.clone()).entry(), e);
        let d = Entry {
            path: "src".into(),
            kind: Kind::Dir,
            oid: None,
            size: 0,
            mode: "040000",
        };
        assert_eq!(Changed::from(d.clone()).entry(), d);
    }

    #[test]
    fn a_burst_stops_at_the_maximum_in_events() {
        let t0 = Instant::now();
        let mut log =
            EventLog::new("e".into(), 10, Duration::from_secs(300)).with_max(25, usize::MAX);
        for i in 0..100 {
            log.push(git(i), None, t0);
        }
        // All young, yet only the newest 25 kept.
        assert_eq!(log.kept().0, 25);
        assert_eq!(log.since("e", 74).unwrap_err(), Resync);
        let r = log.since("e", 75).unwrap();
        assert_eq!(r.first().map(|e| e.seq), Some(76));
        assert_eq!(r.len(), 25);
    }

    #[test]
    fn a_burst_stops_at_the_maximum_in_bytes() {
        let t0 = Instant::now();
        let max = 64 * 1024;
        let mut log =
            EventLog::new("e".into(), 10_000, Duration::from_secs(300)).with_max(usize::MAX, max);
        for i in 0..1000 {
            log.push(changed(format!("{i:0>1000}")), None, t0);
        }
        let (n, bytes) = log.kept();
        assert!(bytes <= max, "{bytes} > {max}");
        assert!(n > 10 && n < 100, "{n} events kept");
        assert_eq!(log.since("e", 0).unwrap_err(), Resync);
        assert_eq!(log.since("e", 1000 - n as u64).unwrap().len(), n);
        // One event heavier than the whole budget is still kept alone.
        log.push(changed("x".repeat(max)), None, t0);
        assert_eq!(log.kept().0, 1);
    }
}
