//! Bounded reading of what a federated server writes: its stdout as JSON-RPC lines, each held
//! only up to a byte bound (a longer one is discarded as it arrives, and only what a streaming
//! scan saw of it is kept: its top-level `id` and its nesting depth), and its stderr as log
//! lines, read in bounded chunks, cut, logged lossily and rate-limited, never ending on bytes
//! that are not UTF-8.
//!
//! Nothing here buffers more than its bound, whatever the server sends.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How much is read from a pipe at a time.
const CHUNK: usize = 64 * 1024;

/// What the streaming scan saw of one line: enough to say which request a line answers, and
/// whether it nests deeper than anyone should parse.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The top-level `id` member's value as raw JSON (a string or a number), if any.
    pub id: Option<Vec<u8>>,
    /// The deepest nesting of arrays and objects seen.
    pub depth: usize,
}

/// A streaming scanner of JSON text: tracks strings, escapes and nesting, and keeps the value of
/// the top-level object's `id` member (up to 256 bytes). Invalid JSON only makes what it finds
/// meaningless, never costs more memory.
#[derive(Debug, Default)]
pub struct Scanner {
    depth: usize,
    max_depth: usize,
    in_string: bool,
    escaped: bool,
    /// At depth 1: a member name is expected next.
    expect_key: bool,
    in_key: bool,
    key: Vec<u8>,
    key_is_id: bool,
    capturing: bool,
    id: Vec<u8>,
    id_done: bool,
}

const ID_MAX: usize = 256;

impl Scanner {
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.in_string {
                if self.capturing && self.id.len() < ID_MAX {
                    self.id.push(b);
                }
                if self.escaped {
                    self.escaped = false;
                    if self.in_key && self.key.len() < 8 {
                        self.key.push(b);
                    }
                    continue;
                }
                match b {
                    b'\\' => self.escaped = true,
                    b'"' => {
                        self.in_string = false;
                        if self.in_key {
                            self.in_key = false;
                            self.key_is_id = self.key == b"id";
                        }
                    }
                    _ if self.in_key && self.key.len() < 8 => self.key.push(b),
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 && self.expect_key {
                        self.in_key = true;
                        self.key.clear();
                    }
                    if self.capturing && self.id.len() < ID_MAX {
                        self.id.push(b);
                    }
                }
                b'{' | b'[' => {
                    if self.capturing && self.depth == 1 {
                        // An id is a string or a number: this one is neither.
                        self.capturing = false;
                        self.id.clear();
                    }
                    self.depth += 1;
                    self.max_depth = self.max_depth.max(self.depth);
                    if self.depth == 1 {
                        self.expect_key = b == b'{';
                    }
                }
                b'}' | b']' => {
                    if self.depth == 1 {
                        self.end_capture();
                    }
                    self.depth = self.depth.saturating_sub(1);
                }
                b':' if self.depth == 1 => {
                    self.expect_key = false;
                    if self.key_is_id && !self.id_done {
                        self.capturing = true;
                        self.id.clear();
                    }
                }
                b',' if self.depth == 1 => {
                    self.end_capture();
                    self.expect_key = true;
                    self.key_is_id = false;
                }
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => {
                    if self.capturing && self.depth == 1 && self.id.len() < ID_MAX {
                        self.id.push(b);
                    }
                }
            }
        }
    }

    fn end_capture(&mut self) {
        if self.capturing {
            self.capturing = false;
            self.id_done = !self.id.is_empty();
        }
    }

    /// What a scan of the whole of `bytes` sees.
    pub fn scan(bytes: &[u8]) -> Scan {
        let mut scanner = Self::default();
        scanner.feed(bytes);
        scanner.finish()
    }

    /// What was seen, and a fresh scanner for the next line.
    pub fn finish(&mut self) -> Scan {
        self.end_capture();
        let scan = Scan { id: self.id_done.then(|| std::mem::take(&mut self.id)), depth: self.max_depth };
        *self = Self::default();
        scan
    }
}

/// One line from a server's stdout.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole line within the bound (without its line ending).
    Line(Vec<u8>, Scan),
    /// A line past the bound, discarded as it arrived.
    TooLong(Scan),
}

/// Lines of at most `max` bytes from `inner`. [`LineReader::next`] is cancel-safe.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
    /// Read but not yet looked at: `buf[start..]`.
    start: usize,
    /// The line so far, in the pieces it came in (joined once, into room made for its whole
    /// length, when it ends: a long line is never doubled into a growing buffer), and its length.
    line: Vec<Vec<u8>>,
    line_len: usize,
    overflow: bool,
    scanner: Scanner,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            buf: Vec::new(),
            start: 0,
            line: Vec::new(),
            line_len: 0,
            overflow: false,
            scanner: Scanner::default(),
            eof: false,
        }
    }

    /// The next non-empty line, or `None` at the end of the stream.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if self.start >= self.buf.len() {
                if self.eof {
                    return Ok(self.take_line());
                }
                // Cancel-safe: rmcp drops a pending receive when it has something else to do,
                // so nothing changes before the read completes (`read_buf` fills the spare
                // capacity and only then sets the length).
                self.buf.clear();
                self.start = 0;
                self.buf.reserve(CHUNK);
                let n = self.inner.read_buf(&mut self.buf).await?;
                if n == 0 {
                    self.eof = true;
                    continue;
                }
            }
            let pending = &self.buf[self.start..];
            let (segment, newline) = match pending.iter().position(|&b| b == b'\n') {
                Some(at) => (&pending[..at], true),
                None => (pending, false),
            };
            self.scanner.feed(segment);
            if !self.overflow {
                if self.line_len + segment.len() > self.max {
                    self.overflow = true;
                    self.line = Vec::new();
                    self.line_len = 0;
                } else if !segment.is_empty() {
                    self.line.push(segment.to_vec());
                    self.line_len += segment.len();
                }
            }
            self.start += segment.len() + usize::from(newline);
            if newline && let Some(frame) = self.take_line() {
                return Ok(Some(frame));
            }
        }
    }

    /// The line gathered so far as a frame (none if it is blank), and a fresh start.
    fn take_line(&mut self) -> Option<Frame> {
        let scan = self.scanner.finish();
        if std::mem::take(&mut self.overflow) {
            return Some(Frame::TooLong(scan));
        }
        let len = std::mem::take(&mut self.line_len);
        // The list of pieces keeps its room for the next line; each piece is freed as soon as
        // it is copied.
        let mut line = if self.line.len() == 1 {
            self.line.pop().unwrap_or_default()
        } else {
            self.line.drain(..).fold(Vec::with_capacity(len), |mut line, piece| {
                line.extend_from_slice(&piece);
                line
            })
        };
        while line.last().is_some_and(|b| b.is_ascii_whitespace()) {
            line.pop();
        }
        (!line.iter().all(u8::is_ascii_whitespace)).then_some(Frame::Line(line, scan))
    }
}

/// Stderr lines are logged up to this many bytes; the rest of a longer line is dropped as it
/// arrives.
pub const STDERR_LINE: usize = 2048;
/// Stderr lines logged per server: a burst, then this many a second.
const STDERR_BURST: f64 = 200.0;
const STDERR_RATE: f64 = 50.0;

/// Logs a server's stderr until it closes: read in chunks, lines split at `\n` or `\r` (progress
/// bars), each cut at [`STDERR_LINE`] bytes, bytes that are not UTF-8 replaced, at most
/// [`STDERR_RATE`] lines a second after a burst (those over are counted and the count logged).
/// It never stops reading before the end: a server whose stderr is not read blocks on it.
pub async fn log_stderr(server: String, mut stderr: impl AsyncRead + Unpin) {
    let mut buf = vec![0u8; CHUNK];
    let mut lines = StderrLines::default();
    let mut limiter = LineLimiter::new();
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        lines.feed(&buf[..n], |line, cut| limiter.log(&server, line, cut));
    }
    lines.finish(|line, cut| limiter.log(&server, line, cut));
    limiter.flush(&server);
}

/// Stderr bytes as log lines: split at `\n` or `\r`, each cut at [`STDERR_LINE`] bytes as it
/// arrives (emitted then, the rest of the line dropped), so nothing longer is ever held.
#[derive(Debug, Default)]
struct StderrLines {
    line: Vec<u8>,
    cut: bool,
}

impl StderrLines {
    /// Feeds bytes; `emit` gets each line (and whether it was cut) as it completes.
    fn feed(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                if !self.cut && !self.line.is_empty() {
                    emit(&self.line, false);
                }
                self.line.clear();
                self.cut = false;
            } else if self.line.len() < STDERR_LINE {
                self.line.push(b);
            } else if !self.cut {
                self.cut = true;
                emit(&self.line, true);
                self.line.clear();
            }
        }
    }

    /// The last line, if the stream ended without a line break.
    fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.cut && !self.line.is_empty() {
            emit(&self.line, false);
        }
        self.line.clear();
    }
}

/// A token bucket for one server's stderr lines.
struct LineLimiter {
    tokens: f64,
    at: Instant,
    dropped: u64,
}

impl LineLimiter {
    fn new() -> Self {
        Self { tokens: STDERR_BURST, at: Instant::now(), dropped: 0 }
    }

    /// Whether a line may be logged at `now` (one token); counts those that may not.
    fn admit(&mut self, now: Instant) -> bool {
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * STDERR_RATE).min(STDERR_BURST);
        self.at = self.at.max(now);
        if self.tokens < 1.0 {
            self.dropped += 1;
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    fn log(&mut self, server: &str, line: &[u8], cut: bool) {
        if !self.admit(Instant::now()) {
            return;
        }
        self.flush(server);
        let text = String::from_utf8_lossy(line);
        if cut {
            tracing::info!(server = %server, stderr_cut = true, "{text}");
        } else {
            tracing::info!(server = %server, "{text}");
        }
    }

    fn flush(&mut self, server: &str) {
        if self.dropped > 0 {
            tracing::warn!(server = %server, dropped = self.dropped, "stderr lines of this server were not logged (over the rate limit)");
            self.dropped = 0;
        }
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
