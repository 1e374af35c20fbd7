//! Rate limit for repeated log lines. A failing disk fails every commit, every convert pass
//! and every message: logged one line per event that was thousands of lines a second. Each
//! call site keeps a [`Repeats`]; the first occurrence of an error is logged at once, the
//! repeats within the interval only counted, and the next line that gets through says how
//! many were left out ("(repeated 4812 times in the last 60 s)").
//!
//! It sits outside `ops` because the lower layers (store, mllp, pipeline) use it and may not
//! depend on `ops`.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The interval the gateway's call sites use: at most one line per error kind per minute.
pub(crate) const EVERY: Duration = Duration::from_secs(60);

/// Distinct error kinds tracked per call site; beyond it the quietest one is forgotten
/// (its next occurrence is logged at once, as a first one).
const KINDS: usize = 16;

/// One call site's limiter; `static` friendly.
#[derive(Debug)]
pub(crate) struct Repeats {
    every: Duration,
    kinds: Mutex<Vec<Kind>>,
}

#[derive(Debug)]
struct Kind {
    key: String,
    /// When the last line for this kind was let through.
    logged_at: Instant,
    /// Occurrences since then that were not logged.
    left_out: u64,
}

/// What a let-through line should add: how many repeats were left out before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repeated {
    pub(crate) left_out: u64,
    pub(crate) over: Duration,
}

impl fmt::Display for Repeated {
    /// Empty for a first occurrence, else " (repeated N times in the last S s)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.left_out == 0 {
            return Ok(());
        }
        write!(f, " (repeated {} times in the last {} s)", self.left_out, self.over.as_secs())
    }
}

impl Repeats {
    pub(crate) const fn new(every: Duration) -> Repeats {
        Repeats { every, kinds: Mutex::new(Vec::new()) }
    }

    /// Records an occurrence of `key` (an error kind: a fixed text, never message content);
    /// `Some` when a line should be logged now.
    pub(crate) fn hit(&self, key: &str) -> Option<Repeated> {
        self.hit_at(key, Instant::now())
    }

    /// [`Repeats::hit`] with the clock given (tests).
    pub(crate) fn hit_at(&self, key: &str, now: Instant) -> Option<Repeated> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = kinds.iter_mut().find(|k| k.key == key) {
            let over = now.saturating_duration_since(k.logged_at);
            if over < self.every {
                k.left_out += 1;
                return None;
            }
            let left_out = std::mem::take(&mut k.left_out);
            k.logged_at = now;
            return Some(Repeated { left_out, over });
        }
        if kinds.len() == KINDS {
            let quietest = kinds.iter().enumerate().min_by_key(|(_, k)| k.logged_at).map_or(0, |(i, _)| i);
            kinds.swap_remove(quietest);
        }
        kinds.push(Kind { key: key.to_string(), logged_at: now, left_out: 0 });
        Some(Repeated { left_out: 0, over: Duration::ZERO })
    }

    #[cfg(test)]
    /// The condition cleared: forgets every kind, so the next occurrence is logged at once.
    /// Returns how many occurrences were left out since the last lines (for a recovery line).
    pub fn clear(&self) -> u64 {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        kinds.drain(..).map(|k| k.left_out).sum()
    }
}

/// Runs `f` with a tracing subscriber that records what it logs (plain text, no colours):
/// its result and the log (for tests that assert what an operator would read).
#[cfg(test)]
pub(crate) fn captured<R>(f: impl FnOnce() -> R) -> (R, String) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    (result, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_occurrence_at_once_then_one_line_per_interval_with_the_count() {
        let r = Repeats::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let first = r.hit_at("disk full", t0).expect("the first occurrence is logged at once");
        assert_eq!(first.to_string(), "");
        let mut logged = 0;
        for i in 1..=4812u64 {
            // 4812 repeats spread over 59 s: none of them logged.
            if r.hit_at("disk full", t0 + Duration::from_millis(i * 12)).is_some() {
                logged += 1;
            }
        }
        assert_eq!(logged, 0);
        let next = r.hit_at("disk full", t0 + Duration::from_secs(60)).expect("one line after the interval");
        assert_eq!(next, Repeated { left_out: 4812, over: Duration::from_secs(60) });
        assert_eq!(next.to_string(), " (repeated 4812 times in the last 60 s)");
        // The count restarts with each line.
        assert!(r.hit_at("disk full", t0 + Duration::from_secs(61)).is_none());
        let third = r.hit_at("disk full", t0 + Duration::from_secs(125)).unwrap();
        assert_eq!(third.left_out, 1);
    }

    #[test]
    fn different_errors_are_counted_apart_and_clear_reports_what_was_left_out() {
        let r = Repeats::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(r.hit_at("full", t0).is_some());
        assert!(r.hit_at("locked", t0).is_some(), "another kind is a first occurrence");
        assert!(r.hit_at("full", t0 + Duration::from_secs(1)).is_none());
        assert!(r.hit_at("locked", t0 + Duration::from_secs(1)).is_none());
        assert!(r.hit_at("locked", t0 + Duration::from_secs(2)).is_none());
        assert_eq!(r.clear(), 3);
        assert!(r.hit_at("full", t0 + Duration::from_secs(3)).is_some(), "after a clear, logged at once again");
    }

    #[test]
    fn many_kinds_stay_bounded_and_the_quietest_is_forgotten() {
        let r = Repeats::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..KINDS as u64 {
            assert!(r.hit_at(&format!("k{i}"), t0 + Duration::from_millis(i)).is_some());
        }
        assert!(r.hit_at("one more", t0 + Duration::from_secs(1)).is_some());
        assert_eq!(r.kinds.lock().unwrap().len(), KINDS);
        assert!(r.hit_at("k0", t0 + Duration::from_secs(2)).is_some(), "k0 was the quietest and was forgotten");
        assert!(r.hit_at("k5", t0 + Duration::from_secs(2)).is_none(), "k5 is still tracked");
    }
}
