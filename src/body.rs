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
    let mut gathered = Gathered::new(response.content_length().unwrap_or(0), limit)?;
    while let Some(chunk) = response.chunk().await? {
        gathered.push(&chunk)?;
    }
    Ok(gathered.buf.freeze())
}

/// Reads a body of hyper's client (the lean upstream client), refusing more than `limit` bytes.
pub async fn read_body_limited<B>(mut body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let mut gathered = Gathered::new(body.size_hint().lower(), limit)?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Body(e.into()))?;
        if let Ok(chunk) = frame.into_data() {
            gathered.push(&chunk)?;
        }
    }
    Ok(gathered.buf.freeze())
}

/// A body's bytes gathered within a limit: a declared length over it is refused before reading,
/// and room for a declared length is made once, not doubled into (which held up to twice the
/// body).
struct Gathered {
    buf: BytesMut,
    limit: usize,
}

impl Gathered {
    fn new(declared: u64, limit: usize) -> Result<Self, ReadError> {
        if declared > limit as u64 {
            return Err(ReadError::TooLarge);
        }
        Ok(Self { buf: BytesMut::with_capacity(usize::try_from(declared).unwrap_or(0)), limit })
    }

    fn push(&mut self, chunk: &[u8]) -> Result<(), ReadError> {
        if self.buf.len() + chunk.len() > self.limit {
            return Err(ReadError::TooLarge);
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }
}
