//! Where encoded records go: standard output and error, and files that rotate by size and age.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::config::FileSinkConfig;

/// Where encoded records go: one batch of JSON lines at a time, on the writer thread only. A
/// new destination (a database, a webhook, a SIEM) is a new `Sink`; the stages never see it.
pub trait Sink: Send + 'static {
    /// Writes whole lines; a batch is never split between two calls.
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()>;
    /// Makes what was written durable as far as this sink can.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct Stdout;
pub struct Stderr;

impl Sink for Stdout {
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        std::io::stdout().lock().write_all(lines)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

impl Sink for Stderr {
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(lines)
    }
}

/// A file appended to, rotated (`PATH` → `PATH.1` → `PATH.2` …, at most `keep` kept) before a
/// batch would take it past `max_bytes`, or once it is older than `max_age`.
pub struct RotatingFile {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    opened: SystemTime,
    max_bytes: Option<u64>,
    max_age: Option<Duration>,
    keep: usize,
}

impl RotatingFile {
    /// Opens `config.path` for appending. A last line left unfinished by a crash is cut off (it
    /// was never acknowledged as written), so the file ends on a whole record. Returns the file
    /// and its last whole line, where the chain resumes.
    pub fn open(config: &FileSinkConfig, path: PathBuf) -> std::io::Result<(Self, Option<String>)> {
        let mut file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let last = last_whole_line(&mut file)?;
        let size = file.metadata()?.len();
        let opened = file.metadata().and_then(|m| m.created().or_else(|_| m.modified())).unwrap_or_else(|_| SystemTime::now());
        let sink = Self { path, file, size, opened, max_bytes: config.max_bytes, max_age: config.max_age, keep: config.keep };
        Ok((sink, last))
    }

    fn rotated(path: &Path, n: usize) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(Self::rotated(&self.path, self.keep));
            for n in (1..self.keep).rev() {
                let from = Self::rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, Self::rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, Self::rotated(&self.path, 1))?;
        }
        self.file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&self.path)?;
        self.size = 0;
        self.opened = SystemTime::now();
        Ok(())
    }

    fn due(&self, adding: u64) -> bool {
        self.size > 0
            && (self.max_bytes.is_some_and(|max| self.size + adding > max)
                || self.max_age.is_some_and(|age| self.opened.elapsed().is_ok_and(|e| e >= age)))
    }
}

impl Sink for RotatingFile {
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        let adding = u64::try_from(lines.len()).unwrap_or(u64::MAX);
        if self.due(adding) {
            self.rotate()?;
        }
        self.file.write_all(lines)?;
        self.size += adding;
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// The file's last whole line; an unfinished one after it is cut off.
fn last_whole_line(file: &mut std::fs::File) -> std::io::Result<Option<String>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    // Records are a few hundred bytes (fields are bounded); read back far enough for several.
    let window = len.min(256 * 1024);
    file.seek(SeekFrom::Start(len - window))?;
    let mut tail = Vec::with_capacity(usize::try_from(window).unwrap_or(0));
    file.read_to_end(&mut tail)?;
    let Some(end) = tail.iter().rposition(|b| *b == b'\n') else {
        // No whole line in the window: a file of one unfinished line, or lines longer than the
        // window (not Warden's). Leave it as it is; a new chain starts.
        return Ok(None);
    };
    if end + 1 < tail.len() {
        let keep = len - window + u64::try_from(end + 1).unwrap_or(0);
        tracing::warn!(bytes = len - keep, "the audit file ended in an unfinished record (a crash mid-write); cut off");
        file.set_len(keep)?;
    }
    let start = tail[..end].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    Ok(Some(String::from_utf8_lossy(&tail[start..end]).into_owned()))
}

/// Records into the vault's database (`audit_records`), a batch per transaction. The writer
/// thread is not a runtime thread: the sink runs its own single-threaded runtime, made on first
/// use (on the writer thread), to drive the database client.
pub struct DatabaseSink {
    url: String,
    keys: std::sync::Arc<crate::store::envelope::KeyRing>,
    runtime: Option<tokio::runtime::Runtime>,
    store: Option<crate::store::Store>,
}

/// How long one batch may take to reach the database before the write counts as failed.
const DATABASE_WRITE: Duration = Duration::from_secs(5);

impl DatabaseSink {
    pub fn new(url: String, keys: std::sync::Arc<crate::store::envelope::KeyRing>) -> Self {
        Self { url, keys, runtime: None, store: None }
    }

    fn rows(lines: &[u8]) -> Vec<crate::store::audit::AuditRow> {
        let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
        lines
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|line| {
                let v: serde_json::Value = serde_json::from_slice(line).ok()?;
                Some(crate::store::audit::AuditRow {
                    chain: text(&v, "chain")?,
                    seq: v.get("seq")?.as_i64()?,
                    id: text(&v, "id").unwrap_or_default(),
                    ts: text(&v, "ts").unwrap_or_default(),
                    kind: text(&v, "kind").unwrap_or_else(|| "event".into()),
                    subject: text(&v, "subject"),
                    issuer: text(&v, "issuer"),
                    tenant: text(&v, "tenant"),
                    client_id: text(&v, "client_id"),
                    method: text(&v, "method"),
                    tool: text(&v, "tool"),
                    server: text(&v, "server"),
                    decision: text(&v, "decision"),
                    reason: text(&v, "reason"),
                    record: String::from_utf8_lossy(line).into_owned(),
                })
            })
            .collect()
    }
}

impl Sink for DatabaseSink {
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        let rows = Self::rows(lines);
        if self.runtime.is_none() {
            self.runtime = Some(tokio::runtime::Builder::new_current_thread().enable_all().build()?);
        }
        let Some(runtime) = &self.runtime else { return Ok(()) };
        let (url, keys, store) = (&self.url, &self.keys, &mut self.store);
        runtime.block_on(async {
            let written = tokio::time::timeout(DATABASE_WRITE, async {
                if store.is_none() {
                    *store = Some(crate::store::Store::open(url, std::sync::Arc::clone(keys)).await?);
                }
                match store {
                    Some(s) => s.insert_audit(&rows).await,
                    None => Ok(()),
                }
            })
            .await;
            match written {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
                Err(_) => Err(std::io::Error::other("the audit database did not answer in time")),
            }
        })
    }
}

impl super::webhook::Deliver for DatabaseSink {
    fn deliver(&mut self, lines: &[u8]) -> Result<(), super::webhook::Failure> {
        self.write(lines).map_err(|e| {
            // The store's error may be long; the next attempt opens the pool again.
            self.store = None;
            super::webhook::Failure::Retry(e.to_string())
        })
    }
}
