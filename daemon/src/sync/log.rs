//! The event log: numbered events of this daemon run (the `epoch`), kept
//! for replay to a client that reconnects with `since`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::files::{Entry, Kind};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Changed(Entry),
    Deleted {
        path: String,
        kind: Kind,
    },
    Git {
        head: Option<String>,
        branch: Option<String>,
    },
}

#[derive(Debug)]
pub struct Event {
    pub seq: u64,
    /// The client whose apply caused it.
    pub origin: Option<Arc<str>>,
    pub kind: EventKind,
    pub at: Instant,
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
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn push(&mut self, kind: EventKind, origin: Option<Arc<str>>, now: Instant) -> Arc<Event> {
        self.last_seq += 1;
        let ev = Arc::new(Event {
            seq: self.last_seq,
            origin,
            kind,
            at: now,
        });
        self.events.push_back(ev.clone());
        while self.events.len() > self.keep_events {
            let front = &self.events[0];
            if now.duration_since(front.at) < self.keep_for {
                break;
            }
            self.dropped_to = front.seq;
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
        let skip = (seq - self.dropped_to) as usize;
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
}
