//! What the platform decides for a workspace (INJECTION.md, "What the platform
//! decides: `render`'s other inputs"): resource classes, variables, timeouts
//! and the exposure cap. Pure: parsing and checks here, the objects they
//! become in `render.rs`. No variable's value is ever formatted into a message.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};

use devfile::Finding;

/// CPU in millicores and memory in bytes, as Kubernetes quantities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amount {
    pub millicpu: u64,
    pub memory: u64,
}

impl Amount {
    fn checked_add(self, o: Amount) -> Option<Amount> {
        Some(Amount {
            millicpu: self.millicpu.checked_add(o.millicpu)?,
            memory: self.memory.checked_add(o.memory)?,
        })
    }

    fn max(self, o: Amount) -> Amount {
        Amount {
            millicpu: self.millicpu.max(o.millicpu),
            memory: self.memory.max(o.memory),
        }
    }

    fn fits_in(self, o: Amount) -> bool {
        self.millicpu <= o.millicpu && self.memory <= o.memory
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPU and {}",
            cpu_text(self.millicpu),
            memory_text(self.memory)
        )
    }
}

fn cpu_text(m: u64) -> String {
    if m.is_multiple_of(1000) {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

fn memory_text(b: u64) -> String {
    for (suffix, unit) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if b >= unit && b.is_multiple_of(unit) {
            return format!("{}{suffix}", b / unit);
        }
    }
    b.to_string()
}

/// Millicores of a CPU quantity: `2`, `0.5`, `500m`.
pub fn parse_cpu(q: &str) -> Option<u64> {
    if let Some(m) = q.strip_suffix('m') {
        return digits(m)?.parse().ok();
    }
    scaled(q, 1000)
}

/// Bytes of a memory quantity: `1Gi`, `512Mi`, `1G`, `1.5Gi`, `1000`.
pub fn parse_memory(q: &str) -> Option<u64> {
    const SUFFIXES: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    for (suffix, unit) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            return scaled(n, *unit);
        }
    }
    scaled(q, 1)
}

fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// `int[.frac] * unit`, rounded up, without overflow.
fn scaled(s: &str, unit: u64) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let int: u64 = if int.is_empty() {
        0
    } else {
        digits(int)?.parse().ok()?
    };
    let mut total = int.checked_mul(unit)?;
    if !frac.is_empty() {
        let frac = digits(frac)?;
        if frac.len() > 18 {
            return None;
        }
        let den = 10u128.pow(frac.len() as u32);
        let num = u128::from(frac.parse::<u64>().ok()?) * u128::from(unit);
        let part = u64::try_from(num.div_ceil(den)).ok()?;
        total = total.checked_add(part)?;
    }
    Some(total)
}

/// Requests and limits as the devfile's strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantities {
    pub cpu: String,
    pub memory: String,
}

/// A class of workspace: what a container gets by default and what the
/// whole pod may use at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub name: String,
    pub requests: Quantities,
    pub limits: Quantities,
    pub max: Quantities,
    pub storage: String,
    pub storage_class: Option<String>,
}

impl Class {
    fn max_amount(&self) -> Amount {
        Amount {
            millicpu: parse_cpu(&self.max.cpu).unwrap_or(0),
            memory: parse_memory(&self.max.memory).unwrap_or(0),
        }
    }
}

fn q(cpu: &str, memory: &str) -> Quantities {
    Quantities {
        cpu: cpu.into(),
        memory: memory.into(),
    }
}

/// The four classes every platform has without a `--classes` file.
pub fn builtin_classes() -> Vec<Class> {
    let class =
        |name: &str, req: Quantities, lim: Quantities, max: Quantities, storage: &str| Class {
            name: name.into(),
            requests: req,
            limits: lim,
            max,
            storage: storage.into(),
            storage_class: None,
        };
    vec![
        class(
            "small",
            q("250m", "256Mi"),
            q("2", "1Gi"),
            q("4", "4Gi"),
            "10Gi",
        ),
        class(
            "medium",
            q("500m", "1Gi"),
            q("4", "4Gi"),
            q("8", "8Gi"),
            "20Gi",
        ),
        class(
            "large",
            q("1", "2Gi"),
            q("8", "4Gi"),
            q("16", "16Gi"),
            "50Gi",
        ),
        class(
            "xlarge",
            q("2", "8Gi"),
            q("16", "32Gi"),
            q("32", "64Gi"),
            "100Gi",
        ),
    ]
}

/// Reads a `--classes` file: a mapping of class name to
/// `{container: {requests, limits}, max, storage, storageClassName?}`.
/// Its classes come before (and so replace) the built-in ones of the same name.
pub fn parse_classes(text: &str) -> Result<Vec<Class>, String> {
    let doc = crate::yaml::load(text).map_err(|e| format!("the classes file: {e}"))?;
    let map = doc
        .as_object()
        .ok_or("the classes file must be a mapping of class name to class")?;
    let mut out = Vec::new();
    for (name, v) in map {
        let field = |path: &str| -> Result<String, String> {
            let ptr = format!("/{}", path.replace('.', "/"));
            let s = v
                .pointer(&ptr)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("class {name}: {path} is missing or not a string"))?;
            let ok = if path.ends_with("cpu") {
                parse_cpu(s).is_some()
            } else if path.ends_with("memory") || path == "storage" {
                parse_memory(s).is_some()
            } else {
                true
            };
            if ok {
                Ok(s.to_owned())
            } else {
                Err(format!("class {name}: {path} is {s:?}, not a quantity such as \"2\", \"500m\" or \"4Gi\""))
            }
        };
        let allowed = ["container", "max", "storage", "storageClassName"];
        if let Some(k) = v
            .as_object()
            .and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str())))
        {
            return Err(format!(
                "class {name}: unknown field {k}; allowed: {}",
                allowed.join(", ")
            ));
        }
        let class = Class {
            name: name.clone(),
            requests: q(
                &field("container.requests.cpu")?,
                &field("container.requests.memory")?,
            ),
            limits: q(
                &field("container.limits.cpu")?,
                &field("container.limits.memory")?,
            ),
            max: q(&field("max.cpu")?, &field("max.memory")?),
            storage: field("storage")?,
            storage_class: v
                .get("storageClassName")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        out.push(class);
    }
    Ok(out)
}

/// Applies a class to an injected devfile: every container without its own
/// limits and requests gets the class's, the data volume the class's storage
/// (never less than `min_storage`). Then the pod's limits must fit the
/// class's maximum: running containers add up, init containers (run one at a
/// time before them) count by the largest, as Kubernetes schedules a pod.
pub fn apply_class(
    devfile: &mut Value,
    class: &Class,
    init_components: &[String],
    data_volume: &str,
    min_storage: Option<&str>,
) -> Result<(), String> {
    let mut running = Vec::new();
    let mut init = Vec::new();
    let components = devfile
        .get_mut("components")
        .and_then(Value::as_array_mut)
        .ok_or("the devfile has no components")?;
    for c in components.iter_mut() {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(vol) = c.get_mut("volume").and_then(Value::as_object_mut) {
            if name == data_volume {
                let mut size = class.storage.clone();
                if let Some(min) = min_storage {
                    if parse_memory(min).unwrap_or(0) > parse_memory(&size).unwrap_or(0) {
                        size = min.to_owned();
                    }
                }
                vol.insert("size".into(), json!(size));
            }
            continue;
        }
        let Some(container) = c.get_mut("container").and_then(Value::as_object_mut) else {
            continue;
        };
        for (key, default) in [
            ("cpuLimit", &class.limits.cpu),
            ("memoryLimit", &class.limits.memory),
        ] {
            container.entry(key).or_insert_with(|| json!(default));
        }
        let limit = Amount {
            millicpu: quantity(container.get("cpuLimit"), parse_cpu)
                .ok_or_else(|| format!("container {name}: cpuLimit is not a CPU quantity"))?,
            memory: quantity(container.get("memoryLimit"), parse_memory)
                .ok_or_else(|| format!("container {name}: memoryLimit is not a memory quantity"))?,
        };
        // A request never above the container's own limit.
        for (key, default, parse, cap) in [
            (
                "cpuRequest",
                &class.requests.cpu,
                parse_cpu as fn(&str) -> Option<u64>,
                limit.millicpu,
            ),
            (
                "memoryRequest",
                &class.requests.memory,
                parse_memory,
                limit.memory,
            ),
        ] {
            if container.contains_key(key) {
                continue;
            }
            let value = if parse(default).unwrap_or(0) > cap {
                container[if key == "cpuRequest" {
                    "cpuLimit"
                } else {
                    "memoryLimit"
                }]
                .clone()
            } else {
                json!(default)
            };
            container.insert(key.into(), value);
        }
        if init_components.contains(&name) {
            init.push((name, limit));
        } else {
            running.push((name, limit));
        }
    }
    let sum = running
        .iter()
        .try_fold(Amount::default(), |acc, (_, a)| acc.checked_add(*a))
        .ok_or("the containers' limits overflow")?;
    let largest_init = init
        .iter()
        .fold(Amount::default(), |acc, (_, a)| acc.max(*a));
    let pod = sum.max(largest_init);
    let max = class.max_amount();
    if !pod.fits_in(max) {
        let each: Vec<String> = running
            .iter()
            .map(|(n, a)| format!("{n}: {a}"))
            .chain(init.iter().map(|(n, a)| format!("{n} (init): {a}")))
            .collect();
        return Err(format!(
            "the workspace's containers need {pod} ({}), more than class {}'s maximum of {max}; choose a larger class or lower the containers' cpuLimit/memoryLimit",
            each.join("; "),
            class.name
        ));
    }
    Ok(())
}

fn quantity(v: Option<&Value>, parse: fn(&str) -> Option<u64>) -> Option<u64> {
    match v? {
        Value::String(s) => parse(s),
        Value::Number(n) => parse(&n.to_string()),
        _ => None,
    }
}

/// Where a variable came from; a later one wins for the same key and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VarSource {
    User,
    Group,
    Project,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VarKind {
    Env,
    File,
}

/// The workspace's variables after precedence: key to value, per kind.
/// `Debug` shows keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Variables {
    pub env: BTreeMap<String, String>,
    pub file: BTreeMap<String, String>,
}

impl fmt::Debug for Variables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Variables")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("file", &self.file.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The file variable that holds the daemon's owner token.
pub const TOKEN_FILE_KEY: &str = "workspaced_token";
/// Env names the injector sets itself (besides every `GL_*` and `WORKSPACED_*`).
const INJECTED_ENV: &[&str] = &["PROJECTS_ROOT"];
/// A Secret's data may not exceed 1 MiB; keep room for the object around it.
const MAX_SECRET_BYTES: usize = 1024 * 1024 - 16 * 1024;

/// Parses a `--variables` file. Messages name the entry and its key, never a value.
pub fn parse_variables(text: &str) -> Result<Variables, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "the variables file is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let list = doc.as_array().ok_or(
        "the variables file must be a JSON list of {\"key\",\"value\",\"type\",\"source\"}",
    )?;
    let mut chosen: BTreeMap<(VarKind, String), (VarSource, String)> = BTreeMap::new();
    for (i, v) in list.iter().enumerate() {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("variables[{i}] must be an object"))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["key", "value", "type", "source"].contains(&k.as_str()))
        {
            return Err(format!(
                "variables[{i}]: unknown field {k:?}; allowed: key, value, type, source"
            ));
        }
        let key = obj
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("variables[{i}].key is missing or not a string"))?;
        // The value's own text never goes into a message.
        let value = obj.get("value").and_then(Value::as_str).ok_or_else(|| {
            format!("variables[{i}].value (key {key:?}) is missing or not a string")
        })?;
        let kind = match obj.get("type").and_then(Value::as_str) {
            Some("env") => VarKind::Env,
            Some("file") => VarKind::File,
            _ => {
                return Err(format!(
                    "variables[{i}].type (key {key:?}) must be \"env\" or \"file\""
                ))
            }
        };
        let source = match obj.get("source").and_then(Value::as_str) {
            Some("user") => VarSource::User,
            Some("group") => VarSource::Group,
            Some("project") => VarSource::Project,
            _ => {
                return Err(format!(
                    "variables[{i}].source (key {key:?}) must be \"user\", \"group\" or \"project\""
                ))
            }
        };
        check_key(kind, key).map_err(|why| format!("variables[{i}].key {key:?}: {why}"))?;
        match chosen.get(&(kind, key.to_owned())) {
            Some((s, _)) if *s == source => {
                return Err(format!(
                    "variables[{i}]: key {key:?} is given twice for the same type and source"
                ))
            }
            Some((s, _)) if *s > source => {}
            _ => {
                chosen.insert((kind, key.to_owned()), (source, value.to_owned()));
            }
        }
    }
    let mut out = Variables::default();
    for ((kind, key), (_, value)) in chosen {
        match kind {
            VarKind::Env => out.env.insert(key, value),
            VarKind::File => out.file.insert(key, value),
        };
    }
    for (what, map) in [("env", &out.env), ("file", &out.file)] {
        let total: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total > MAX_SECRET_BYTES {
            return Err(format!(
                "the {what} variables add up to {total} bytes; a Secret holds at most {MAX_SECRET_BYTES}"
            ));
        }
    }
    Ok(out)
}

fn check_key(kind: VarKind, key: &str) -> Result<(), &'static str> {
    match kind {
        VarKind::Env => {
            let mut bytes = key.bytes();
            let first_ok = bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
            if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(
                    "an env variable's name is a letter or '_' followed by letters, digits and '_'",
                );
            }
            let upper = key.to_ascii_uppercase();
            if upper.starts_with("GL_")
                || upper.starts_with("WORKSPACED_")
                || INJECTED_ENV.contains(&key)
            {
                return Err("GL_*, WORKSPACED_* and PROJECTS_ROOT are set by the platform");
            }
            Ok(())
        }
        VarKind::File => {
            let ok = !key.is_empty()
                && key.len() <= 253
                && key != "."
                && key != ".."
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if ok {
                Ok(())
            } else {
                Err("a file variable's name is a plain file name of letters, digits, '-', '.' and '_' (not . or ..)")
            }
        }
    }
}

/// Adds the daemon's token when the variables do not give one.
pub fn ensure_token(vars: &mut Variables) -> anyhow::Result<()> {
    if !vars.file.contains_key(TOKEN_FILE_KEY) {
        use base64::Engine as _;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| {
            anyhow::anyhow!("read the OS random source for the workspace token: {e}")
        })?;
        vars.file.insert(
            TOKEN_FILE_KEY.into(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        );
    }
    Ok(())
}

/// The platform's timeouts (PROTOCOL.md's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Zero turns inactivity detection off.
    pub idle: Duration,
    pub max_active: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            idle: Duration::from_secs(30 * 60),
            max_active: Duration::from_secs(36 * 3600),
        }
    }
}

/// A duration as the daemon reads it: a humantime string or whole seconds.
pub use devfile::model::parse_duration;

/// The devfile's `workspaced/*` attributes: well formed, and only shortening
/// the platform's timeouts (a zero idle timeout is "never", the longest).
pub fn check_timeout_attributes(devfile: &Value, platform: Timeouts) -> Vec<Finding> {
    let asks = match devfile::model::timeouts(devfile) {
        Ok(asks) => asks,
        Err(findings) => return findings,
    };
    let mut findings = Vec::new();
    for (attr, asked, limit, label) in [
        (
            devfile::model::ATTR_IDLE_TIMEOUT,
            asks.idle_timeout,
            platform.idle,
            "idle timeout",
        ),
        (
            devfile::model::ATTR_MAX_ACTIVE,
            asks.max_active,
            platform.max_active,
            "maximum active time",
        ),
    ] {
        let Some(d) = asked else {
            continue;
        };
        let longer = !limit.is_zero() && (d.is_zero() || d > limit);
        if longer {
            findings.push(Finding {
                path: format!("attributes.{attr}"),
                message: format!(
                    "asks for {}, longer than the platform's {label} of {}; a devfile may only shorten it",
                    if d.is_zero() { "no limit".to_owned() } else { humantime::format_duration(d).to_string() },
                    humantime::format_duration(limit)
                ),
            });
        }
    }
    findings
}

/// Visibility of a port, in PROTOCOL.md's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Visibility {
    None,
    Private,
    Internal,
    Public,
}

impl Visibility {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Visibility::None,
            "private" => Visibility::Private,
            "internal" => Visibility::Internal,
            "public" => Visibility::Public,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::None => "none",
            Visibility::Private => "private",
            Visibility::Internal => "internal",
            Visibility::Public => "public",
        }
    }
}

/// Endpoints of the user's devfile whose explicit `exposure` asks for more
/// than the cap, each named by its path.
pub fn check_exposure(devfile: &Value, cap: Visibility) -> Vec<Finding> {
    let (endpoints, _) = devfile::model::endpoints(devfile);
    endpoints
        .iter()
        .filter_map(|e| {
            let asked = match e.exposure? {
                devfile::model::Exposure::None => Visibility::None,
                devfile::model::Exposure::Internal => Visibility::Internal,
                devfile::model::Exposure::Public => Visibility::Public,
            };
            (asked > cap).then(|| Finding {
                path: e.path.clone(),
                message: format!(
                    "endpoint {:?} asks for exposure {}, above this workspace's maximum visibility {}; allowed: {}",
                    e.name,
                    asked.as_str(),
                    cap.as_str(),
                    allowed_exposures(cap)
                ),
            })
        })
        .collect()
}

fn allowed_exposures(cap: Visibility) -> &'static str {
    match cap {
        Visibility::None | Visibility::Private => "none",
        Visibility::Internal => "none or internal",
        Visibility::Public => "none, internal or public",
    }
}

/// Lowers endpoints without an explicit `exposure` (the devfile's default,
/// public) to the cap, as far as a devfile can say it.
pub fn lower_default_exposure(devfile: &mut Value, cap: Visibility, keep: &[&str]) {
    let lowered = match cap {
        Visibility::Public => return,
        Visibility::Internal | Visibility::Private => "internal",
        Visibility::None => "none",
    };
    let Some(components) = devfile.get_mut("components").and_then(Value::as_array_mut) else {
        return;
    };
    for c in components {
        let Some(endpoints) = c
            .pointer_mut("/container/endpoints")
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for e in endpoints {
            let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
            if keep.contains(&name) {
                continue;
            }
            if let Some(obj) = e.as_object_mut() {
                obj.entry("exposure").or_insert_with(|| json!(lowered));
            }
        }
    }
}

/// A duration as Go's `time.ParseDuration` reads it (`30m`, `1h30m`, `36h`).
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if sec > 0 {
        out += &format!("{sec}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_cpu("2"), Some(2000));
        assert_eq!(parse_cpu("500m"), Some(500));
        assert_eq!(parse_cpu("1.5"), Some(1500));
        assert_eq!(parse_cpu("0.1"), Some(100));
        assert_eq!(parse_cpu("x"), None);
        assert_eq!(parse_cpu("-1"), None);
        assert_eq!(parse_cpu(""), None);
        assert_eq!(parse_memory("1Gi"), Some(1 << 30));
        assert_eq!(parse_memory("512Mi"), Some(512 << 20));
        assert_eq!(parse_memory("1G"), Some(1_000_000_000));
        assert_eq!(parse_memory("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_memory("1000"), Some(1000));
        assert_eq!(parse_memory("99999999999Ei"), None, "overflow is refused");
        assert_eq!(parse_memory("1Xi"), None);
        assert_eq!(memory_text(3 << 30), "3Gi");
        assert_eq!(cpu_text(2500), "2500m");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(go_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(go_duration(Duration::from_secs(36 * 3600)), "36h");
    }

    #[test]
    fn variable_precedence_and_keys() {
        let text = r#"[
            {"key":"A","value":"user","type":"env","source":"user"},
            {"key":"A","value":"project","type":"env","source":"project"},
            {"key":"A","value":"group","type":"env","source":"group"},
            {"key":"A","value":"file-user","type":"file","source":"user"}
        ]"#;
        let v = parse_variables(text).unwrap();
        assert_eq!(v.env["A"], "project");
        assert_eq!(v.file["A"], "file-user");
        for (key, kind) in [
            ("GL_TOKEN", "env"),
            ("1X", "env"),
            ("a/b", "file"),
            ("..", "file"),
            ("a-b", "env"),
            ("workspaced_x", "env"),
        ] {
            let text = format!(
                r#"[{{"key":"{key}","value":"SECRETVALUE","type":"{kind}","source":"user"}}]"#
            );
            let e = parse_variables(&text).unwrap_err();
            assert!(e.contains(key), "{e}");
            assert!(!e.contains("SECRETVALUE"), "{e}");
        }
        let e =
            parse_variables(r#"[{"key":"A","value":5,"type":"env","source":"user"}]"#).unwrap_err();
        assert!(!e.contains('5'), "{e}");
    }

    #[test]
    fn timeouts_only_shorten() {
        let d = |t: &str| crate::yaml::load(t).unwrap();
        let p = Timeouts::default();
        assert!(
            check_timeout_attributes(&d("attributes:\n  workspaced/idle-timeout: 10m\n"), p)
                .is_empty()
        );
        let f = check_timeout_attributes(&d("attributes:\n  workspaced/idle-timeout: 2h\n"), p);
        assert_eq!(f[0].path, "attributes.workspaced/idle-timeout");
        let f = check_timeout_attributes(&d("attributes:\n  workspaced/max-active: soon\n"), p);
        assert_eq!(f[0].path, "attributes.workspaced/max-active");
        let f = check_timeout_attributes(&d("attributes:\n  workspaced/idle-timeout: 0\n"), p);
        assert_eq!(f.len(), 1, "0 (never) is longer than any limit");
    }
}
