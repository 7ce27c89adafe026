//! A configuration problem, located by its path. A leaf: every stage builds its runtime from its
//! own configuration and reports problems with this type, without importing `config`.

/// A configuration problem, located by its path in the document (`tools[2].http.url`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

/// A configured assertion audience (`audience:` on a tool, server, OpenAPI source or route): 1
/// to 512 visible ASCII characters, usually an origin or an API's identifier URI.
pub fn audience(value: Option<&str>) -> Result<Option<std::sync::Arc<str>>, &'static str> {
    match value {
        None => Ok(None),
        Some(a) if !a.is_empty() && a.len() <= 512 && a.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(std::sync::Arc::from(a))),
        Some(_) => Err("must be 1 to 512 visible ASCII characters (an origin or an API identifier)"),
    }
}
