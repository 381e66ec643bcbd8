//! Activity sources, each timestamped separately, for idle detection.
//!
//! Every source keeps the wall-clock time of its last activity (reported in
//! `Idle.sources`); the most recent activity of any source is also published
//! as a monotonic instant on a watch channel, which the idle machine reads
//! (and, while idle, waits on). Touching is cheap: a lock and a store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    TerminalInput,
    Api,
    Proxy,
    Heartbeat,
    TerminalOutput,
    Cpu,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::TerminalInput => "terminal_input",
            Source::Api => "api",
            Source::Proxy => "proxy",
            Source::Heartbeat => "heartbeat",
            Source::TerminalOutput => "terminal_output",
            Source::Cpu => "cpu",
        }
    }
}

#[derive(Debug)]
struct Inner {
    sources: Mutex<BTreeMap<Source, SystemTime>>,
    /// The instant of the last activity of any source (the start before any).
    last: watch::Sender<Instant>,
}

/// The last time each source saw activity.
#[derive(Clone, Debug)]
pub struct Activity(Arc<Inner>);

impl Default for Activity {
    fn default() -> Self {
        Activity(Arc::new(Inner {
            sources: Mutex::new(BTreeMap::new()),
            last: watch::channel(Instant::now()).0,
        }))
    }
}

impl Activity {
    pub fn touch(&self, source: Source) {
        self.0
            .sources
            .lock()
            .unwrap()
            .insert(source, SystemTime::now());
        self.0.last.send_replace(Instant::now());
    }

    pub fn sources(&self) -> BTreeMap<Source, SystemTime> {
        self.0.sources.lock().unwrap().clone()
    }

    /// The wall-clock time of the most recent activity of any source.
    pub fn last_time(&self) -> Option<SystemTime> {
        self.0.sources.lock().unwrap().values().max().copied()
    }

    /// The monotonic instant of the most recent activity (creation before any).
    pub fn last_instant(&self) -> Instant {
        *self.0.last.borrow()
    }

    /// A receiver that wakes on every activity.
    pub fn watch(&self) -> watch::Receiver<Instant> {
        self.0.last.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_source_is_kept_apart_and_the_last_instant_moves() {
        let a = Activity::default();
        let start = a.last_instant();
        assert!(a.sources().is_empty() && a.last_time().is_none());
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        let w = a.watch();
        a.touch(Source::Heartbeat);
        assert!(w.has_changed().unwrap());
        assert_eq!(a.last_instant() - start, std::time::Duration::from_secs(5));
        assert_eq!(
            a.sources().keys().copied().collect::<Vec<_>>(),
            vec![Source::Heartbeat]
        );
    }
}
