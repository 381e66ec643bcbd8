//! Settings: flags beat environment variables beat the TOML config file beat
//! defaults (PROTOCOL.md, "Process and configuration"). Every value is checked
//! here, so an invalid setting stops the start with one line naming it.

pub mod keys;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use keys::{Key, Kind, KEYS};

/// The one-line reason a start was refused; the binary exits 64 with it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn invalid(key: &Key, source: &str, got: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!(
        "invalid setting {} ({source}): got {got}, expected {}",
        key.name,
        key.allowed()
    ))
}

/// Port visibility, ordered none < private < internal < public.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    None,
    Private,
    Internal,
    Public,
}

impl Visibility {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "private" => Some(Self::Private),
            "internal" => Some(Self::Internal),
            "public" => Some(Self::Public),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// What happens when the workspace goes idle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnIdle {
    Report,
    Exit,
    Exec(Vec<String>),
    Webhook(String),
}

/// A supervised process (`[[components]]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    pub name: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub port: Option<u16>,
    pub health_path: Option<String>,
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// The daemon's whole configuration, every value checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub workspace: PathBuf,
    pub name: String,
    pub state_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub devfile: Option<PathBuf>,
    /// The devfile's text, read once at start for every part that needs it.
    pub devfile_text: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token: Option<String>,
    pub jwt_secret_file: Option<PathBuf>,
    pub log_format: LogFormat,
    pub scrollback_bytes: usize,
    pub client_queue_bytes: usize,
    pub terminal_linger: Duration,
    pub max_terminals: usize,
    pub max_body_bytes: usize,
    pub max_ws_message_bytes: usize,
    pub max_apply_changes: usize,
    /// Inotify watches the daemon allows itself (0: as many as the OS
    /// gives); past it, the rest of the tree is watched by rescans.
    pub watch_limit: usize,
    pub max_visibility: Visibility,
    pub default_visibility: Visibility,
    pub ignore_ports: Vec<u16>,
    pub host_routing: bool,
    pub port_url_template: String,
    pub public_traffic_is_activity: bool,
    pub terminal_output_is_activity: bool,
    pub busy_cpu_percent: u8,
    pub idle_timeout: Duration,
    pub max_active: Option<Duration>,
    pub warn_before: Duration,
    pub on_idle: OnIdle,
    pub pre_stop: Option<Vec<String>>,
    pub components: Vec<ComponentConfig>,
    pub containers: BTreeMap<String, String>,
    /// The name of the container this daemon runs in.
    pub container_name: String,
    /// Origins besides the daemon's own that browsers may call it from.
    pub allowed_origins: Vec<String>,
    /// A browser session ends this long after its last use.
    pub session_ttl: Duration,
    /// A connection that has not sent a whole request head by then is closed.
    pub header_timeout: Duration,
    /// A kept-alive connection with no request in flight this long is closed.
    pub idle_connection_timeout: Duration,
    /// Connections at once; past it, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long the proxy waits for an app's answer: 60 s, or the hidden
    /// `WORKSPACED_UPSTREAM_TIMEOUT` (a duration) so tests need not wait.
    pub upstream_timeout: Duration,
    /// How often a WebSocket the daemon serves pings its peer (closed after
    /// twice this without a frame back): 25 s, or the hidden
    /// `WORKSPACED_WS_PING_INTERVAL` (a duration) so tests need not wait.
    pub ws_ping_interval: Duration,
}

/// A checked value of one setting.
#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    Dur(Duration),
    Ports(Vec<u16>),
    Strs(Vec<String>),
    OnIdle(OnIdle),
    Table(toml::Value),
}

/// A duration as the settings write it: seconds, or `300ms`, `5m`, ...
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).ok()
}

/// Parses a flag's or an environment variable's text.
fn from_text(key: &Key, source: &str, text: &str) -> Result<Val, ConfigError> {
    let bad = || invalid(key, source, format!("{text:?}"));
    Ok(match key.kind {
        Kind::Str if text.is_empty() => return Err(bad()),
        Kind::Str => Val::Str(text.to_owned()),
        Kind::Addr => {
            text.parse::<SocketAddr>().map_err(|_| bad())?;
            Val::Str(text.to_owned())
        }
        Kind::Int { min, max } => {
            let n: i64 = text.trim().parse().map_err(|_| bad())?;
            if n < min || n > max {
                return Err(bad());
            }
            Val::Int(n)
        }
        Kind::Bool => match text {
            "true" | "1" | "yes" => Val::Bool(true),
            "false" | "0" | "no" => Val::Bool(false),
            _ => return Err(bad()),
        },
        Kind::Duration => Val::Dur(parse_duration(text).ok_or_else(bad)?),
        Kind::Enum(words) if words.contains(&text) => Val::Str(text.to_owned()),
        Kind::Enum(_) => return Err(bad()),
        Kind::PortList => Val::Ports(
            text.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        ),
        Kind::StrList => Val::Strs(
            text.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        Kind::OnIdle => match text {
            "report" => Val::OnIdle(OnIdle::Report),
            "exit" => Val::OnIdle(OnIdle::Exit),
            _ => return Err(bad()),
        },
        Kind::Table => return Err(bad()),
    })
}

/// Checks a config file's value.
fn from_toml(key: &Key, value: &toml::Value) -> Result<Val, ConfigError> {
    use toml::Value as V;
    let source = "config file";
    let bad = || invalid(key, source, value);
    match (key.kind, value) {
        (Kind::Table, V::Table(_) | V::Array(_)) => Ok(Val::Table(value.clone())),
        (Kind::Table, _) => Err(bad()),
        (Kind::Int { min, max }, V::Integer(n)) if *n >= min && *n <= max => Ok(Val::Int(*n)),
        (Kind::Bool, V::Boolean(b)) => Ok(Val::Bool(*b)),
        (Kind::Duration, V::Integer(n)) if *n >= 0 => Ok(Val::Dur(Duration::from_secs(*n as u64))),
        (Kind::PortList, V::Array(items)) => items
            .iter()
            .map(|v| match v {
                V::Integer(p) if (1..=65535).contains(p) => Ok(*p as u16),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()
            .map(Val::Ports),
        (Kind::StrList, V::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<_, _>>()
            .map(Val::Strs),
        (Kind::OnIdle, V::Table(t)) => {
            let only = t.len() == 1;
            match (t.get("exec"), t.get("webhook")) {
                (Some(V::Array(cmd)), None) if only && !cmd.is_empty() => cmd
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
                    .collect::<Result<_, _>>()
                    .map(|c| Val::OnIdle(OnIdle::Exec(c))),
                // A webhook that can never be delivered must fail the start.
                (None, Some(V::String(url))) if only && crate::http_client::parse(url).is_ok() => {
                    Ok(Val::OnIdle(OnIdle::Webhook(url.clone())))
                }
                _ => Err(bad()),
            }
        }
        (_, V::String(s)) => from_text(key, source, s),
        _ => Err(bad()),
    }
}

/// Where the settings come from, so tests can give each layer directly.
#[derive(Debug, Default)]
pub struct Sources {
    /// Flags by key name (`max_body_bytes`), as given on the command line.
    pub flags: BTreeMap<String, String>,
    /// The process environment (only `WORKSPACED_*` names are read).
    pub env: BTreeMap<String, String>,
    /// The current directory, for the `workspace` default.
    pub cwd: PathBuf,
}

impl Sources {
    pub fn from_process(flags: BTreeMap<String, String>) -> Self {
        Sources {
            flags,
            env: std::env::vars().collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }
}

impl Config {
    /// Merges the layers and checks every value.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let mut vals: BTreeMap<&'static str, Val> = BTreeMap::new();

        let config_path = sources
            .flags
            .get("config")
            .or_else(|| sources.env.get("WORKSPACED_CONFIG"));
        if let Some(path) = config_path {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("cannot read config file {path}: {e}")))?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                ConfigError(format!(
                    "config file {path} is not valid TOML: {}",
                    e.message()
                ))
            })?;
            for (name, value) in &table {
                let key = keys::find(name).ok_or_else(|| {
                    ConfigError(format!(
                        "unknown setting {name} in config file {path}; see PROTOCOL.md for the keys"
                    ))
                })?;
                if key.name == "token" {
                    return Err(ConfigError(
                        "invalid setting token (config file): the token is taken from WORKSPACED_TOKEN or token_file only".into(),
                    ));
                }
                vals.insert(key.name, from_toml(key, value)?);
            }
        }
        for key in KEYS.iter().filter(|k| k.is_scalar()) {
            if let Some(text) = sources.env.get(&key.env_name()) {
                vals.insert(key.name, from_text(key, &key.env_name(), text)?);
            }
        }
        for (name, text) in &sources.flags {
            if name == "config" {
                continue;
            }
            let key = keys::find(name)
                .filter(|k| k.flag)
                .ok_or_else(|| ConfigError(format!("unknown flag --{}", name.replace('_', "-"))))?;
            vals.insert(
                key.name,
                from_text(key, &format!("--{}", key.flag_name()), text)?,
            );
        }
        build(vals, sources)
    }
}

fn build(mut vals: BTreeMap<&'static str, Val>, sources: &Sources) -> Result<Config, ConfigError> {
    let mut take = |name: &str| vals.remove(name);
    let string = |v: Option<Val>| match v {
        Some(Val::Str(s)) => Some(s),
        _ => None,
    };
    let int = |v: Option<Val>, default: i64| match v {
        Some(Val::Int(n)) => n,
        _ => default,
    };
    let boolean = |v: Option<Val>, default: bool| match v {
        Some(Val::Bool(b)) => b,
        _ => default,
    };
    let dur = |v: Option<Val>| match v {
        Some(Val::Dur(d)) => Some(d),
        _ => None,
    };
    let vis = |v: Option<Val>, default| {
        string(v)
            .and_then(|s| Visibility::parse(&s))
            .unwrap_or(default)
    };

    let listen: SocketAddr = string(take("listen"))
        .unwrap_or_else(|| "127.0.0.1:60080".into())
        .parse()
        .expect("checked above");
    let workspace_raw = string(take("workspace"))
        .map(PathBuf::from)
        .unwrap_or_else(|| sources.cwd.clone());
    let workspace_raw = if workspace_raw.is_absolute() {
        workspace_raw
    } else {
        sources.cwd.join(workspace_raw)
    };
    let workspace = std::fs::canonicalize(&workspace_raw)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            ConfigError(format!(
                "invalid setting workspace: {} is not an existing directory",
                workspace_raw.display()
            ))
        })?;
    let name = string(take("name")).unwrap_or_else(|| {
        workspace
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "workspace".into())
    });
    if name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Err(ConfigError(format!(
            "invalid setting name: got {name:?}, expected a name without '/'"
        )));
    }
    let state_dir = string(take("state_dir"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let base = sources
                .env
                .get("XDG_STATE_HOME")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    sources
                        .env
                        .get("HOME")
                        .map(|h| Path::new(h).join(".local/state"))
                })
                .unwrap_or_else(|| PathBuf::from("/tmp"));
            base.join("workspaced").join(&name)
        });
    let logs_dir = string(take("logs_dir"))
        .map(PathBuf::from)
        .or_else(|| {
            sources
                .env
                .get("GL_WORKSPACE_LOGS_DIR")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| state_dir.join("logs"));
    let devfile = string(take("devfile"))
        .map(PathBuf::from)
        .or_else(|| default_devfile(&workspace));
    if let Some(len) = devfile
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .filter(|&len| len > devfile::MAX_DEVFILE_BYTES)
    {
        return Err(ConfigError(format!(
            "invalid setting devfile: the devfile is {len} bytes; allowed: at most 3 MB ({} bytes)",
            devfile::MAX_DEVFILE_BYTES
        )));
    }
    let devfile_text = match &devfile {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "invalid setting devfile: cannot read {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    let token_file = string(take("token_file")).map(PathBuf::from);
    let token = string(take("token"));
    if token.is_some() && token_file.is_some() {
        return Err(ConfigError(
            "invalid setting token: WORKSPACED_TOKEN and token_file are both set; give only one"
                .into(),
        ));
    }
    let jwt_secret_file = string(take("jwt_secret_file")).map(PathBuf::from);
    let log_format = match string(take("log_format")).as_deref() {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    let max_visibility = vis(take("max_visibility"), Visibility::Public);
    let default_visibility = vis(take("default_visibility"), Visibility::Private);
    let port_url_template = string(take("port_url_template")).unwrap_or_else(|| {
        match sources
            .env
            .get("GL_WORKSPACE_DOMAIN_TEMPLATE")
            .filter(|s| !s.is_empty())
        {
            Some(t) => format!("https://{t}/"),
            None => format!("http://{listen}/proxy/${{PORT}}/"),
        }
    });
    let on_idle = match take("on_idle") {
        Some(Val::OnIdle(o)) => o,
        _ => OnIdle::Report,
    };
    let pre_stop = match take("pre_stop") {
        Some(Val::Strs(s)) if !s.is_empty() => Some(s),
        _ => None,
    };
    let components: Vec<ComponentConfig> = match take("components") {
        Some(Val::Table(v)) => v.try_into().map_err(|e: toml::de::Error| {
            ConfigError(format!(
                "invalid setting components: {}",
                e.message().trim()
            ))
        })?,
        _ => Vec::new(),
    };
    for (i, c) in components.iter().enumerate() {
        if c.command.is_empty() || c.name.is_empty() {
            return Err(ConfigError(format!(
                "invalid setting components[{i}]: name and a non-empty command are required"
            )));
        }
        // The name is a log file's name and must not collide with a built-in.
        let bad_name = c.name.contains(['/', '\0'])
            || c.name.starts_with('.')
            || ["watcher", "ports"].contains(&c.name.as_str())
            || components[..i].iter().any(|o| o.name == c.name);
        if bad_name {
            return Err(ConfigError(format!(
                "invalid setting components[{i}].name: got {:?}, expected a unique name without '/' that does not start with '.' and is not watcher or ports",
                c.name
            )));
        }
        if c.health_path.is_some() && c.port.is_none() {
            return Err(ConfigError(format!(
                "invalid setting components[{i}].health_path: it is probed on port, so port is required too"
            )));
        }
    }
    let containers: BTreeMap<String, String> = match take("containers") {
        Some(Val::Table(v)) => v.try_into().map_err(|e: toml::de::Error| {
            ConfigError(format!(
                "invalid setting containers: {}",
                e.message().trim()
            ))
        })?,
        _ => BTreeMap::new(),
    };
    let container_name = string(take("container_name")).unwrap_or_else(|| {
        sources
            .env
            .get("GL_WORKSPACE_CONTAINER")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "main".to_owned())
    });
    for (name, url) in &containers {
        let plain_http =
            crate::http_client::parse(url).is_ok_and(|u| u.scheme_str() == Some("http"));
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        // A relayed terminal's id is `<container>.<id>`: the name must not hold a dot.
        if !name_ok || !plain_http || *name == container_name {
            return Err(ConfigError(format!(
                "invalid setting containers.{name}: got {url:?}, expected a name of letters, digits, '-' and '_' other than container_name ({container_name:?}) and a daemon's URL, http://HOST:PORT"
            )));
        }
    }
    let allowed_origins = match take("allowed_origins") {
        Some(Val::Strs(list)) => list,
        _ => Vec::new(),
    };
    for o in &allowed_origins {
        if crate::origin::normalize(o.as_bytes()).is_none() {
            return Err(ConfigError(format!(
                "invalid setting allowed_origins: got {o:?}, expected origins such as \"https://gitlab.example.com\" (scheme, host and an optional port, nothing else)"
            )));
        }
    }
    let ignore_ports = match take("ignore_ports") {
        Some(Val::Ports(p)) => p,
        _ => Vec::new(),
    };

    Ok(Config {
        listen,
        workspace,
        name,
        state_dir,
        logs_dir,
        devfile,
        devfile_text,
        token_file,
        token,
        jwt_secret_file,
        log_format,
        scrollback_bytes: int(take("scrollback_bytes"), 1 << 20) as usize,
        client_queue_bytes: int(take("client_queue_bytes"), 1 << 20) as usize,
        terminal_linger: dur(take("terminal_linger")).unwrap_or(Duration::from_secs(300)),
        max_terminals: int(take("max_terminals"), 64) as usize,
        max_body_bytes: int(take("max_body_bytes"), 64 << 20) as usize,
        max_ws_message_bytes: int(take("max_ws_message_bytes"), 64 << 20) as usize,
        max_apply_changes: int(take("max_apply_changes"), 10_000) as usize,
        watch_limit: int(take("watch_limit"), 0) as usize,
        max_visibility,
        default_visibility: default_visibility.min(max_visibility),
        ignore_ports,
        host_routing: boolean(take("host_routing"), true),
        port_url_template,
        public_traffic_is_activity: boolean(take("public_traffic_is_activity"), false),
        terminal_output_is_activity: boolean(take("terminal_output_is_activity"), false),
        busy_cpu_percent: int(take("busy_cpu_percent"), 0) as u8,
        idle_timeout: dur(take("idle_timeout")).unwrap_or(Duration::from_secs(30 * 60)),
        max_active: dur(take("max_active")),
        warn_before: dur(take("warn_before")).unwrap_or(Duration::from_secs(5 * 60)),
        on_idle,
        pre_stop,
        components,
        containers,
        container_name,
        allowed_origins,
        session_ttl: dur(take("session_ttl")).unwrap_or(Duration::from_secs(12 * 3600)),
        header_timeout: dur(take("header_timeout")).unwrap_or(Duration::from_secs(30)),
        idle_connection_timeout: dur(take("idle_connection_timeout"))
            .unwrap_or(Duration::from_secs(5 * 60)),
        max_connections: int(take("max_connections"), 4096) as usize,
        upstream_timeout: sources
            .env
            .get("WORKSPACED_UPSTREAM_TIMEOUT")
            .and_then(|s| parse_duration(s))
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(60)),
        ws_ping_interval: sources
            .env
            .get("WORKSPACED_WS_PING_INTERVAL")
            .and_then(|s| parse_duration(s))
            .filter(|d| !d.is_zero())
            .unwrap_or(crate::heartbeat::DEFAULT_INTERVAL),
    })
}

fn default_devfile(workspace: &Path) -> Option<PathBuf> {
    for name in [".devfile.yaml", ".devfile.yml"] {
        let p = workspace.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    let mut in_dir: Vec<PathBuf> = std::fs::read_dir(workspace.join(".devfile"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    in_dir.sort();
    in_dir.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(flags: &[(&str, &str)], env: &[(&str, &str)]) -> Sources {
        Sources {
            flags: flags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: std::env::temp_dir(),
        }
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "max_terminals = 3\nscrollback_bytes = 7\nidle_timeout = \"90s\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = Config::load(&sources(
            &[("config", f), ("max_terminals", "5")],
            &[
                ("WORKSPACED_MAX_TERMINALS", "4"),
                ("WORKSPACED_SCROLLBACK_BYTES", "8"),
            ],
        ))
        .unwrap();
        assert_eq!(c.max_terminals, 5);
        assert_eq!(c.scrollback_bytes, 8);
        assert_eq!(c.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.client_queue_bytes, 1 << 20);
    }

    #[test]
    fn invalid_values_name_the_setting_and_what_is_allowed() {
        let e = Config::load(&sources(&[("max_terminals", "lots")], &[])).unwrap_err();
        assert!(
            e.0.contains("max_terminals") && e.0.contains("integer"),
            "{e}"
        );
        let e = Config::load(&sources(&[], &[("WORKSPACED_LISTEN", "nowhere")])).unwrap_err();
        assert!(
            e.0.contains("listen") && e.0.contains("WORKSPACED_LISTEN"),
            "{e}"
        );
        let e = Config::load(&sources(&[("idle_timeout", "soon")], &[])).unwrap_err();
        assert!(
            e.0.contains("idle_timeout") && e.0.contains("duration"),
            "{e}"
        );
        let e = Config::load(&sources(&[("max_visibility", "world")], &[])).unwrap_err();
        assert!(
            e.0.contains("one of none, private, internal, public"),
            "{e}"
        );
    }

    #[test]
    fn token_and_token_file_together_are_refused() {
        let e = Config::load(&sources(
            &[("token_file", "/x")],
            &[("WORKSPACED_TOKEN", "t")],
        ))
        .unwrap_err();
        assert!(e.0.contains("token"), "{e}");
    }

    #[test]
    fn file_tables_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "on_idle = { webhook = \"http://127.0.0.1:9/x\" }\n[[components]]\nname = \"editor\"\ncommand = [\"sleep\", \"9\"]\nport = 60001\n",
        )
        .unwrap();
        let c = Config::load(&sources(&[("config", file.to_str().unwrap())], &[])).unwrap();
        assert_eq!(c.on_idle, OnIdle::Webhook("http://127.0.0.1:9/x".into()));
        assert_eq!(c.components[0].port, Some(60001));
        assert!(c.components[0].required);

        for (bad, named) in [
            ("on_idle = { webhook = \"ftp://example.test/x\" }\n", "on_idle"),
            ("[containers]\ndb = \"ftp://127.0.0.1:1\"\n", "containers.db"),
            ("[containers]\n\"a.b\" = \"http://127.0.0.1:1\"\n", "containers.a.b"),
            ("[containers]\nmain = \"http://127.0.0.1:1\"\n", "containers.main"),
            ("[[components]]\nname = \"a/b\"\ncommand = [\"x\"]\n", "components[0].name"),
            ("[[components]]\nname = \"ports\"\ncommand = [\"x\"]\n", "components[0].name"),
            ("[[components]]\nname = \"a\"\ncommand = [\"x\"]\n[[components]]\nname = \"a\"\ncommand = [\"y\"]\n", "components[1].name"),
            ("[[components]]\nname = \"a\"\ncommand = [\"x\"]\nhealth_path = \"/h\"\n", "components[0].health_path"),
        ] {
            std::fs::write(&file, bad).unwrap();
            let e = Config::load(&sources(&[("config", file.to_str().unwrap())], &[])).unwrap_err();
            assert!(e.0.contains(named), "{bad}: {e}");
        }

        std::fs::write(&file, "max_termnals = 3\n").unwrap();
        let e = Config::load(&sources(&[("config", file.to_str().unwrap())], &[])).unwrap_err();
        assert!(e.0.contains("unknown setting max_termnals"), "{e}");
    }

    #[test]
    fn port_url_template_follows_the_domain_template() {
        let c = Config::load(&sources(
            &[],
            &[("GL_WORKSPACE_DOMAIN_TEMPLATE", "${PORT}-ws1.example.dev")],
        ))
        .unwrap();
        assert_eq!(c.port_url_template, "https://${PORT}-ws1.example.dev/");
        let c = Config::load(&sources(&[("listen", "127.0.0.1:9000")], &[])).unwrap();
        assert_eq!(c.port_url_template, "http://127.0.0.1:9000/proxy/${PORT}/");
    }
}
