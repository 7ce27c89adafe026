//! Bounded reads of HTTP response bodies: every body Warden reads from the network (a backend's
//! answer, a JWKS, a token endpoint's answer) is read through here, never unbounded. A leaf.

use bytes::{Bytes, BytesMut};

/// Why a bounded body read stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("body exceeds the limit")]
    TooLarge,
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// Reads a response body, refusing more than `limit` bytes.
pub async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Bytes, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
