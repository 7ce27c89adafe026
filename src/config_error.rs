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
