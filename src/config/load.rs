//! Reading a config: `${VAR}` interpolation over string scalars, strict deserialization with
//! the failing path, then validation.

use std::collections::HashMap;
use std::path::Path;

use serde_norway::Value;

use super::Config;
pub use crate::config_error::ConfigError;

/// Where `${VAR}` values come from. Injected so tests never touch the process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Reads, interpolates, parses and validates a config file.
pub fn load_file(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
    let mut config = parse(&text, env)?;
    config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(config)
}

/// Parses and validates config text.
pub fn parse(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut doc: Value = serde_norway::from_str(text).map_err(|e| {
        let at = e.location().map(|l| format!("line {}", l.line())).unwrap_or_default();
        ConfigError::new(if at.is_empty() { "(document)".into() } else { at }, "invalid YAML")
    })?;
    interpolate(&mut doc, &mut String::new(), env)?;
    let config: Config = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "(document)".to_owned() } else { path };
        ConfigError::new(path, e.into_inner().to_string())
    })?;
    config.validate()?;
    Ok(config)
}

/// Replaces `${NAME}` in every string scalar; `$${` stands for a literal `${`. The error
/// names the path and the variable, never a value.
fn interpolate(value: &mut Value, path: &mut String, env: &dyn Env) -> Result<(), ConfigError> {
    match value {
        Value::String(s) => {
            if s.contains('$') {
                *s = substitute(s, env).map_err(|m| ConfigError::new(path.clone(), m))?;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate(item, path, env)?;
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k.as_str().unwrap_or("?"));
                interpolate(v, path, env)?;
                path.truncate(len);
            }
        }
        Value::Tagged(t) => interpolate(&mut t.value, path, env)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

fn substitute(s: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or("unterminated ${ in value")?;
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name in ${{{name}}}"));
            }
            let value = env.var(name).ok_or(format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}
