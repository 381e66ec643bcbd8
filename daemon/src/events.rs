//! The daemon-wide event stream behind `GET /api/v1/events`.

use serde::Serialize;
use tokio::sync::broadcast;

/// One message of the event stream (PROTOCOL.md, "Health, status, activity").
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    TerminalExited {
        id: String,
        code: Option<i32>,
        signal: Option<&'static str>,
    },
    ComponentState {
        component: crate::health::Component,
    },
    IdleWarning {
        stop_at: String,
    },
    Idle {
        idle: crate::idle::IdleInfo,
    },
    Shutdown,
}

/// A cheap, cloneable sender; a slow subscriber loses old events, never blocks others.
#[derive(Clone, Debug)]
pub struct EventBus(broadcast::Sender<Event>);

impl Default for EventBus {
    fn default() -> Self {
        EventBus(broadcast::channel(1024).0)
    }
}

impl EventBus {
    pub fn send(&self, event: Event) {
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}
