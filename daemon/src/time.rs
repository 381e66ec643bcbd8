//! Timestamps in the contract's form: RFC 3339 UTC with milliseconds.

use std::time::SystemTime;

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}
