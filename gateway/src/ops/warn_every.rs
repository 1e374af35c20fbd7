//! Rate-limited WARN lines: a condition that repeats (refused connections, a spent budget) is
//! logged once per interval, with how many times it happened since the last line.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a repeating condition may log.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Decides when a repeating condition logs again.
#[derive(Debug)]
pub struct WarnEvery {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl Default for WarnEvery {
    fn default() -> Self {
        WarnEvery::new(INTERVAL)
    }
}

impl WarnEvery {
    pub fn new(interval: Duration) -> Self {
        WarnEvery { interval, state: Mutex::new(State::default()) }
    }

    /// Records one occurrence. `Some(n)` when a line is due now, `n` being the occurrences
    /// not logged since the previous line; `None` when this one is only counted.
    pub fn due(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match s.last {
            Some(t) if now.duration_since(t) < self.interval => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_and_counts_the_rest() {
        let w = WarnEvery::new(Duration::from_millis(50));
        assert_eq!(w.due(), Some(0));
        assert_eq!(w.due(), None);
        assert_eq!(w.due(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(w.due(), Some(2), "the two suppressed since the first line");
        assert_eq!(w.due(), None);
    }
}
