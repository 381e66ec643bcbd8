//! Devfile endpoints (`components[].container.endpoints[]`): the ports a
//! workspace declares, with their names and exposure. Pure parsing.

use serde::Deserialize;

use crate::config::Visibility;

/// One declared endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub port: u16,
    /// The declared exposure as a starting visibility (absent: public).
    pub visibility: Visibility,
}

#[derive(Deserialize)]
struct Devfile {
    #[serde(default)]
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct Component {
    container: Option<Container>,
}

#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    endpoints: Vec<RawEndpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEndpoint {
    name: String,
    target_port: u32,
    exposure: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DevfileError {
    #[error("the devfile is not valid YAML of the expected shape: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("endpoint {name:?}: targetPort {port} is outside 1..65535")]
    Port { name: String, port: u32 },
    #[error("endpoint {name:?}: exposure {exposure:?} is not public, internal or none")]
    Exposure { name: String, exposure: String },
}

/// The endpoints of a devfile's text, first declaration of a port winning.
pub fn endpoints(text: &str) -> Result<Vec<Endpoint>, DevfileError> {
    let devfile: Devfile = serde_yaml_ng::from_str(text)?;
    let mut out: Vec<Endpoint> = Vec::new();
    for raw in devfile
        .components
        .into_iter()
        .filter_map(|c| c.container)
        .flat_map(|c| c.endpoints)
    {
        let port = u16::try_from(raw.target_port)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| DevfileError::Port {
                name: raw.name.clone(),
                port: raw.target_port,
            })?;
        let visibility = match raw.exposure.as_deref() {
            None | Some("public") => Visibility::Public,
            Some("internal") => Visibility::Internal,
            Some("none") => Visibility::None,
            Some(other) => {
                return Err(DevfileError::Exposure {
                    name: raw.name,
                    exposure: other.to_owned(),
                })
            }
        };
        if !out.iter().any(|e| e.port == port) {
            out.push(Endpoint {
                name: raw.name,
                port,
                visibility,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_with_exposure() {
        let text = r#"
schemaVersion: 2.2.0
metadata: {name: demo}
components:
  - name: tooling
    container:
      image: node:20
      endpoints:
        - name: web
          targetPort: 3000
        - name: api
          targetPort: 8080
          exposure: internal
          protocol: http
        - name: debug
          targetPort: 9229
          exposure: none
  - name: data
    volume: {size: 1Gi}
"#;
        let e = endpoints(text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            Endpoint {
                name: "web".into(),
                port: 3000,
                visibility: Visibility::Public
            }
        );
        assert_eq!(e[1].visibility, Visibility::Internal);
        assert_eq!(e[2].visibility, Visibility::None);
    }

    #[test]
    fn bad_devfiles() {
        let bad_port = "components:\n- name: a\n  container:\n    endpoints:\n    - {name: x, targetPort: 70000}\n";
        assert!(matches!(
            endpoints(bad_port),
            Err(DevfileError::Port { .. })
        ));
        let bad_exp = "components:\n- name: a\n  container:\n    endpoints:\n    - {name: x, targetPort: 7, exposure: world}\n";
        assert!(matches!(
            endpoints(bad_exp),
            Err(DevfileError::Exposure { .. })
        ));
        assert!(endpoints("components: 3").is_err());
        assert!(endpoints("schemaVersion: 2.2.0\n").unwrap().is_empty());
    }
}
