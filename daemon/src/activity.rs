//! Activity sources, each timestamped separately, for idle detection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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

/// The last time each source saw activity.
#[derive(Clone, Debug, Default)]
pub struct Activity(Arc<Mutex<BTreeMap<Source, SystemTime>>>);

impl Activity {
    pub fn touch(&self, source: Source) {
        self.0.lock().unwrap().insert(source, SystemTime::now());
    }

    pub fn sources(&self) -> BTreeMap<Source, SystemTime> {
        self.0.lock().unwrap().clone()
    }
}
