//! Time as a dependency. Stages that compare against the time (token expiry, the JWKS and
//! token caches) read it from a [`Clock`] they are given, so tests can move time forward
//! instead of sleeping, and replicas of a test never depend on the machine's speed. A leaf.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a stage reads the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Monotonic time, for lifetimes and debounces.
    fn now(&self) -> Instant;
    /// Wall-clock time, for what is compared with timestamps from elsewhere (`exp`, `nbf`).
    fn wall(&self) -> SystemTime;
    /// Whole seconds since the Unix epoch (0 before it).
    fn unix(&self) -> u64 {
        self.wall().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// The machine's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The machine's clocks, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until told to move: both readings start at the machine's time of
/// creation and advance together, only through [`ManualClock::advance`].
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    start_wall: SystemTime,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self { start: Instant::now(), start_wall: SystemTime::now(), offset: Mutex::new(Duration::ZERO) }
    }
}

impl ManualClock {
    /// A clock whose wall time starts at `wall` (a test that moves time forward while its peers
    /// keep the machine's time starts it in the past).
    pub fn starting_at(wall: SystemTime) -> Self {
        Self { start: Instant::now(), start_wall: wall, offset: Mutex::new(Duration::ZERO) }
    }

    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }

    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.offset()
    }
    fn wall(&self) -> SystemTime {
        self.start_wall + self.offset()
    }
}
