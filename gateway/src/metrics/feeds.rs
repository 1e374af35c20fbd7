//! What each listener (feed) received: the time of its last message, its acknowledgments by
//! MSA-1 code and a per-minute count for the last quarter hour, for the status page and the
//! feed-silence alert. Keyed by listener name (configuration, not message content).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use super::ACK_CODES;

/// Minutes of per-minute counts kept (the longest rate shown is over 15 minutes).
const MINUTES_KEPT: i64 = 15;

/// One listener's figures.
#[derive(Debug, Default, Clone)]
struct Feed {
    last_message_ms: Option<i64>,
    acks: [u64; 6],
    /// (minute since the epoch, messages in it), oldest first.
    minutes: VecDeque<(i64, u64)>,
}

/// A copy of one listener's figures at a point in time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FeedFigures {
    pub(crate) last_message_ms: Option<i64>,
    /// `(code, count)` for every MSA-1 code, in a fixed order.
    pub(crate) acks: Vec<(&'static str, u64)>,
    /// Messages per minute over the last 5 and 15 minutes.
    pub(crate) per_minute_5: f64,
    pub(crate) per_minute_15: f64,
}

#[derive(Debug, Default)]
pub(crate) struct Feeds(Mutex<BTreeMap<String, Feed>>);

impl Feeds {
    /// A message on `listener` was answered with `code` at `now_ms`.
    pub(crate) fn seen(&self, listener: &str, code: &str, now_ms: i64) {
        let mut feeds = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let feed = feeds.entry(listener.to_string()).or_default();
        feed.last_message_ms = Some(feed.last_message_ms.map_or(now_ms, |t| t.max(now_ms)));
        if let Some(i) = ACK_CODES.iter().position(|c| *c == code) {
            feed.acks[i] += 1;
        }
        let minute = now_ms.div_euclid(60_000);
        match feed.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n += 1,
            _ => feed.minutes.push_back((minute, 1)),
        }
        while feed.minutes.front().is_some_and(|(m, _)| *m <= minute - MINUTES_KEPT) {
            feed.minutes.pop_front();
        }
    }

    /// The last message time known from before this start (the journal), unless a newer one
    /// was seen since.
    pub(crate) fn seed_last_message(&self, listener: &str, at_ms: i64) {
        let mut feeds = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let feed = feeds.entry(listener.to_string()).or_default();
        if feed.last_message_ms.is_none_or(|t| t < at_ms) {
            feed.last_message_ms = Some(at_ms);
        }
    }

    /// `listener`'s figures at `now_ms` (zeros for a listener that has seen nothing).
    pub(crate) fn figures(&self, listener: &str, now_ms: i64) -> FeedFigures {
        let feeds = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let feed = feeds.get(listener).cloned().unwrap_or_default();
        let minute = now_ms.div_euclid(60_000);
        // The current minute counts as part of each span: a burst shows at once.
        let within =
            |span: i64| -> u64 { feed.minutes.iter().filter(|(m, _)| *m > minute - span).map(|(_, n)| n).sum() };
        FeedFigures {
            last_message_ms: feed.last_message_ms,
            acks: ACK_CODES.iter().zip(feed.acks).map(|(c, n)| (*c, n)).collect(),
            per_minute_5: within(5) as f64 / 5.0,
            per_minute_15: within(15) as f64 / 15.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_codes_and_rates_per_listener_and_forgets_old_minutes() {
        let feeds = Feeds::default();
        let t0 = 1_000 * 60_000;
        for i in 0..10 {
            feeds.seen("adt", "AA", t0 + i * 1000);
        }
        assert_eq!(feeds.figures("adt", t0 + 1).per_minute_5, 2.0);
        assert_eq!(feeds.figures("adt", t0 + 1).per_minute_15, 10.0 / 15.0);
        feeds.seen("adt", "AR", t0 + 20 * 60_000);
        feeds.seen("lab", "CA", t0);
        let now = t0 + 20 * 60_000 + 1;
        let adt = feeds.figures("adt", now);
        assert_eq!(adt.last_message_ms, Some(t0 + 20 * 60_000));
        assert_eq!(adt.acks[0], ("AA", 10));
        assert_eq!(adt.acks[2], ("AR", 1));
        assert_eq!(adt.per_minute_5, 0.2, "the ten old messages are out of both spans");
        assert_eq!(feeds.figures("lab", now).acks[3], ("CA", 1));
        assert_eq!(feeds.figures("none", now).last_message_ms, None);
        feeds.seed_last_message("none", 5);
        feeds.seed_last_message("adt", 5);
        assert_eq!(feeds.figures("none", now).last_message_ms, Some(5));
        assert_eq!(feeds.figures("adt", now).last_message_ms, Some(t0 + 20 * 60_000), "a newer time is kept");
    }
}
