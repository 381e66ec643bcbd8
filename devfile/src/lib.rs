//! Devfiles as both programs read them: strict loading (`yaml`), the 3 MB
//! cap, `{{var}}` substitution, typed endpoints and attributes (`model`), the
//! platform's restrictions (`rules`) and, with the `schema` feature, JSON
//! Schema validation against devfile/api's schemas.

pub mod model;
pub mod rules;
#[cfg(feature = "schema")]
pub mod schema;
pub mod variables;
pub mod yaml;

use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

/// Devfiles larger than this are refused before they are parsed.
pub const MAX_DEVFILE_BYTES: u64 = 3 * 1024 * 1024;

/// One problem found in a devfile: the field by path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `components[2].container.endpoints[0].targetPort`; empty for the file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// How strictly a devfile is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The platform's restrictions plus the 2.2.x schema.
    Gitlab,
    /// Any devfile valid against the schema of its declared version.
    Relaxed,
}

/// Reads a devfile, refusing oversized files, and parses it strictly.
/// Problems with the content are findings; I/O problems are errors.
pub fn read(path: &Path) -> anyhow::Result<Result<Value, Vec<Finding>>> {
    let meta = std::fs::metadata(path).with_context(|| format!("read {}", path.display()))?;
    if meta.len() > MAX_DEVFILE_BYTES {
        return Ok(Err(vec![Finding {
            path: String::new(),
            message: format!(
                "the devfile is {} bytes; allowed: at most 3 MB ({MAX_DEVFILE_BYTES} bytes)",
                meta.len()
            ),
        }]));
    }
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(Err(vec![Finding {
            path: String::new(),
            message: "the devfile is not valid UTF-8".into(),
        }]));
    };
    Ok(parse(&text))
}

/// Parses a devfile's text strictly and substitutes its variables.
pub fn parse(text: &str) -> Result<Value, Vec<Finding>> {
    let mut value = crate::yaml::load(text).map_err(|e| {
        vec![Finding {
            path: String::new(),
            message: e.to_string(),
        }]
    })?;
    variables::substitute(&mut value);
    Ok(value)
}

/// Every problem of a parsed devfile in the given mode; empty when it passes.
#[cfg(feature = "schema")]
pub fn check(devfile: &Value, mode: Mode) -> Vec<Finding> {
    let mut findings = Vec::new();
    if mode == Mode::Gitlab {
        findings.extend(rules::check(devfile));
    }
    let version = devfile.get("schemaVersion").and_then(Value::as_str);
    match (mode, version.and_then(schema::for_version)) {
        (_, Some(schema)) => {
            if mode == Mode::Relaxed || version.is_some_and(rules::is_supported_version) {
                findings.extend(schema::validate(schema, devfile));
            }
        }
        (Mode::Relaxed, None) => findings.push(Finding {
            path: "schemaVersion".into(),
            message: match version {
                Some(v) => {
                    format!("version {v} has no known schema; allowed: 2.0.x, 2.1.x, 2.2.x, 2.3.x")
                }
                None => "is missing or not a string; allowed: 2.0.x, 2.1.x, 2.2.x, 2.3.x".into(),
            },
        }),
        (Mode::Gitlab, None) => {} // the rules already said so
    }
    findings
}
