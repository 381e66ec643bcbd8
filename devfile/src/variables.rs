//! Devfile variable substitution: `{{name}}` (spaces inside the braces
//! allowed) in every string and key, as devfile/api does it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Replaces every `{{ name }}` whose name is in the top-level `variables`
/// map, everywhere except the `variables` map itself. References to unknown
/// names are left as written and returned, sorted and deduplicated.
pub fn substitute(devfile: &mut Value) -> Vec<String> {
    let vars: BTreeMap<String, String> = match devfile.get("variables") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let mut unknown = Vec::new();
    if let Value::Object(root) = devfile {
        for (k, v) in root.iter_mut() {
            if k != "variables" {
                walk(v, &vars, &mut unknown);
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    unknown
}

fn walk(v: &mut Value, vars: &BTreeMap<String, String>, unknown: &mut Vec<String>) {
    match v {
        Value::String(s) => *s = replace(s, vars, unknown),
        Value::Array(a) => a.iter_mut().for_each(|x| walk(x, vars, unknown)),
        Value::Object(m) => {
            let old = std::mem::take(m);
            let mut new = Map::new();
            for (k, mut x) in old {
                walk(&mut x, vars, unknown);
                new.insert(replace(&k, vars, unknown), x);
            }
            *m = new;
        }
        _ => {}
    }
}

/// Substitutes the known `{{name}}` references of one string.
pub fn replace(s: &str, vars: &BTreeMap<String, String>, unknown: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let name = rest[start + 2..start + 2 + len].trim();
        out.push_str(&rest[..start]);
        match vars.get(name) {
            Some(val) => out.push_str(val),
            None => {
                unknown.push(name.to_string());
                out.push_str(&rest[start..start + 4 + len]);
            }
        }
        rest = &rest[start + 4 + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn substitutes_values_and_keys_with_spaces() {
        let mut d = json!({
            "variables": {"tag": "xyz", "n": 1},
            "a": ["{{tag}}-{{ n }}", {"{{ tag }}": "{{nope}}"}]
        });
        let unknown = substitute(&mut d);
        assert_eq!(
            d,
            json!({"variables": {"tag": "xyz", "n": 1}, "a": ["xyz-1", {"xyz": "{{nope}}"}]})
        );
        assert_eq!(unknown, vec!["nope".to_string()]);
    }

    #[test]
    fn leaves_unterminated_braces() {
        let vars = BTreeMap::from([("a".to_string(), "b".to_string())]);
        assert_eq!(replace("x {{a", &vars, &mut Vec::new()), "x {{a");
    }
}
