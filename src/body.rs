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
    /// Reading a body of hyper's client failed.
    #[error("reading the body failed: {0}")]
    Body(Box<dyn std::error::Error + Send + Sync>),
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

/// Reads a body of hyper's client (the lean upstream client), refusing more than `limit`
/// bytes (a declared length over it at once, before reading).
pub async fn read_body_limited<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let declared = body.size_hint().lower();
    if declared > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let mut body = body;
    // A declared length is room made once, not doubled into (which held up to twice the body).
    let mut buf = BytesMut::with_capacity(usize::try_from(declared).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Body(e.into()))?;
        let Ok(chunk) = frame.into_data() else { continue };
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
