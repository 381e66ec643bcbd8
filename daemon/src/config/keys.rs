//! The table of settings: one entry per key of PROTOCOL.md, which drives the
//! flags, the environment variables and the checks of the config file alike.

/// What values a setting takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Any non-empty string.
    Str,
    /// A socket address such as `127.0.0.1:60080`.
    Addr,
    /// An integer, at least the given minimum.
    Int { min: i64, max: i64 },
    /// `true` or `false`.
    Bool,
    /// A humantime string (`"90s"`, `"1h30m"`) or an integer of seconds.
    Duration,
    /// One of a few words.
    Enum(&'static [&'static str]),
    /// A list of port numbers (comma-separated as a flag).
    PortList,
    /// A list of strings (comma-separated as a flag), e.g. a command.
    StrList,
    /// `"report"`, `"exit"`, or (config file only) a table with `exec` or `webhook`.
    OnIdle,
    /// Config-file only.
    Table,
}

/// One setting.
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// Whether it may be given as a flag (the token may not: env only).
    pub flag: bool,
}

const fn key(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        flag: true,
    }
}

pub const VISIBILITIES: &[&str] = &["none", "private", "internal", "public"];
const BYTES: Kind = Kind::Int {
    min: 1,
    max: i64::MAX,
};

/// Every setting the daemon knows, in the order of PROTOCOL.md.
pub const KEYS: &[Key] = &[
    key("listen", Kind::Addr),
    key("workspace", Kind::Str),
    key("name", Kind::Str),
    key("state_dir", Kind::Str),
    key("logs_dir", Kind::Str),
    key("devfile", Kind::Str),
    key("token_file", Kind::Str),
    Key {
        name: "token",
        kind: Kind::Str,
        flag: false,
    },
    key("jwt_secret_file", Kind::Str),
    key("log_format", Kind::Enum(&["text", "json"])),
    key("scrollback_bytes", BYTES),
    key("client_queue_bytes", BYTES),
    key("terminal_linger", Kind::Duration),
    key(
        "max_terminals",
        Kind::Int {
            min: 1,
            max: 100_000,
        },
    ),
    key("max_body_bytes", BYTES),
    key("max_ws_message_bytes", BYTES),
    key("max_apply_changes", BYTES),
    key(
        "watch_limit",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    key("max_visibility", Kind::Enum(VISIBILITIES)),
    key("default_visibility", Kind::Enum(VISIBILITIES)),
    key("ignore_ports", Kind::PortList),
    key("host_routing", Kind::Bool),
    key("port_url_template", Kind::Str),
    key("public_traffic_is_activity", Kind::Bool),
    key("terminal_output_is_activity", Kind::Bool),
    key("busy_cpu_percent", Kind::Int { min: 0, max: 100 }),
    key("idle_timeout", Kind::Duration),
    key("max_active", Kind::Duration),
    key("warn_before", Kind::Duration),
    key("on_idle", Kind::OnIdle),
    key("pre_stop", Kind::StrList),
    Key {
        name: "components",
        kind: Kind::Table,
        flag: false,
    },
    Key {
        name: "containers",
        kind: Kind::Table,
        flag: false,
    },
    key("container_name", Kind::Str),
    key("allowed_origins", Kind::StrList),
    key("session_ttl", Kind::Duration),
    key("header_timeout", Kind::Duration),
    key("idle_connection_timeout", Kind::Duration),
    key(
        "max_connections",
        Kind::Int {
            min: 1,
            max: 1_000_000,
        },
    ),
];

impl Key {
    /// `--max-body-bytes` for `max_body_bytes`.
    pub fn flag_name(&self) -> String {
        self.name.replace('_', "-")
    }

    /// `WORKSPACED_MAX_BODY_BYTES` for `max_body_bytes`.
    pub fn env_name(&self) -> String {
        format!("WORKSPACED_{}", self.name.to_ascii_uppercase())
    }

    /// Whether flags and environment variables can carry it.
    pub fn is_scalar(&self) -> bool {
        self.kind != Kind::Table
    }

    /// A short description of the allowed values, for error messages.
    pub fn allowed(&self) -> String {
        match self.kind {
            Kind::Str => "a non-empty string".into(),
            Kind::Addr => "an address such as 127.0.0.1:60080 or [::]:60080".into(),
            Kind::Int { min, max } if max == i64::MAX => format!("an integer of at least {min}"),
            Kind::Int { min, max } => format!("an integer from {min} to {max}"),
            Kind::Bool => "true or false".into(),
            Kind::Duration => {
                "a duration such as \"90s\", \"30m\", \"1h30m\" or an integer of seconds".into()
            }
            Kind::Enum(words) => format!("one of {}", words.join(", ")),
            Kind::PortList => "a list of ports from 1 to 65535 (comma-separated as a flag)".into(),
            Kind::StrList => "a list of strings (comma-separated as a flag)".into(),
            Kind::OnIdle => {
                "\"report\", \"exit\", { exec = [\"cmd\", \"arg\"] } or { webhook = \"http://...\" }"
                    .into()
            }
            Kind::Table => "a table (config file only)".into(),
        }
    }
}

/// Looks a key up by name.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}
