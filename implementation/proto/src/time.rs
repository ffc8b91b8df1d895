//! Time, as the core sees it: an opaque monotonic instant passed in by the caller.
//!
//! The core never reads a clock. The daemon converts its monotonic clock into [`Time`]; the
//! simulator just counts.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the caller's monotonic clock, in nanoseconds from an arbitrary origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    /// Nanoseconds from the origin.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time since `earlier`, or zero.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.as_nanos() as u64))
    }
}

impl Sub<Self> for Time {
    type Output = Duration;
    fn sub(self, o: Self) -> Duration {
        self.saturating_since(o)
    }
}
