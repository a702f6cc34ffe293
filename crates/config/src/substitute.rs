//! `${VAR}` substitution in string values, after YAML parsing.
//!
//! `$$` stands for a literal `$`. A variable that is not set is an error that
//! names the key, never an empty string: an empty password would fail later
//! with a far less helpful message.

use crate::ConfigError;
use serde_yaml_ng::Value;

pub(crate) fn substitute(
    value: &mut Value,
    path: &mut Vec<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = expand(s, env).map_err(|m| ConfigError::new(format!("{}: {m}", show(path))))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                substitute(item, path, env)?;
                path.pop();
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                path.push(match k {
                    Value::String(s) => s.clone(),
                    other => format!("{other:?}"),
                });
                substitute(v, path, env)?;
                path.pop();
            }
        }
        Value::Tagged(t) => substitute(&mut t.value, path, env)?,
        _ => {}
    }
    Ok(())
}

fn show(path: &[String]) -> String {
    let mut out = String::new();
    for p in path {
        if !p.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(p);
    }
    out
}

fn expand(s: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("`${{` without a closing `}}` in `{s}`"))?;
            let name = &body[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("`${{{name}}}` is not a valid environment variable name"));
            }
            let v = env(name).ok_or_else(|| {
                format!("environment variable {name} is not set (referenced as ${{{name}}}); set it or write the value")
            })?;
            out.push_str(&v);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(k: &str) -> Option<String> {
        match k {
            "PGPASSWORD" => Some("p@ss:w#rd".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_braced_variables_and_escapes() {
        assert_eq!(expand("postgres://u:${PGPASSWORD}@h/db", &env).unwrap(), "postgres://u:p@ss:w#rd@h/db");
        assert_eq!(expand("a$$b", &env).unwrap(), "a$b");
        assert_eq!(expand("cost $5", &env).unwrap(), "cost $5");
        assert_eq!(expand("x${EMPTY}y", &env).unwrap(), "xy");
    }

    #[test]
    fn missing_and_malformed_variables_are_errors() {
        assert!(expand("${NOPE}", &env).unwrap_err().contains("NOPE is not set"));
        assert!(expand("${1X}", &env).unwrap_err().contains("not a valid"));
        assert!(expand("${OPEN", &env).unwrap_err().contains("without a closing"));
    }
}
