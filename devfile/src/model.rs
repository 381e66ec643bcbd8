//! Typed views of a parsed devfile: the endpoints and the daemon's timeout
//! attributes, each problem a `Finding` named by its path, so the injector's
//! checks and the daemon's start read a devfile the same way.

use std::time::Duration;

use serde_json::Value;

use crate::Finding;

/// An endpoint's declared `exposure`, in the order of PROTOCOL.md's
/// visibilities (`none` < `internal` < `public`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exposure {
    None,
    Internal,
    Public,
}

impl Exposure {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Exposure::None,
            "internal" => Exposure::Internal,
            "public" => Exposure::Public,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Exposure::None => "none",
            Exposure::Internal => "internal",
            Exposure::Public => "public",
        }
    }
}

/// One `components[i].container.endpoints[j]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `components[i].container.endpoints[j]`.
    pub path: String,
    pub component: String,
    pub name: String,
    pub port: u16,
    /// As declared; `None` when absent (the devfile's default, public).
    pub exposure: Option<Exposure>,
}

impl Endpoint {
    /// The declared exposure, absent meaning public.
    pub fn effective_exposure(&self) -> Exposure {
        self.exposure.unwrap_or(Exposure::Public)
    }
}

/// Every well-formed endpoint of a devfile, in order, and a finding for
/// each malformed one (which is left out; the others stay).
pub fn endpoints(devfile: &Value) -> (Vec<Endpoint>, Vec<Finding>) {
    let mut out = Vec::new();
    let mut findings = Vec::new();
    let components = devfile.get("components").and_then(Value::as_array);
    for (i, c) in components.into_iter().flatten().enumerate() {
        let component = c.get("name").and_then(Value::as_str).unwrap_or_default();
        let list = c.pointer("/container/endpoints").and_then(Value::as_array);
        for (j, e) in list.into_iter().flatten().enumerate() {
            let path = format!("components[{i}].container.endpoints[{j}]");
            let mut bad = |field: &str, message: String| {
                findings.push(Finding {
                    path: format!("{path}.{field}"),
                    message,
                });
            };
            let Some(name) = e.get("name").and_then(Value::as_str) else {
                bad("name", "is missing or not a string".into());
                continue;
            };
            let port = e
                .get("targetPort")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p > 0);
            let Some(port) = port else {
                bad(
                    "targetPort",
                    "is missing or not a port; allowed: an integer from 1 to 65535".into(),
                );
                continue;
            };
            let exposure = match e.get("exposure") {
                None => None,
                Some(v) => match v.as_str().and_then(Exposure::parse) {
                    Some(x) => Some(x),
                    None => {
                        bad("exposure", "allowed: public, internal or none".into());
                        continue;
                    }
                },
            };
            out.push(Endpoint {
                path,
                component: component.to_owned(),
                name: name.to_owned(),
                port,
                exposure,
            });
        }
    }
    (out, findings)
}

pub const ATTR_IDLE_TIMEOUT: &str = "workspaced/idle-timeout";
pub const ATTR_MAX_ACTIVE: &str = "workspaced/max-active";

/// What the devfile's top-level `workspaced/*` attributes ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// `Some(ZERO)`: the devfile turns inactivity detection off.
    pub idle_timeout: Option<Duration>,
    pub max_active: Option<Duration>,
}

/// A duration as the daemon reads one: a humantime string (`"30m"`,
/// `"1h30m"`) or whole seconds (a number or a numeric string).
pub fn parse_duration(v: &Value) -> Option<Duration> {
    match v {
        Value::Number(n) => n.as_u64().map(Duration::from_secs),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<u64>() {
                return Some(Duration::from_secs(n));
            }
            humantime::parse_duration(s).ok()
        }
        _ => None,
    }
}

/// The two attributes, or a finding for each malformed one.
pub fn timeouts(devfile: &Value) -> Result<Timeouts, Vec<Finding>> {
    let attrs = devfile.get("attributes");
    let mut out = Timeouts::default();
    let mut findings = Vec::new();
    for (attr, slot) in [
        (ATTR_IDLE_TIMEOUT, &mut out.idle_timeout),
        (ATTR_MAX_ACTIVE, &mut out.max_active),
    ] {
        let Some(v) = attrs.and_then(|a| a.get(attr)) else {
            continue;
        };
        match parse_duration(v) {
            Some(d) => *slot = Some(d),
            None => findings.push(Finding {
                path: format!("attributes.{attr}"),
                message: "is not a duration; allowed: a duration such as \"10m\" or \"1h30m\", or whole seconds".into(),
            }),
        }
    }
    if findings.is_empty() {
        Ok(out)
    } else {
        Err(findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_good_ones_and_name_the_bad() {
        let d = crate::parse(
            "schemaVersion: 2.2.0\nvariables: {svc: web}\ncomponents:\n- name: a\n  container:\n    image: x\n    endpoints:\n    - {name: '{{svc}}', targetPort: 3000}\n    - {name: api, targetPort: 8080, exposure: internal}\n    - {name: bad, targetPort: 70000}\n    - {name: worse, targetPort: 7, exposure: world}\n- name: v\n  volume: {}\n",
        )
        .unwrap();
        let (eps, findings) = endpoints(&d);
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].name, "web", "variables are substituted");
        assert_eq!(eps[0].effective_exposure(), Exposure::Public);
        assert_eq!(eps[1].exposure, Some(Exposure::Internal));
        assert_eq!(eps[1].path, "components[0].container.endpoints[1]");
        let paths: Vec<_> = findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "components[0].container.endpoints[2].targetPort",
                "components[0].container.endpoints[3].exposure"
            ]
        );
    }

    #[test]
    fn timeout_attributes() {
        let d = crate::parse("attributes:\n  workspaced/idle-timeout: '{{t}}'\n  workspaced/max-active: 7200\nvariables: {t: 10m}\n").unwrap();
        let t = timeouts(&d).unwrap();
        assert_eq!(t.idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(t.max_active, Some(Duration::from_secs(7200)));
        let d = crate::parse("attributes:\n  workspaced/idle-timeout: soon\n").unwrap();
        let f = timeouts(&d).unwrap_err();
        assert_eq!(f[0].path, "attributes.workspaced/idle-timeout");
    }
}
