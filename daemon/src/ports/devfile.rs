//! Devfile endpoints (`components[].container.endpoints[]`): the ports a
//! workspace declares, with their names and exposure. Pure parsing.

use crate::config::Visibility;

/// One declared endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub port: u16,
    /// The declared exposure as a starting visibility (absent: public).
    pub visibility: Visibility,
}

#[derive(Debug, thiserror::Error)]
pub enum DevfileError {
    #[error("{0}")]
    Parse(String),
}

/// The endpoints of a devfile's text (read as the injector reads it: strict
/// YAML, `{{var}}` substituted), first declaration of a port winning, and a
/// line for each malformed endpoint, which is left out alone.
pub fn endpoints(text: &str) -> Result<(Vec<Endpoint>, Vec<String>), DevfileError> {
    let value = devfile::parse(text).map_err(|findings| {
        DevfileError::Parse(
            findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let (declared, findings) = devfile::model::endpoints(&value);
    let mut out: Vec<Endpoint> = Vec::new();
    for e in declared {
        let visibility = match e.effective_exposure() {
            devfile::model::Exposure::Public => Visibility::Public,
            devfile::model::Exposure::Internal => Visibility::Internal,
            devfile::model::Exposure::None => Visibility::None,
        };
        if !out.iter().any(|o| o.port == e.port) {
            out.push(Endpoint {
                name: e.name,
                port: e.port,
                visibility,
            });
        }
    }
    Ok((out, findings.iter().map(ToString::to_string).collect()))
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
        let (e, warnings) = endpoints(text).unwrap();
        assert!(warnings.is_empty());
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
        // One bad endpoint costs only itself.
        let text = "components:\n- name: a\n  container:\n    image: x\n    endpoints:\n    - {name: x, targetPort: 70000}\n    - {name: y, targetPort: 7, exposure: world}\n    - {name: z, targetPort: 8}\n";
        let (e, warnings) = endpoints(text).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].name, "z");
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("components[0].container.endpoints[0].targetPort"));
        // Variables are substituted as the injector does.
        let text = "variables: {svc: web}\ncomponents:\n- name: a\n  container:\n    image: x\n    endpoints:\n    - {name: '{{svc}}', targetPort: 3000}\n";
        assert_eq!(endpoints(text).unwrap().0[0].name, "web");
        // What the strict loader refuses is refused whole.
        assert!(endpoints("components: [\n").is_err());
        assert!(endpoints("a: 1\na: 2\n").is_err(), "duplicate keys");
        assert!(endpoints("!binary a: 1\n").is_err(), "tags");
        assert!(endpoints("schemaVersion: 2.2.0\n").unwrap().0.is_empty());
    }
}
