//! The writer thread: takes what is queued, links it into the chain, encodes it, and writes it
//! to every sink, directly (files, stdout) or into a sink's spool (webhook, database), with a
//! bounded memory backlog for a failing sink and `on_failure` deciding when even that is full.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use super::config::{Format, OnFailure};
use super::sinks::Sink;
use super::spool::Spool;
use super::{Message, chain, ocsf};

/// Where one sink's records go from the writer thread: straight to the sink (a file, stdout),
/// or into its spool, from which a delivery thread takes them (a webhook, the database).
pub(super) enum Lane {
    Direct(Box<dyn Sink>),
    Spooled(Arc<Spool>),
}

/// One sink as the writer sees it.
pub(super) struct Out {
    pub(super) lane: Lane,
    pub(super) format: Format,
    /// Lines a write failed to take, kept in memory (in order) and retried first.
    pub(super) backlog: Vec<u8>,
    pub(super) name: String,
}

/// The most a sink's memory backlog holds before `on_failure` decides.
pub(super) const BACKLOG_MAX: usize = 4 << 20;

/// The writer thread: takes what is queued, links it into the chain, encodes it, writes it to
/// every sink in one call per batch, and writes checkpoints when due.
/// What the writer thread owns.
pub(super) struct Writer {
    pub(super) outs: Vec<Out>,
    pub(super) chain: chain::Chain,
    pub(super) metrics: Option<Arc<crate::telemetry::Metrics>>,
    pub(super) healthy: Arc<AtomicBool>,
    pub(super) backlogged: Arc<AtomicBool>,
    pub(super) on_failure: OnFailure,
    pub(super) spools: Vec<Arc<Spool>>,
}

pub(super) fn write_events(writer: Writer, events: std::sync::mpsc::Receiver<Message>) {
    let Writer { mut outs, mut chain, metrics, healthy, backlogged, on_failure, spools } = writer;
    // However the thread ends, it is no longer healthy, and no more records reach the spools.
    struct Gone(Arc<AtomicBool>, Vec<Arc<Spool>>);
    impl Drop for Gone {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Relaxed);
            for spool in &self.1 {
                spool.sync();
                spool.close();
            }
        }
    }
    let _gone = Gone(Arc::clone(&healthy), spools);
    use std::sync::mpsc::RecvTimeoutError;
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut acks = Vec::new();
    let ctx = WriteCtx { on_failure, metrics: metrics.as_deref() };
    loop {
        // While a checkpoint is pending, wake for its interval even if no event comes; while a
        // sink has a backlog, wake to retry it.
        let retry = outs.iter().any(|o| !o.backlog.is_empty()).then_some(BACKLOG_RETRY);
        let wait = match (chain.checkpoint_wait(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let first = match wait {
            Some(wait) => match events.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match events.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            },
        };
        let mut next = first;
        let mut count = 0usize;
        let mut taken = 0i64;
        // Drain what is already queued (bounded, so a flood still gets written in pieces).
        while let Some(message) = next.take() {
            count += 1;
            match message {
                Message::Event(at, mut event) => {
                    taken += 1;
                    event.ts = humantime::format_rfc3339_millis(at).to_string();
                    event.bound_fields();
                    if let Ok(serde_json::Value::Object(mut record)) = serde_json::to_value(&*event) {
                        record.insert("id".into(), serde_json::Value::String(uuid::Uuid::now_v7().to_string()));
                        chain.link(record, &mut batch);
                    }
                }
                Message::Flush(done) => acks.push(done),
            }
            if batch.len() < 1 << 20 {
                next = events.try_recv().ok();
            }
        }
        if chain.checkpoint_due(!acks.is_empty()) {
            chain.checkpoint(humantime::format_rfc3339_millis(SystemTime::now()).to_string(), &mut batch);
        }
        let records = u64::try_from(batch.iter().filter(|b| **b == b'\n').count()).unwrap_or(0);
        let failures = write_all(&mut outs, &mut batch, &ctx);
        healthy.store(failures == 0, Ordering::Relaxed);
        backlogged.store(outs.iter().any(|o| o.backlog.len() >= BACKLOG_MAX), Ordering::Relaxed);
        if let Some(metrics) = &metrics {
            metrics.audit_written(taken, records, failures);
        }
        if !acks.is_empty() {
            for out in &mut outs {
                match &mut out.lane {
                    Lane::Direct(sink) => {
                        if let Err(e) = sink.flush() {
                            tracing::error!(sink = %out.name, error = %e, "an audit sink could not be flushed");
                        }
                    }
                    Lane::Spooled(spool) => spool.sync(),
                }
            }
            for done in acks.drain(..) {
                let _ = done.send(());
            }
        }
        // Busy: let events gather for a moment, so that one wake-up and one `write` serve many
        // requests (waking this thread for every event cost more CPU than writing the event).
        // Quiet: the thread sleeps in `recv` and costs nothing.
        if count > 1 {
            std::thread::sleep(GATHER);
        }
    }
    // Every handle is gone: close the chain with a last checkpoint.
    if chain.checkpoint_due(true) {
        chain.checkpoint(humantime::format_rfc3339_millis(SystemTime::now()).to_string(), &mut batch);
    }
    write_all(&mut outs, &mut batch, &ctx);
    for out in &mut outs {
        if let Lane::Direct(sink) = &mut out.lane {
            let _ = sink.flush();
        }
    }
}

/// How often a sink with a backlog is retried while no events come.
const BACKLOG_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

pub(super) struct WriteCtx<'a> {
    pub(super) on_failure: OnFailure,
    pub(super) metrics: Option<&'a crate::telemetry::Metrics>,
}

/// Writes the batch to every sink, in its format, behind whatever that sink has in backlog;
/// returns how many sinks failed.
pub(super) fn write_all(outs: &mut [Out], batch: &mut Vec<u8>, ctx: &WriteCtx<'_>) -> u64 {
    let mut failures = 0;
    let mut ocsf = Vec::new();
    if !batch.is_empty() && outs.iter().any(|o| o.format == Format::Ocsf) {
        ocsf::batch(batch, &mut ocsf);
    }
    for out in outs.iter_mut() {
        let lines = match out.format {
            Format::Json => &batch[..],
            Format::Ocsf => &ocsf[..],
        };
        if !out.write(lines, ctx) {
            failures += 1;
        }
    }
    batch.clear();
    failures
}

impl Out {
    /// Writes `lines` after the backlog; what the sink does not take joins the backlog, up to
    /// [`BACKLOG_MAX`]; past that, `block` retries until it goes through and `refuse` drops it
    /// (counted; the gate is refusing new requests by then). Returns whether all was written.
    pub(super) fn write(&mut self, lines: &[u8], ctx: &WriteCtx<'_>) -> bool {
        if !self.backlog.is_empty() {
            let backlog = std::mem::take(&mut self.backlog);
            if self.try_write(&backlog, ctx).is_err() {
                self.backlog = backlog;
            }
        }
        if lines.is_empty() {
            return self.backlog.is_empty();
        }
        if self.backlog.is_empty() {
            match self.try_write(lines, ctx) {
                Ok(()) => return true,
                Err(e) => tracing::error!(sink = %self.name, error = %e, "audit records could not be written; kept to retry"),
            }
        }
        if self.backlog.len() + lines.len() <= BACKLOG_MAX {
            self.backlog.extend_from_slice(lines);
            return false;
        }
        match ctx.on_failure {
            OnFailure::Block => {
                self.backlog.extend_from_slice(lines);
                let backlog = std::mem::take(&mut self.backlog);
                tracing::error!(sink = %self.name, "an audit sink is failing and its backlog is full: requests wait (on_failure: block)");
                while self.try_write(&backlog, ctx).is_err() {
                    std::thread::sleep(BACKLOG_RETRY);
                }
                true
            }
            OnFailure::Refuse => {
                let dropped = lines.iter().filter(|b| **b == b'\n').count();
                tracing::error!(sink = %self.name, records = dropped, "an audit sink is failing and its backlog is full: records dropped, new requests refused");
                if let Some(m) = ctx.metrics {
                    m.audit_dropped(&self.name, dropped);
                }
                false
            }
        }
    }

    fn try_write(&mut self, lines: &[u8], ctx: &WriteCtx<'_>) -> std::io::Result<()> {
        match &mut self.lane {
            Lane::Direct(sink) => sink.write(lines),
            Lane::Spooled(spool) => {
                let need = u64::try_from(lines.len()).unwrap_or(u64::MAX);
                match ctx.on_failure {
                    OnFailure::Block => {
                        let mut warned = false;
                        while !spool.wait_for_room(need, BACKLOG_RETRY) {
                            if !warned {
                                tracing::error!(sink = %spool.name, "the audit spool is full: requests wait (on_failure: block)");
                                warned = true;
                            }
                        }
                    }
                    // Past the bound the gate refuses new requests; the records of those still
                    // running (and of the refusals) fit in the reserve of an eighth more.
                    OnFailure::Refuse if spool.pending() + need > spool.max_bytes() + spool.max_bytes() / 8 => {
                        return Err(std::io::Error::other("the audit spool is full"));
                    }
                    OnFailure::Refuse => {}
                }
                spool.append(lines).map(|_| ())
            }
        }
    }
}

/// How long the writer lets events gather while busy; an event waits at most about this long.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
