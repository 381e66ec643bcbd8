//! Strict YAML loading into JSON values, and a small YAML writer.
//!
//! Devfiles are parsed with one parser everywhere (check, inject, render) so
//! that no two components disagree about what a file says: YAML tags,
//! anchors, aliases, merge keys, duplicate keys, non-scalar keys and several
//! documents are rejected instead of interpreted (a tagged `!binary parent:`
//! key once slipped a forbidden `parent` past a validator).

use std::fmt::Write as _;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// How deep sequences and mappings may nest: as serde_json and serde_yaml
/// allow. Everything that walks a loaded document (this loader, variable
/// substitution, schema validation, inject, render, the writer, `Drop`)
/// recurses once a level, so the cap here bounds them all; saphyr-parser
/// itself bounds only flow nesting, and block nesting (`- - - x`) not at all.
pub const MAX_DEPTH: usize = 128;

/// Why a YAML text was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

fn err(span: &Span, message: impl Into<String>) -> YamlError {
    YamlError {
        line: span.start.line(),
        message: message.into(),
    }
}

/// Parses one YAML document into a JSON value, refusing every YAML feature
/// that could make two parsers read the same text differently.
pub fn load(text: &str) -> Result<Value, YamlError> {
    let mut events = Vec::new();
    let mut depth = 0usize;
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| YamlError {
            line: e.marker().line(),
            message: format!("invalid YAML: {}", e.info()),
        })?;
        match ev {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(err(
                        &span,
                        format!("the document is nested deeper than {MAX_DEPTH} levels; allowed: at most {MAX_DEPTH}"),
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        events.push((ev, span));
    }
    let mut pos = 0;
    let mut doc = None;
    while pos < events.len() {
        let (ev, span) = &events[pos];
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => pos += 1,
            Event::DocumentStart(_) => {
                if doc.is_some() {
                    return Err(err(
                        span,
                        "more than one YAML document; allowed: exactly one",
                    ));
                }
                pos += 1;
                let (value, next) = node(&events, pos, "")?;
                doc = Some(value);
                pos = next;
            }
            _ => return Err(err(span, "unexpected YAML event")),
        }
    }
    Ok(doc.unwrap_or(Value::Null))
}

fn show(path: &str) -> &str {
    if path.is_empty() {
        "the document root"
    } else {
        path
    }
}

fn check_props(
    span: &Span,
    path: &str,
    anchor: usize,
    tag: Option<&saphyr_parser::Tag>,
    what: &str,
) -> Result<(), YamlError> {
    if anchor != 0 {
        return Err(err(
            span,
            format!(
                "YAML anchor on {what} at {}; anchors, aliases and merge keys are not allowed",
                show(path)
            ),
        ));
    }
    if let Some(tag) = tag {
        let handle = match tag.handle.as_str() {
            "tag:yaml.org,2002:" => "!!",
            h => h,
        };
        return Err(err(
            span,
            format!(
                "YAML tag `{handle}{}` on {what} at {}; tags are not allowed",
                tag.suffix,
                show(path)
            ),
        ));
    }
    Ok(())
}

type Events<'a> = [(Event<'a>, Span)];

fn node(events: &Events<'_>, pos: usize, path: &str) -> Result<(Value, usize), YamlError> {
    let Some((ev, span)) = events.get(pos) else {
        return Err(YamlError {
            line: 0,
            message: "unexpected end of YAML".into(),
        });
    };
    match ev {
        Event::Alias(_) => Err(err(
            span,
            format!(
                "YAML alias at {}; anchors, aliases and merge keys are not allowed",
                show(path)
            ),
        )),
        Event::Scalar(text, style, anchor, tag) => {
            check_props(span, path, *anchor, tag.as_deref(), "a value")?;
            Ok((scalar(text, *style), pos + 1))
        }
        Event::SequenceStart(anchor, tag) => {
            check_props(span, path, *anchor, tag.as_deref(), "a sequence")?;
            let mut items = Vec::new();
            let mut pos = pos + 1;
            loop {
                match events.get(pos) {
                    Some((Event::SequenceEnd, _)) => return Ok((Value::Array(items), pos + 1)),
                    Some(_) => {
                        let (v, next) = node(events, pos, &format!("{path}[{}]", items.len()))?;
                        items.push(v);
                        pos = next;
                    }
                    None => return Err(err(span, "unterminated sequence")),
                }
            }
        }
        Event::MappingStart(anchor, tag) => {
            check_props(span, path, *anchor, tag.as_deref(), "a mapping")?;
            let mut map = Map::new();
            let mut pos = pos + 1;
            loop {
                let Some((ev, kspan)) = events.get(pos) else {
                    return Err(err(span, "unterminated mapping"));
                };
                let key = match ev {
                    Event::MappingEnd => return Ok((Value::Object(map), pos + 1)),
                    Event::Scalar(text, style, anchor, tag) => {
                        let here = if path.is_empty() {
                            format!("key `{text}`")
                        } else {
                            format!("key `{text}` in {path}")
                        };
                        check_props(kspan, path, *anchor, tag.as_deref(), &here)?;
                        if *style == ScalarStyle::Plain && text == "<<" {
                            return Err(err(
                                kspan,
                                format!(
                                    "YAML merge key `<<` in {}; anchors, aliases and merge keys are not allowed",
                                    show(path)
                                ),
                            ));
                        }
                        text.to_string()
                    }
                    Event::Alias(_) => {
                        return Err(err(
                            kspan,
                            format!(
                                "YAML alias as a key in {}; anchors, aliases and merge keys are not allowed",
                                show(path)
                            ),
                        ))
                    }
                    _ => {
                        return Err(err(
                            kspan,
                            format!("non-scalar key in {}; keys must be strings", show(path)),
                        ))
                    }
                };
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if map.contains_key(&key) {
                    return Err(err(
                        kspan,
                        format!(
                            "duplicate key `{key}` in {}; every key may appear once",
                            show(path)
                        ),
                    ));
                }
                let (v, next) = node(events, pos + 1, &child)?;
                map.insert(key, v);
                pos = next;
            }
        }
        _ => Err(err(span, "unexpected YAML event")),
    }
}

/// Resolves a scalar with the YAML 1.2 core schema.
fn scalar(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::String(text.to_string())
        }
        _ => {}
    }
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = digits.parse::<u64>() {
            if !neg {
                return Value::Number(n.into());
            }
            if let Ok(i) = i64::try_from(n) {
                return Value::Number((-i).into());
            }
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(n) = u64::from_str_radix(hex, 16) {
            return Value::Number(n.into());
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(n) = u64::from_str_radix(oct, 8) {
            return Value::Number(n.into());
        }
    }
    let looks_float = digits.bytes().any(|b| b.is_ascii_digit())
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_float {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}

/// Writes a JSON value as block-style YAML that [`load`] reads back to the
/// same value. Strings are double-quoted unless plainly safe.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

/// Several values as a multi-document YAML stream.
pub fn to_multi_doc(values: &[Value]) -> String {
    let mut out = String::new();
    for v in values {
        out.push_str("---\n");
        out.push_str(&to_string(v));
    }
    out
}

fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(m) if m.is_empty() => "{}".into(),
        _ => unreachable!("inline called on a non-empty collection"),
    }
}

fn string(s: &str) -> String {
    let plain_safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !s.starts_with(['-', '.'])
        && scalar(s, ScalarStyle::Plain) == Value::String(s.to_string());
    if plain_safe {
        s.to_string()
    } else {
        // A JSON string literal is a valid YAML double-quoted scalar.
        serde_json::to_string(s).expect("a string always serializes")
    }
}

/// YAML allows an implicit key (`key: value`) of at most 1024 characters;
/// a longer one is written as an explicit key (`? key`, then `: value`).
const IMPLICIT_KEY_MAX: usize = 1000;

fn write_map(out: &mut String, m: &Map<String, Value>, indent: usize) {
    for (k, v) in m {
        let pad = " ".repeat(indent);
        let mut key = string(k);
        if key.chars().count() > IMPLICIT_KEY_MAX {
            // The key on its own line; the value after a bare `:`.
            let _ = writeln!(out, "{pad}? {key}");
            key.clear();
        }
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                let _ = writeln!(out, "{pad}{key}:");
                write_map(out, inner, indent + 2);
            }
            Value::Array(inner) if !inner.is_empty() => {
                let _ = writeln!(out, "{pad}{key}:");
                write_seq(out, inner, indent + 2);
            }
            other => {
                let _ = writeln!(out, "{pad}{key}: {}", inline(other));
            }
        }
    }
}

fn write_seq(out: &mut String, a: &[Value], indent: usize) {
    let pad = " ".repeat(indent);
    for v in a {
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                // First entry on the dash line, the rest indented under it.
                let mut sub = String::new();
                write_map(&mut sub, inner, indent + 2);
                let sub = sub.trim_start();
                let _ = write!(out, "{pad}- {sub}");
            }
            Value::Array(inner) if !inner.is_empty() => {
                let _ = writeln!(out, "{pad}-");
                write_seq(out, inner, indent + 2);
            }
            other => {
                let _ = writeln!(out, "{pad}- {}", inline(other));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn loads_core_schema_scalars() {
        let v = load("a: 1\nb: true\nc: ~\nd: '1'\ne: 1.5\nf: x y\ng: -3\n").unwrap();
        assert_eq!(
            v,
            json!({"a": 1, "b": true, "c": null, "d": "1", "e": 1.5, "f": "x y", "g": -3})
        );
    }

    #[test]
    fn rejects_tagged_key() {
        let e = load("schemaVersion: 2.2.0\n!binary parent:\n  id: x\n").unwrap_err();
        assert!(e.message.contains("YAML tag `!binary`"), "{e}");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn rejects_tagged_value_anchor_alias_merge() {
        assert!(load("a: !!str 1\n").unwrap_err().message.contains("tag"));
        assert!(load("a: &x 1\nb: *x\n")
            .unwrap_err()
            .message
            .contains("anchor"));
        let e = load("base: {a: 1}\nc:\n  <<: {a: 2}\n").unwrap_err();
        assert!(e.message.contains("merge key"), "{e}");
    }

    #[test]
    fn rejects_duplicate_keys_with_path() {
        let e = load("components:\n  - name: a\n    name: b\n").unwrap_err();
        assert_eq!(
            e.message,
            "duplicate key `name` in components[0]; every key may appear once"
        );
        assert_eq!(e.line, 3);
    }

    #[test]
    fn rejects_several_documents() {
        assert!(load("a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn writer_round_trips() {
        let v = json!({
            "a": "1", "b": 1, "c": [ {"x": "y: z", "n": null}, [1, 2], "-dash" ],
            "d": {}, "e": [], "f": "true", "g": "multi\nline", "h": {"i": {"j": "k"}},
            "{{tag}}": "#x", "": "empty"
        });
        assert_eq!(load(&to_string(&v)).unwrap(), v);
    }

    /// Found by the `yaml` fuzz target: a key that writes longer than
    /// YAML's 1024-character limit for implicit keys (here control
    /// characters, six characters each when escaped) must still load back.
    #[test]
    fn writer_round_trips_keys_past_the_implicit_key_limit() {
        let long = "\u{1d}".repeat(300);
        let plain = "k".repeat(2000);
        let v = json!({
            long.clone(): "x",
            plain.clone(): {"inner": [1, {long.clone(): null}]},
            "list": [{plain.clone(): [1, 2], "after": "y"}],
            "short": "z"
        });
        let text = to_string(&v);
        assert!(text.contains(&format!("? {plain}\n")), "{text}");
        assert_eq!(load(&text).unwrap(), v);
    }
}
