//! The devfile JSON schemas (devfile/api, embedded) and validation against
//! the one matching a devfile's declared `schemaVersion`.

use std::sync::OnceLock;

use serde_json::Value;

use super::Finding;

/// One embedded schema, compiled on first use.
pub struct Schema {
    pub version: &'static str,
    text: &'static str,
    compiled: OnceLock<jsonschema::Validator>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schema({})", self.version)
    }
}

macro_rules! schema {
    ($v:literal, $file:literal) => {
        Schema {
            version: $v,
            text: include_str!(concat!("../schemas/", $file)),
            compiled: OnceLock::new(),
        }
    };
}

static SCHEMAS: [Schema; 6] = [
    schema!("2.0.0", "devfile-2.0.json"),
    schema!("2.1.0", "devfile-2.1.json"),
    schema!("2.2.0", "devfile-2.2.json"),
    schema!("2.2.1", "devfile-2.2.1.json"),
    schema!("2.2.2", "devfile-2.2.2.json"),
    schema!("2.3.0", "devfile-2.3.json"),
];

/// The schema for a declared version: the exact patch release when embedded,
/// else the newest one of the same minor version. A semver pre-release or
/// build suffix (`2.2.0-latest`, `2.3.0-alpha.1`, `2.2.1+build`) names the
/// release it precedes, as the devfile library reads it.
pub fn for_version(version: &str) -> Option<&'static Schema> {
    let core = release_of(version)?;
    let mut parts = core.split('.');
    let (major, minor, patch) = (parts.next()?, parts.next()?, parts.next()?);
    let number = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || !number(major) || !number(minor) || !number(patch) {
        return None;
    }
    let prefix = format!("{major}.{minor}.");
    SCHEMAS.iter().find(|s| s.version == core).or_else(|| {
        SCHEMAS
            .iter()
            .rev()
            .find(|s| s.version.starts_with(&prefix))
    })
}

/// `2.2.0` of `2.2.0-latest+b1`: the suffixes checked against the schemas'
/// own `schemaVersion` pattern (dot-separated identifiers, lowercase in
/// the pre-release part), so a version the schema refuses names no schema.
fn release_of(version: &str) -> Option<&str> {
    let (rest, build) = match version.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let idents =
        |s: &str, ok: fn(u8) -> bool| s.split('.').all(|i| !i.is_empty() && i.bytes().all(ok));
    let pre_ok = |b: u8| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-';
    let build_ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    if pre.is_some_and(|p| !idents(p, pre_ok)) || build.is_some_and(|b| !idents(b, build_ok)) {
        return None;
    }
    Some(core)
}

impl Schema {
    fn validator(&self) -> &jsonschema::Validator {
        self.compiled.get_or_init(|| {
            let schema: Value = serde_json::from_str(self.text).expect("embedded schema is JSON");
            jsonschema::draft7::new(&schema).expect("embedded schema compiles")
        })
    }
}

/// Schema violations, each with the field path in devfile notation.
pub fn validate(schema: &Schema, instance: &Value) -> Vec<Finding> {
    let mut out: Vec<Finding> = schema
        .validator()
        .iter_errors(instance)
        .map(|e| Finding {
            path: dotted_path(instance, &e.instance_path().to_string()),
            message: format!("{e} (devfile schema {})", schema.version),
        })
        .collect();
    out.dedup();
    out
}

/// Turns a JSON pointer into `components[2].container.image`, using the
/// instance to tell list indexes from keys that look like numbers.
pub fn dotted_path(instance: &Value, pointer: &str) -> String {
    let mut out = String::new();
    let mut node = Some(instance);
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        match node {
            Some(Value::Array(a)) => {
                out.push_str(&format!("[{seg}]"));
                node = seg.parse::<usize>().ok().and_then(|i| a.get(i));
            }
            other => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&seg);
                node = other.and_then(|v| v.get(&seg));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_schema_by_version() {
        assert_eq!(for_version("2.2.0").unwrap().version, "2.2.0");
        assert_eq!(for_version("2.2.7").unwrap().version, "2.2.2");
        assert_eq!(for_version("2.1.0").unwrap().version, "2.1.0");
        assert!(for_version("3.0.0").is_none());
        assert!(for_version("2.2").is_none());
        // Pre-releases and builds of a known minor version.
        assert_eq!(for_version("2.2.0-latest").unwrap().version, "2.2.0");
        assert_eq!(for_version("2.3.0-alpha").unwrap().version, "2.3.0");
        assert_eq!(for_version("2.2.1-rc.1+b-7").unwrap().version, "2.2.1");
        assert_eq!(for_version("2.2.9-next").unwrap().version, "2.2.2");
        assert!(for_version("2.4.0-alpha").is_none());
        assert!(for_version("2.2.0-").is_none());
        assert!(for_version("2.2.0-Latest").is_none());
        assert!(for_version("2.2.0-a..b").is_none());
        assert!(for_version("2.2.0+").is_none());
        assert!(for_version("x.2.0").is_none());
    }

    #[test]
    fn paths_in_devfile_notation() {
        let v =
            json!({"components": [{"a": 1}, {"container": {"endpoints": [{"targetPort": "x"}]}}]});
        assert_eq!(
            dotted_path(&v, "/components/1/container/endpoints/0/targetPort"),
            "components[1].container.endpoints[0].targetPort"
        );
    }

    #[test]
    fn reports_a_bad_type() {
        let v = json!({"schemaVersion": "2.2.0", "components": [{"name": "a", "container": {"image": 5}}]});
        let f = validate(for_version("2.2.0").unwrap(), &v);
        assert!(
            f.iter().any(|f| f.path == "components[0].container.image"),
            "{f:?}"
        );
    }
}
