//! Component health: the registry of components (configured ones that the
//! supervisor runs, and the built-in `watcher` and `ports` that other parts
//! of the daemon report on), the supervisor (`supervise.rs`), and resources
//! read from the cgroup (`cgroup.rs`).

pub mod backoff;
pub mod cgroup;
pub mod supervise;

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::events::{Event, EventBus};

/// A component's state, as the contract names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Starting,
    Ready,
    Degraded,
    Crashed,
    Stopped,
}

/// How a component's process last ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastExit {
    pub code: Option<i32>,
    pub signal: Option<&'static str>,
    pub at: String,
}

/// The contract's `Component` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Component {
    pub name: String,
    pub state: State,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
}

#[derive(Debug)]
struct Entry {
    info: Component,
    required: bool,
}

/// Every component's current state. Each change goes out as a
/// `component_state` event.
#[derive(Clone, Debug)]
pub struct Components {
    entries: Arc<Mutex<Vec<Entry>>>,
    events: EventBus,
}

/// The built-in components; never required.
pub const BUILTIN: &[&str] = &["watcher", "ports"];

impl Components {
    pub fn new(events: EventBus) -> Self {
        Components {
            entries: Arc::new(Mutex::new(Vec::new())),
            events,
        }
    }

    /// Adds a component in state `starting` (or `stopped` for a built-in
    /// that has not reported yet).
    pub fn register(&self, name: &str, required: bool, state: State) {
        let info = Component {
            name: name.to_owned(),
            state,
            pid: None,
            restarts: 0,
            last_exit: None,
        };
        {
            let mut entries = self.entries.lock().unwrap();
            if entries.iter().any(|e| e.info.name == name) {
                return;
            }
            entries.push(Entry {
                info: info.clone(),
                required,
            });
        }
        self.events.send(Event::ComponentState { component: info });
    }

    /// Lets the built-in components (`watcher`, `ports`) report their
    /// state: `ready`, or `degraded` in a fallback mode. Never required.
    pub fn set_builtin(&self, name: &str, state: State) {
        self.register(name, false, state);
        self.update(name, |c| c.state = state);
    }

    /// Changes a component and sends the event when anything changed.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut Component)) {
        let changed = {
            let mut entries = self.entries.lock().unwrap();
            let Some(e) = entries.iter_mut().find(|e| e.info.name == name) else {
                return;
            };
            let before = e.info.clone();
            f(&mut e.info);
            (e.info != before).then(|| e.info.clone())
        };
        if let Some(component) = changed {
            self.events.send(Event::ComponentState { component });
        }
    }

    pub fn get(&self, name: &str) -> Option<Component> {
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .find(|e| e.info.name == name)
            .map(|e| e.info.clone())
    }

    pub fn list(&self) -> Vec<Component> {
        let entries = self.entries.lock().unwrap();
        entries.iter().map(|e| e.info.clone()).collect()
    }

    /// The required components that are not `ready` (for `/readyz`).
    pub fn not_ready(&self) -> Vec<Component> {
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .filter(|e| e.required && e.info.state != State::Ready)
            .map(|e| e.info.clone())
            .collect()
    }
}

/// How often the cgroup's CPU use is sampled for the `cpu` activity source.
pub const CPU_SAMPLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether CPU use between two samples is above `percent` of one core.
pub fn busy(used: std::time::Duration, elapsed: std::time::Duration, percent: u8) -> bool {
    !elapsed.is_zero() && used.as_secs_f64() * 100.0 > elapsed.as_secs_f64() * percent as f64
}

/// Touches the `cpu` source while the cgroup uses more than `percent` of one
/// core (`busy_cpu_percent`). Samples every `CPU_SAMPLE` until `cancel`.
pub async fn cpu_activity(
    cgroup: cgroup::Cgroup,
    percent: u8,
    activity: crate::activity::Activity,
    cancel: tokio_util::sync::CancellationToken,
) {
    let read = |cg: &cgroup::Cgroup| cg.read().cpu_usage_seconds;
    let mut last = (tokio::time::Instant::now(), read(&cgroup));
    if last.1.is_none() {
        tracing::warn!("busy_cpu_percent is set but the cgroup's CPU use cannot be read");
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CPU_SAMPLE) => {}
            _ = cancel.cancelled() => return,
        }
        let now = (tokio::time::Instant::now(), read(&cgroup));
        if let (Some(a), Some(b)) = (last.1, now.1) {
            let used = std::time::Duration::from_secs_f64((b - a).max(0.0));
            if busy(used, now.0 - last.0, percent) {
                activity.touch(crate::activity::Source::Cpu);
            }
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn busy_compares_with_a_share_of_one_core() {
        let s = std::time::Duration::from_secs;
        let ms = std::time::Duration::from_millis;
        assert!(super::busy(s(2), s(10), 10));
        assert!(!super::busy(ms(999), s(10), 10));
        assert!(super::busy(s(15), s(10), 100), "above one core");
        assert!(!super::busy(s(1), std::time::Duration::ZERO, 10));
    }

    use super::*;

    #[test]
    fn builtins_are_never_required_and_changes_are_events() {
        let events = EventBus::default();
        let mut rx = events.subscribe();
        let c = Components::new(events);
        c.register("editor", true, State::Starting);
        c.set_builtin("ports", State::Degraded);
        assert_eq!(c.not_ready().len(), 1);
        assert_eq!(c.not_ready()[0].name, "editor");
        c.update("editor", |e| e.state = State::Ready);
        assert!(c.not_ready().is_empty());
        let mut kinds = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            kinds.push(serde_json::to_value(&ev).unwrap());
        }
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        assert_eq!(kinds[0]["type"], "component_state");
        assert_eq!(kinds[0]["component"]["state"], "starting");
        assert_eq!(kinds[1]["component"]["name"], "ports");
        assert_eq!(kinds[1]["component"]["state"], "degraded");
        assert_eq!(kinds[2]["component"]["state"], "ready");
        // Unchanged state: no event.
        c.update("editor", |e| e.state = State::Ready);
        assert!(rx.try_recv().is_err());
    }
}
