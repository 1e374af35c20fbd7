//! The alert conditions, as a pure function of the facts sampled each tick and the time:
//! [`Evaluator::evaluate`] returns which alerts are raised now, with a PHI-free detail.
//! The clock is the caller's (`now_ms`), so every condition is tested with an injected time.

use std::collections::VecDeque;

use jiff::tz::TimeZone;

/// Alert names, the `name` label of `gateway_alert` (stable: dashboards and the README use
/// them).
pub(crate) const FEED_SILENCE: &str = "feed_silence";
pub(crate) const OLDEST_UNDELIVERED: &str = "oldest_undelivered";
pub(crate) const QUEUE_GROWTH: &str = "queue_growth";
pub(crate) const AUTH_FAILING: &str = "auth_failing";
pub(crate) const DEAD_LETTER_SPIKE: &str = "dead_letter_spike";
pub(crate) const DISK_BUDGET: &str = "disk_budget";
pub(crate) const DISK_FILESYSTEM: &str = "disk_filesystem";
pub(crate) const RESTART: &str = "restart";
pub(crate) const TUNNEL_DOWN: &str = "tunnel_down";
pub(crate) const API_BUDGET: &str = "api_budget";

/// Every alert name with its journal `MESSAGE_ID` (one fixed UUID per name, see README).
pub(crate) const MESSAGE_IDS: [(&str, &str); 10] = [
    (FEED_SILENCE, "5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c01"),
    (OLDEST_UNDELIVERED, "5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c02"),
    (QUEUE_GROWTH, "5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c03"),
    (AUTH_FAILING, "5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c04"),
    (DEAD_LETTER_SPIKE, "5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c05"),
    (DISK_BUDGET, "5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c06"),
    (DISK_FILESYSTEM, "5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c07"),
    (RESTART, "5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c08"),
    (TUNNEL_DOWN, "5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c09"),
    (API_BUDGET, "5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c0a"),
];

pub(crate) fn message_id(name: &str) -> &'static str {
    MESSAGE_IDS.iter().find(|(n, _)| *n == name).map_or("", |(_, id)| id)
}

/// Thresholds, from `[alerts]`.
#[derive(Debug, Clone)]
pub(crate) struct Thresholds {
    /// Minutes of the day in the site's zone: `[start, end)`, wrapping midnight when
    /// `end <= start`.
    pub(crate) hours: (u32, u32),
    pub(crate) zone: TimeZone,
    pub(crate) silence_ms: i64,
    pub(crate) oldest_undelivered_ms: i64,
    pub(crate) queue_growth_ms: i64,
    pub(crate) dead_letter_spike: u64,
    pub(crate) dead_letter_window_ms: i64,
    pub(crate) disk_percent: f64,
    pub(crate) restart_ms: i64,
}

impl Thresholds {
    pub(crate) fn from_config(c: &crate::config::Alerts, zone: TimeZone) -> Thresholds {
        let ms = |secs: u64| (secs as i64).saturating_mul(1000);
        Thresholds {
            hours: c.hours_minutes().unwrap_or((0, 1440)),
            zone,
            silence_ms: ms(c.silence_secs),
            oldest_undelivered_ms: ms(c.oldest_undelivered_secs),
            queue_growth_ms: ms(c.queue_growth_secs),
            dead_letter_spike: c.dead_letter_spike,
            dead_letter_window_ms: ms(c.dead_letter_window_secs),
            disk_percent: f64::from(c.disk_percent),
            restart_ms: ms(c.restart_alert_secs),
        }
    }
}

/// What the evaluator looks at, sampled once per tick.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// Each configured listener with its last message time (unix ms).
    pub(crate) feeds: Vec<(String, Option<i64>)>,
    pub(crate) depth: i64,
    pub(crate) oldest_undelivered_ms: Option<i64>,
    pub(crate) auth_failing: bool,
    /// Dead letters made since start (a counter).
    pub(crate) dead_letters_total: u64,
    /// Journal files against `[store] max_bytes`, percent.
    pub(crate) budget_percent: f64,
    /// The journal's filesystem in use, percent (`None`: unknown).
    pub(crate) filesystem_percent: Option<f64>,
    /// The journal refuses messages: the budget is reached / the filesystem is full.
    pub(crate) budget_full: bool,
    pub(crate) filesystem_full: bool,
    /// Panics the stages recovered from since start (a counter).
    pub(crate) stage_restarts: u64,
    /// The WireGuard tunnel, once read (only with `[wireguard]`).
    pub(crate) tunnel: Option<TunnelFact>,
    /// Requests sent today of `[cloud] daily_api_budget`, per mille (`None`: no budget).
    pub(crate) api_budget_permille: Option<u64>,
}

/// The tunnel as last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TunnelFact {
    /// wg0 could be read (a fresh dump file, or `wg`).
    pub(crate) read: bool,
    /// Seconds since the last handshake; `None`: never.
    pub(crate) handshake_age_secs: Option<u64>,
    /// `[wireguard] handshake_max_age_secs`.
    pub(crate) max_age_secs: u64,
}

impl TunnelFact {
    /// The fact from a reading of the tunnel at `now_secs`.
    pub(crate) fn of(r: &crate::provision::tunnel::Reading, now_secs: u64) -> TunnelFact {
        TunnelFact {
            read: r.peer.is_some(),
            handshake_age_secs: r.peer.and_then(|p| p.handshake_age(now_secs)),
            max_age_secs: r.max_age_secs,
        }
    }

    /// Why the tunnel counts as down; `None` while it is up.
    pub(crate) fn problem(&self) -> Option<String> {
        let max = self.max_age_secs;
        if !self.read {
            return Some("wg0 cannot be read (no fresh status file, and `wg` gives no peer)".into());
        }
        match self.handshake_age_secs {
            age if crate::provision::tunnel::is_up(age, max) => None,
            None => Some("no handshake with the peer yet".into()),
            Some(age) => Some(format!("last handshake {age} s ago (more than {max} s)")),
        }
    }
}

/// A raised alert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Raised {
    pub(crate) name: &'static str,
    pub(crate) listener: Option<String>,
    pub(crate) detail: String,
}

/// The conditions' memory: samples for the rising/spike windows and the start.
#[derive(Debug)]
pub(crate) struct Evaluator {
    t: Thresholds,
    started_ms: i64,
    /// The previous stop was not clean (the process was killed or crashed).
    unclean_start: bool,
    depths: VecDeque<(i64, i64)>,
    dead_letters: VecDeque<(i64, u64)>,
    /// When a stage last recovered from a panic, and the count then.
    last_stage_restart: (Option<i64>, u64),
}

impl Evaluator {
    pub(crate) fn new(t: Thresholds, started_ms: i64, unclean_start: bool) -> Evaluator {
        Evaluator {
            t,
            started_ms,
            unclean_start,
            depths: VecDeque::new(),
            // The dead-letter counter is this process's and starts at 0: dead letters made
            // before the first evaluation count too.
            dead_letters: VecDeque::from([(started_ms, 0)]),
            last_stage_restart: (None, 0),
        }
    }

    /// The alerts raised at `now_ms` given `facts`.
    pub(crate) fn evaluate(&mut self, now_ms: i64, facts: &Facts) -> Vec<Raised> {
        let mut raised = Vec::new();
        let mut raise = |name: &'static str, listener: Option<String>, detail: String| {
            raised.push(Raised { name, listener, detail });
        };
        if let Some(window_start) = self.window_start(now_ms) {
            for (listener, last) in &facts.feeds {
                // Silence counts from the window's start and this process's start at the earliest.
                let since = last.unwrap_or(i64::MIN).max(window_start).max(self.started_ms);
                let quiet = now_ms - since;
                if quiet > self.t.silence_ms {
                    raise(FEED_SILENCE, Some(listener.clone()), format!("no message for {} s", quiet / 1000));
                }
            }
        }
        if let Some(oldest) = facts.oldest_undelivered_ms {
            let age = now_ms - oldest;
            if age > self.t.oldest_undelivered_ms {
                raise(OLDEST_UNDELIVERED, None, format!("oldest undelivered message waits {} s", age / 1000));
            }
        }
        if let Some(detail) = self.queue_growth(now_ms, facts.depth) {
            raise(QUEUE_GROWTH, None, detail);
        }
        if facts.auth_failing {
            raise(AUTH_FAILING, None, "the FHIR server refuses the gateway's credentials".into());
        }
        if let Some(n) = self.dead_letter_spike(now_ms, facts.dead_letters_total) {
            let window = self.t.dead_letter_window_ms / 1000;
            raise(DEAD_LETTER_SPIKE, None, format!("{n} dead letters in the last {window} s"));
        }
        if facts.budget_full {
            raise(DISK_BUDGET, None, "disk budget reached: new messages are refused".into());
        } else if facts.budget_percent > self.t.disk_percent {
            raise(DISK_BUDGET, None, format!("journal at {:.0} % of [store] max_bytes", facts.budget_percent));
        }
        if facts.filesystem_full {
            raise(DISK_FILESYSTEM, None, "filesystem full: new messages are refused".into());
        } else if let Some(p) = facts.filesystem_percent.filter(|p| *p > self.t.disk_percent) {
            raise(DISK_FILESYSTEM, None, format!("journal filesystem {p:.0} % full"));
        }
        if facts.stage_restarts > self.last_stage_restart.1 {
            self.last_stage_restart = (Some(now_ms), facts.stage_restarts);
        }
        let stage_restart = self.last_stage_restart.0.is_some_and(|at| now_ms - at < self.t.restart_ms);
        if stage_restart {
            raise(RESTART, None, "a stage recovered from an internal error".into());
        } else if self.unclean_start && now_ms - self.started_ms < self.t.restart_ms {
            raise(RESTART, None, "started after an unclean stop (crash, kill or watchdog)".into());
        }
        if let Some(problem) = facts.tunnel.as_ref().and_then(TunnelFact::problem) {
            raise(TUNNEL_DOWN, None, problem);
        }
        match facts.api_budget_permille {
            Some(p) if p >= 1000 => {
                raise(API_BUDGET, None, "daily API budget spent: nothing is sent until UTC midnight".into())
            }
            Some(p) if p >= 800 => raise(API_BUDGET, None, format!("{} % of the daily API budget used", p / 10)),
            _ => {}
        }
        raised
    }

    /// When the current alert window began (unix ms), or `None` outside the window.
    fn window_start(&self, now_ms: i64) -> Option<i64> {
        let (start, end) = self.t.hours;
        let now = jiff::Timestamp::from_millisecond(now_ms).ok()?.to_zoned(self.t.zone.clone());
        let minute = u32::from(now.hour() as u8) * 60 + u32::from(now.minute() as u8);
        let wraps = end <= start;
        let inside = if wraps { minute >= start || minute < end } else { minute >= start && minute < end };
        if !inside {
            return None;
        }
        let day = if wraps && minute < start { now.date().yesterday().ok()? } else { now.date() };
        let at = day.at((start / 60) as i8, (start % 60) as i8, 0, 0).to_zoned(self.t.zone.clone()).ok()?;
        Some(at.timestamp().as_millisecond())
    }

    /// Raised when the queue rose over the whole window and never fell within it.
    fn queue_growth(&mut self, now_ms: i64, depth: i64) -> Option<String> {
        self.depths.push_back((now_ms, depth));
        let window = self.t.queue_growth_ms;
        // Keep one sample at or before the window's start, as the baseline.
        while self.depths.len() > 1 && self.depths[1].0 <= now_ms - window {
            self.depths.pop_front();
        }
        let (first_at, first) = *self.depths.front()?;
        if now_ms - first_at < window || depth <= first {
            return None;
        }
        let never_fell = self.depths.iter().zip(self.depths.iter().skip(1)).all(|(a, b)| b.1 >= a.1);
        never_fell.then(|| format!("queue grew from {first} to {depth} over {} s", (now_ms - first_at) / 1000))
    }

    /// Dead letters made within the window, when more than the spike threshold.
    fn dead_letter_spike(&mut self, now_ms: i64, total: u64) -> Option<u64> {
        self.dead_letters.push_back((now_ms, total));
        let window = self.t.dead_letter_window_ms;
        while self.dead_letters.len() > 1 && self.dead_letters[1].0 <= now_ms - window {
            self.dead_letters.pop_front();
        }
        let (_, base) = *self.dead_letters.front()?;
        let n = total.saturating_sub(base);
        (n > self.t.dead_letter_spike).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    /// 2026-01-05 00:00 UTC.
    const DAY: i64 = 1_767_571_200_000;

    fn thresholds() -> Thresholds {
        Thresholds {
            hours: (0, 1440),
            zone: TimeZone::UTC,
            silence_ms: 30 * MIN,
            oldest_undelivered_ms: 15 * MIN,
            queue_growth_ms: 10 * MIN,
            dead_letter_spike: 3,
            dead_letter_window_ms: 10 * MIN,
            disk_percent: 80.0,
            restart_ms: 60 * MIN,
        }
    }

    fn names(raised: &[Raised]) -> Vec<&'static str> {
        raised.iter().map(|r| r.name).collect()
    }

    fn feeds(last: Option<i64>) -> Facts {
        Facts { feeds: vec![("adt".into(), last)], ..Facts::default() }
    }

    #[test]
    fn feed_silence_is_raised_after_the_quiet_time_and_cleared_by_a_message() {
        let mut e = Evaluator::new(thresholds(), DAY + 8 * 60 * MIN, false);
        let start = DAY + 8 * 60 * MIN;
        assert!(e.evaluate(start + 29 * MIN, &feeds(None)).is_empty(), "counted from the start");
        let raised = e.evaluate(start + 31 * MIN, &feeds(None));
        assert_eq!(
            raised,
            [Raised { name: FEED_SILENCE, listener: Some("adt".into()), detail: "no message for 1860 s".into() }]
        );
        assert!(e.evaluate(start + 32 * MIN, &feeds(Some(start + 32 * MIN))).is_empty());
    }

    #[test]
    fn feed_silence_only_within_the_hours_in_the_site_zone() {
        let zone = TimeZone::get("America/Chicago").unwrap();
        // 06:00-22:00 Chicago = 12:00-04:00 UTC in January (UTC-6).
        let t = Thresholds { hours: (6 * 60, 22 * 60), zone, ..thresholds() };
        let mut e = Evaluator::new(t, DAY - 24 * 60 * MIN, false);
        let last = Some(DAY - 20 * 60 * MIN);
        // 05:00 Chicago (11:00 UTC): outside the hours.
        assert!(e.evaluate(DAY + 11 * 60 * MIN, &feeds(last)).is_empty());
        // 06:20 Chicago: in the hours, but counted from 06:00.
        assert!(e.evaluate(DAY + 12 * 60 * MIN + 20 * MIN, &feeds(last)).is_empty());
        // 06:40 Chicago: 40 minutes into the window without a message.
        assert_eq!(names(&e.evaluate(DAY + 12 * 60 * MIN + 40 * MIN, &feeds(last))), [FEED_SILENCE]);
        // 22:30 Chicago (04:30 UTC next day): outside again, cleared.
        assert!(e.evaluate(DAY + 28 * 60 * MIN + 30 * MIN, &feeds(last)).is_empty());
    }

    #[test]
    fn a_window_across_midnight_counts_from_the_evening_start() {
        let t = Thresholds { hours: (22 * 60, 6 * 60), ..thresholds() };
        let e = Evaluator::new(t, 0, false);
        assert_eq!(e.window_start(DAY + 2 * 60 * MIN), Some(DAY - 2 * 60 * MIN));
        assert_eq!(e.window_start(DAY + 23 * 60 * MIN), Some(DAY + 22 * 60 * MIN));
        assert_eq!(e.window_start(DAY + 12 * 60 * MIN), None);
    }

    #[test]
    fn oldest_undelivered_is_raised_over_the_threshold_and_cleared_by_delivery() {
        let mut e = Evaluator::new(thresholds(), DAY, false);
        let waiting = |oldest| Facts { oldest_undelivered_ms: oldest, depth: 1, ..Facts::default() };
        assert!(e.evaluate(DAY + 14 * MIN, &waiting(Some(DAY))).is_empty());
        assert_eq!(names(&e.evaluate(DAY + 16 * MIN, &waiting(Some(DAY)))), [OLDEST_UNDELIVERED]);
        assert!(e.evaluate(DAY + 17 * MIN, &waiting(None)).is_empty());
    }

    #[test]
    fn queue_growth_needs_a_rise_over_the_whole_window_without_a_fall() {
        let mut e = Evaluator::new(thresholds(), DAY, false);
        let depth = |d| Facts { depth: d, ..Facts::default() };
        for (i, d) in [1, 2, 3, 4, 5].into_iter().enumerate() {
            let raised = e.evaluate(DAY + i as i64 * 2 * MIN, &depth(d));
            assert!(raised.is_empty(), "window not covered yet at sample {i}");
        }
        assert_eq!(names(&e.evaluate(DAY + 10 * MIN, &depth(6))), [QUEUE_GROWTH]);
        assert_eq!(names(&e.evaluate(DAY + 12 * MIN, &depth(7))), [QUEUE_GROWTH]);
        // A fall clears it (the forwarder caught up a little).
        assert!(e.evaluate(DAY + 13 * MIN, &depth(6)).is_empty());
        // Flat is not growth.
        let mut flat = Evaluator::new(thresholds(), DAY, false);
        for i in 0..8 {
            assert!(flat.evaluate(DAY + i * 2 * MIN, &depth(5)).is_empty());
        }
    }

    #[test]
    fn auth_failing_follows_the_forwarder() {
        let mut e = Evaluator::new(thresholds(), DAY, false);
        let auth = |failing| Facts { auth_failing: failing, ..Facts::default() };
        assert_eq!(names(&e.evaluate(DAY, &auth(true))), [AUTH_FAILING]);
        assert!(e.evaluate(DAY + 1000, &auth(false)).is_empty());
    }

    #[test]
    fn dead_letter_spike_counts_within_the_window_only() {
        let mut e = Evaluator::new(thresholds(), DAY, false);
        let dead = |n| Facts { dead_letters_total: n, ..Facts::default() };
        assert!(e.evaluate(DAY, &dead(0)).is_empty());
        assert!(e.evaluate(DAY + MIN, &dead(3)).is_empty(), "three is not more than three");
        let raised = e.evaluate(DAY + 2 * MIN, &dead(4));
        assert_eq!(raised[0].detail, "4 dead letters in the last 600 s");
        assert_eq!(names(&e.evaluate(DAY + 5 * MIN, &dead(4))), [DEAD_LETTER_SPIKE]);
        // Ten minutes on, the burst has left the window.
        assert!(e.evaluate(DAY + 13 * MIN, &dead(4)).is_empty());
    }

    #[test]
    fn dead_letters_made_before_the_first_evaluation_count() {
        let mut e = Evaluator::new(thresholds(), DAY, false);
        let raised = e.evaluate(DAY + MIN, &Facts { dead_letters_total: 4, ..Facts::default() });
        assert_eq!(names(&raised), [DEAD_LETTER_SPIKE]);
    }

    #[test]
    fn disk_alerts_over_the_share_of_budget_and_filesystem() {
        let mut e = Evaluator::new(thresholds(), DAY, false);
        let disk = |b, f| Facts { budget_percent: b, filesystem_percent: f, ..Facts::default() };
        assert_eq!(names(&e.evaluate(DAY, &disk(81.0, Some(50.0)))), [DISK_BUDGET]);
        assert_eq!(names(&e.evaluate(DAY, &disk(10.0, Some(95.0)))), [DISK_FILESYSTEM]);
        assert!(e.evaluate(DAY, &disk(80.0, None)).is_empty());
        let refusing = Facts { budget_full: true, filesystem_full: true, ..Facts::default() };
        assert_eq!(
            names(&e.evaluate(DAY, &refusing)),
            [DISK_BUDGET, DISK_FILESYSTEM],
            "refusing messages is over any share"
        );
    }

    #[test]
    fn restart_after_an_unclean_stop_or_a_stage_panic_for_a_while() {
        let mut clean = Evaluator::new(thresholds(), DAY, false);
        assert!(clean.evaluate(DAY + MIN, &Facts::default()).is_empty());
        let mut unclean = Evaluator::new(thresholds(), DAY, true);
        assert_eq!(names(&unclean.evaluate(DAY + MIN, &Facts::default())), [RESTART]);
        assert!(unclean.evaluate(DAY + 61 * MIN, &Facts::default()).is_empty());
        let panicked = Facts { stage_restarts: 1, ..Facts::default() };
        assert_eq!(names(&clean.evaluate(DAY + 2 * MIN, &panicked)), [RESTART]);
        assert_eq!(names(&clean.evaluate(DAY + 50 * MIN, &panicked)), [RESTART]);
        assert!(clean.evaluate(DAY + 63 * MIN, &panicked).is_empty());
    }

    #[test]
    fn api_budget_from_80_percent_of_the_days_requests() {
        let mut e = Evaluator::new(thresholds(), DAY, false);
        let used = |permille| Facts { api_budget_permille: Some(permille), ..Facts::default() };
        assert!(e.evaluate(DAY, &used(799)).is_empty());
        assert_eq!(e.evaluate(DAY, &used(800))[0].detail, "80 % of the daily API budget used");
        assert_eq!(names(&e.evaluate(DAY, &used(1000))), [API_BUDGET]);
        assert!(e.evaluate(DAY, &Facts::default()).is_empty(), "no budget, no alert");
    }

    #[test]
    fn tunnel_down_when_the_handshake_is_too_old_never_happened_or_wg0_is_unreadable() {
        let mut e = Evaluator::new(thresholds(), DAY, false);
        let tunnel = |read, age| Facts {
            tunnel: Some(TunnelFact { read, handshake_age_secs: age, max_age_secs: 180 }),
            ..Facts::default()
        };
        assert!(e.evaluate(DAY, &tunnel(true, Some(5))).is_empty());
        assert!(e.evaluate(DAY, &tunnel(true, Some(180))).is_empty(), "the limit itself is still up");
        let raised = e.evaluate(DAY, &tunnel(true, Some(181)));
        assert_eq!(
            raised,
            [Raised { name: TUNNEL_DOWN, listener: None, detail: "last handshake 181 s ago (more than 180 s)".into() }]
        );
        assert_eq!(e.evaluate(DAY, &tunnel(true, None))[0].detail, "no handshake with the peer yet");
        assert_eq!(names(&e.evaluate(DAY, &tunnel(false, None))), [TUNNEL_DOWN]);
        // No [wireguard], or not read yet: nothing to say.
        assert!(e.evaluate(DAY, &Facts::default()).is_empty());
    }

    #[test]
    fn a_tunnel_reading_becomes_its_fact_at_the_time_of_the_sample() {
        use crate::provision::tunnel::{PeerStatus, Reading};
        let peer = PeerStatus { latest_handshake: 1_000, rx_bytes: 1, tx_bytes: 2 };
        let fact = TunnelFact::of(&Reading { peer: Some(peer), max_age_secs: 60 }, 1_100);
        assert_eq!(fact, TunnelFact { read: true, handshake_age_secs: Some(100), max_age_secs: 60 });
        let never = PeerStatus { latest_handshake: 0, ..peer };
        assert_eq!(TunnelFact::of(&Reading { peer: Some(never), max_age_secs: 60 }, 1_100).handshake_age_secs, None);
        assert!(!TunnelFact::of(&Reading { peer: None, max_age_secs: 60 }, 1_100).read);
    }

    #[test]
    fn every_alert_has_its_own_message_id() {
        let ids: std::collections::BTreeSet<_> = MESSAGE_IDS.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids.len(), MESSAGE_IDS.len());
        assert!(MESSAGE_IDS.iter().all(|(n, _)| !message_id(n).is_empty()));
    }
}
