//! A bounded on-disk queue in front of a sink that can be slow or away (a webhook, the
//! database): the writer thread appends a batch and moves on; the sink's delivery thread reads
//! it back, delivers it, and only then moves the cursor. A crash between delivery and the
//! cursor's move delivers that batch again (at least once; receivers drop repeats by `id`); a
//! crash anywhere else loses nothing, since the batch is in a file before the writer moves on.
//!
//! On disk, `DIR/NNNNNNNNNNNNNNNNNNNN.seg` files of whole lines, the oldest read first, and
//! `DIR/cursor` (`SEGMENT OFFSET`): where the next delivery starts. Each start writes to a new
//! segment, so a line a crash left unfinished is never continued; the reader skips it.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A segment is sealed, and a new one begun, once it holds this much.
const SEGMENT_BYTES: u64 = 8 << 20;

pub struct Spool {
    dir: PathBuf,
    /// The sink's name, for logs and metric labels.
    pub name: String,
    max_bytes: u64,
    state: Mutex<State>,
    changed: Condvar,
    /// Pending bytes at or over `max_bytes`: `on_failure` decides.
    full: AtomicBool,
    metrics: Option<Arc<crate::telemetry::Metrics>>,
}

struct State {
    /// Segment numbers and lengths, oldest first; the last is appended to.
    segments: VecDeque<(u64, u64)>,
    /// The newest segment, open for appending (opened on the first append after a start).
    file: Option<std::fs::File>,
    /// Where the next delivery starts: the front segment and an offset in it.
    offset: u64,
    /// Bytes appended since this process opened the spool, plus those pending then.
    appended: u64,
    /// Bytes delivered (or skipped) since this process opened the spool.
    delivered: u64,
    /// No more appends will come; delivery ends once nothing is left or on `stop`.
    closed: bool,
}

/// A run of whole lines read for delivery, and where the cursor goes once it is delivered.
pub struct Chunk {
    pub lines: Vec<u8>,
    pub events: usize,
    segment: u64,
    end: u64,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.seg"))
}

impl Spool {
    /// Opens (creating) the spool in `dir`, with what an earlier run left undelivered.
    pub fn open(dir: PathBuf, name: String, max_bytes: u64, metrics: Option<Arc<crate::telemetry::Metrics>>) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut numbers: Vec<u64> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let cursor = std::fs::read_to_string(dir.join("cursor")).ok().and_then(|c| {
            let (segment, offset) = c.trim().split_once(' ')?;
            Some((segment.parse::<u64>().ok()?, offset.parse::<u64>().ok()?))
        });
        let mut segments = VecDeque::new();
        for n in numbers {
            if cursor.is_some_and(|(segment, _)| n < segment) {
                // Delivered before the last run ended; removing it was all that was left.
                let _ = std::fs::remove_file(segment_path(&dir, n));
                continue;
            }
            segments.push_back((n, std::fs::metadata(segment_path(&dir, n))?.len()));
        }
        let offset = match (cursor, segments.front()) {
            (Some((segment, offset)), Some(&(front, len))) if segment == front => offset.min(len),
            _ => 0,
        };
        // Appends go to a new segment: the last one may end in a line a crash cut short.
        let next = segments.back().map_or(1, |(n, _)| n + 1);
        segments.push_back((next, 0));
        let pending = segments.iter().map(|(_, len)| len).sum::<u64>() - offset;
        let spool = Self {
            dir,
            name,
            max_bytes,
            state: Mutex::new(State { segments, file: None, offset, appended: pending, delivered: 0, closed: false }),
            changed: Condvar::new(),
            full: AtomicBool::new(false),
            metrics,
        };
        spool.update(&spool.lock());
        if pending > 0 {
            tracing::info!(sink = %spool.name, bytes = pending, "undelivered audit records from an earlier run will be delivered");
        }
        Ok(spool)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pending_of(state: &State) -> u64 {
        state.segments.iter().map(|(_, len)| len).sum::<u64>() - state.offset
    }

    /// Sets `full` and the size metric from `state`.
    fn update(&self, state: &State) {
        let pending = Self::pending_of(state);
        self.full.store(pending >= self.max_bytes, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.audit_spool(&self.name, pending);
        }
    }

    /// Bytes waiting for delivery.
    pub fn pending(&self) -> u64 {
        Self::pending_of(&self.lock())
    }

    /// Whether what waits has reached the bound.
    pub fn full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Appends whole lines. Returns the position they end at (for [`Spool::wait_delivered`]).
    pub fn append(&self, lines: &[u8]) -> std::io::Result<u64> {
        let mut state = self.lock();
        let len = u64::try_from(lines.len()).unwrap_or(u64::MAX);
        let Some(&(newest, newest_len)) = state.segments.back() else { return Err(std::io::Error::other("spool has no segment")) };
        if newest_len >= SEGMENT_BYTES {
            state.segments.push_back((newest + 1, 0));
            state.file = None;
        }
        if state.file.is_none() {
            let n = state.segments.back().map_or(newest, |s| s.0);
            state.file = Some(std::fs::OpenOptions::new().create(true).append(true).open(segment_path(&self.dir, n))?);
        }
        if let Some(file) = state.file.as_mut()
            && let Err(e) = file.write_all(lines)
        {
            // Part of the batch may be in the file: start a new segment, and let the reader
            // skip the cut line (the batch is retried whole from memory).
            let n = state.segments.back().map_or(newest, |s| s.0);
            if let Ok(written) = std::fs::metadata(segment_path(&self.dir, n)).map(|m| m.len())
                && let Some(back) = state.segments.back_mut()
            {
                let partial = written.saturating_sub(back.1);
                back.1 = written;
                state.appended += partial;
            }
            state.segments.push_back((n + 1, 0));
            state.file = None;
            return Err(e);
        }
        if let Some(back) = state.segments.back_mut() {
            back.1 += len;
        }
        state.appended += len;
        let at = state.appended;
        self.update(&state);
        drop(state);
        self.changed.notify_all();
        Ok(at)
    }

    /// Makes what was appended durable (on flush and shutdown).
    pub fn sync(&self) {
        if let Some(file) = self.lock().file.as_ref()
            && let Err(e) = file.sync_data()
        {
            tracing::error!(sink = %self.name, error = %e, "the audit spool could not be synced");
        }
    }

    /// Where appends have reached.
    pub fn position(&self) -> u64 {
        self.lock().appended
    }

    /// Waits until everything appended up to `position` is delivered, or `deadline` passes.
    pub fn wait_delivered(&self, position: u64, deadline: Instant) -> bool {
        self.wait_until(deadline, |state| state.delivered >= position)
    }

    /// Waits (at most `timeout`) until `need` more bytes fit under the bound.
    pub fn wait_for_room(&self, need: u64, timeout: Duration) -> bool {
        let max = self.max_bytes;
        self.wait_until(Instant::now() + timeout, |state| {
            let pending = Self::pending_of(state);
            pending + need <= max || pending == 0
        })
    }

    /// Waits until `done` holds of the state (re-checked on every change), or `deadline`.
    fn wait_until(&self, deadline: Instant, done: impl Fn(&State) -> bool) -> bool {
        let mut state = self.lock();
        while !done(&state) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).map_or_else(|e| e.into_inner().0, |(s, _)| s);
        }
        true
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Keeps records a receiver will never take in `rejected.jsonl`, for an operator.
    pub fn set_aside(&self, lines: &[u8]) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("rejected.jsonl"))?;
        file.write_all(lines)?;
        file.sync_data()
    }

    /// No more appends: delivery stops once it has nothing left, or at `stop`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The next run of whole lines to deliver (at most `max_events` lines and, unless one line
    /// is longer, `max_bytes`), waiting for one; `None` once closed and empty, or on `stop`.
    pub fn next(&self, max_events: usize, max_bytes: usize, stop: &AtomicBool) -> Option<Chunk> {
        loop {
            let (segment, offset, len, sealed) = {
                let mut state = self.lock();
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    if Self::pending_of(&state) > 0 {
                        break;
                    }
                    if state.closed {
                        return None;
                    }
                    state = self.changed.wait_timeout(state, Duration::from_millis(250)).map_or_else(|e| e.into_inner().0, |(s, _)| s);
                }
                // Skip delivered segments (a sealed one read to its end).
                while state.segments.len() > 1 && state.segments.front().is_some_and(|&(_, len)| state.offset >= len) {
                    self.drop_front(&mut state);
                }
                let &(segment, len) = state.segments.front()?;
                (segment, state.offset, len, state.segments.len() > 1)
            };
            if offset >= len {
                continue;
            }
            let want = usize::try_from(len - offset).unwrap_or(usize::MAX).min(max_bytes.max(1));
            let mut lines = vec![0; want];
            let read = std::fs::File::open(segment_path(&self.dir, segment)).and_then(|mut f| {
                f.seek(SeekFrom::Start(offset))?;
                f.read_exact(&mut lines)
            });
            if let Err(e) = read {
                tracing::error!(sink = %self.name, error = %e, "the audit spool could not be read; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            // Whole lines only, at most `max_events` of them.
            let mut end = 0;
            let mut events = 0;
            for (i, b) in lines.iter().enumerate() {
                if *b == b'\n' {
                    end = i + 1;
                    events += 1;
                    if events >= max_events {
                        break;
                    }
                }
            }
            if events == 0 {
                if want < usize::try_from(len - offset).unwrap_or(usize::MAX) {
                    // One line longer than `max_bytes`: read it whole.
                    if let Some(chunk) = self.one_long_line(segment, offset, len) {
                        return Some(chunk);
                    }
                    continue;
                }
                if sealed {
                    // The unfinished last line of a segment a crash or a failed write cut.
                    tracing::warn!(sink = %self.name, bytes = len - offset, "an unfinished audit line in the spool was skipped");
                    self.commit(&Chunk { lines: Vec::new(), events: 0, segment, end: len });
                    continue;
                }
                // The newest segment holds whole lines only; nothing whole yet.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            lines.truncate(end);
            return Some(Chunk { lines, events, segment, end: offset + end as u64 });
        }
    }

    fn one_long_line(&self, segment: u64, offset: u64, len: u64) -> Option<Chunk> {
        let mut f = std::fs::File::open(segment_path(&self.dir, segment)).ok()?;
        f.seek(SeekFrom::Start(offset)).ok()?;
        let mut rest = Vec::new();
        f.take(len - offset).read_to_end(&mut rest).ok()?;
        let end = rest.iter().position(|b| *b == b'\n')? + 1;
        rest.truncate(end);
        Some(Chunk { lines: rest, events: 1, segment, end: offset + end as u64 })
    }

    /// `chunk` is delivered (or set aside): the cursor moves past it, for good.
    pub fn commit(&self, chunk: &Chunk) {
        let mut state = self.lock();
        if state.segments.front().is_none_or(|&(n, _)| n != chunk.segment) {
            return;
        }
        state.delivered += chunk.end.saturating_sub(state.offset);
        state.offset = chunk.end;
        while state.segments.len() > 1 && state.segments.front().is_some_and(|&(_, len)| state.offset >= len) {
            self.drop_front(&mut state);
        }
        let cursor = state.segments.front().map(|(n, _)| format!("{n} {}\n", state.offset));
        if let Some(cursor) = cursor {
            let tmp = self.dir.join("cursor.tmp");
            if let Err(e) = std::fs::write(&tmp, cursor).and_then(|()| std::fs::rename(&tmp, self.dir.join("cursor"))) {
                tracing::error!(sink = %self.name, error = %e, "the audit spool's cursor could not be saved (records may be delivered twice)");
            }
        }
        self.update(&state);
        drop(state);
        self.changed.notify_all();
    }

    /// Removes the front segment, delivered to its end.
    fn drop_front(&self, state: &mut State) {
        if let Some((n, _)) = state.segments.pop_front() {
            let _ = std::fs::remove_file(segment_path(&self.dir, n));
        }
        state.offset = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(range: std::ops::Range<usize>) -> Vec<u8> {
        range.map(|i| format!("{{\"n\":{i}}}\n")).collect::<String>().into_bytes()
    }

    fn drain(spool: &Spool, max_events: usize) -> Vec<u8> {
        let stop = AtomicBool::new(false);
        spool.close();
        let mut out = Vec::new();
        while let Some(chunk) = spool.next(max_events, 1 << 20, &stop) {
            assert!(chunk.events <= max_events);
            out.extend_from_slice(&chunk.lines);
            spool.commit(&chunk);
        }
        out
    }

    #[test]
    fn what_is_appended_is_delivered_once_in_order_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let spool = Spool::open(path.clone(), "t".into(), 1 << 20, None).unwrap();
        spool.append(&lines(0..10)).unwrap();
        let stop = AtomicBool::new(false);
        let first = spool.next(4, 1 << 20, &stop).unwrap();
        assert_eq!(first.lines, lines(0..4));
        spool.commit(&first);
        // Read but not committed (a crash before the delivery was confirmed): delivered again.
        let second = spool.next(4, 1 << 20, &stop).unwrap();
        assert_eq!(second.lines, lines(4..8));
        drop(spool);

        let spool = Spool::open(path.clone(), "t".into(), 1 << 20, None).unwrap();
        assert_eq!(spool.pending(), lines(4..10).len() as u64);
        spool.append(&lines(10..12)).unwrap();
        assert_eq!(drain(&spool, 3), lines(4..12));
        assert_eq!(spool.pending(), 0);
        drop(spool);
        let spool = Spool::open(path, "t".into(), 1 << 20, None).unwrap();
        assert_eq!(spool.pending(), 0, "nothing is delivered twice after a clean end");
    }

    #[test]
    fn an_unfinished_line_left_by_a_crash_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let spool = Spool::open(path.clone(), "t".into(), 1 << 20, None).unwrap();
        spool.append(&lines(0..2)).unwrap();
        drop(spool);
        let seg =
            std::fs::read_dir(&path).unwrap().filter_map(|e| e.ok()).find(|e| e.path().extension().is_some_and(|x| x == "seg")).unwrap();
        std::fs::OpenOptions::new().append(true).open(seg.path()).unwrap().write_all(b"{\"n\":2").unwrap();
        let spool = Spool::open(path, "t".into(), 1 << 20, None).unwrap();
        spool.append(&lines(3..4)).unwrap();
        let mut want = lines(0..2);
        want.extend(lines(3..4));
        assert_eq!(drain(&spool, 100), want);
    }

    #[test]
    fn the_bound_marks_it_full_until_delivery_makes_room() {
        let dir = tempfile::tempdir().unwrap();
        let batch = lines(0..10);
        let spool = Arc::new(Spool::open(dir.path().join("s"), "t".into(), batch.len() as u64 * 2, None).unwrap());
        spool.append(&batch).unwrap();
        assert!(!spool.full());
        spool.append(&batch).unwrap();
        assert!(spool.full());
        assert!(!spool.wait_for_room(batch.len() as u64, Duration::from_millis(50)), "no room until something is delivered");
        let reader = Arc::clone(&spool);
        let delivery = std::thread::spawn(move || {
            let stop = AtomicBool::new(false);
            let chunk = reader.next(10, 1 << 20, &stop).unwrap();
            reader.commit(&chunk);
        });
        assert!(spool.wait_for_room(batch.len() as u64, Duration::from_secs(10)));
        delivery.join().unwrap();
        assert!(!spool.full());
        let at = spool.append(&batch).unwrap();
        assert!(!spool.wait_delivered(at, Instant::now() + Duration::from_millis(20)));
        let all = drain(&spool, 100);
        assert_eq!(all.len(), batch.len() * 2);
        assert!(spool.wait_delivered(at, Instant::now()));
    }
}
