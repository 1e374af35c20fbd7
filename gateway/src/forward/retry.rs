//! When to try again: exponential backoff with jitter, `Retry-After`, the circuit breaker
//! in front of the endpoint, rate limits on one lane or on all, and the Salesforce API-usage
//! throttle. Pure logic, no I/O.

use std::time::{Duration, SystemTime};

use ring::rand::{SecureRandom, SystemRandom};

/// Exponential backoff: `base · 2^(failures-1)`, capped at `max`; with jitter the delay is
/// drawn uniformly from `[d/2, d]` so lanes that failed together do not retry together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
    pub(crate) jitter: bool,
}

impl Backoff {
    /// The delay before attempt `failures + 1` (`failures` ≥ 1).
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        let full = self.base.checked_mul(1u32 << exp).unwrap_or(self.max).min(self.max);
        if !self.jitter || full.is_zero() {
            return full;
        }
        let half = full / 2;
        let span = (full - half).as_millis() as u64;
        let mut r = [0u8; 8];
        let _ = SystemRandom::new().fill(&mut r);
        half + Duration::from_millis(if span == 0 { 0 } else { u64::from_le_bytes(r) % (span + 1) })
    }
}

/// Parses `Retry-After`: delta seconds or an HTTP-date (IMF-fixdate, also RFC 850 and
/// asctime forms as far as the RFC 2822 parser takes them). A date in the past is zero;
/// garbage is `None` (the caller falls back to its backoff). Capped at one day.
pub(crate) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    const DAY: Duration = Duration::from_secs(86_400);
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)).min(DAY));
    }
    let parser = jiff::fmt::rfc2822::DateTimeParser::new().relaxed_weekday(true);
    let at = parser.parse_timestamp(v).ok()?;
    let at = SystemTime::from(at);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(DAY))
}

/// State of the [`Breaker`], as exported in metrics (`0` closed, `1` half-open, `2` open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

/// Circuit breaker in front of the endpoint: after `threshold` consecutive transport or
/// server failures it opens and nothing is sent for `cooldown` (doubling while the endpoint
/// stays dead, up to `max_cooldown`); then one probe request is let through (half-open).
/// The probe's success closes it, its failure opens it again.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    threshold: u32,
    base_cooldown: Duration,
    max_cooldown: Duration,
    state: BreakerState,
    consecutive: u32,
    cooldown: Duration,
    open_until: Option<std::time::Instant>,
    probe_out: bool,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration, max_cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            base_cooldown: cooldown,
            max_cooldown: max_cooldown.max(cooldown),
            state: BreakerState::Closed,
            consecutive: 0,
            cooldown,
            open_until: None,
            probe_out: false,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.state
    }

    /// Failures in a row so far.
    pub(crate) fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// When an open breaker will let a probe through.
    pub(crate) fn open_until(&self) -> Option<std::time::Instant> {
        (self.state == BreakerState::Open).then_some(self.open_until).flatten()
    }

    /// May a request go out now? In half-open state only one (the probe) at a time; taking
    /// it is recorded, so call this only when a request will really be sent.
    pub(crate) fn allow(&mut self, now: std::time::Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                if self.open_until.is_some_and(|t| now >= t) {
                    self.state = BreakerState::HalfOpen;
                    self.probe_out = true;
                    true
                } else {
                    false
                }
            }
            BreakerState::HalfOpen => {
                if self.probe_out {
                    false
                } else {
                    self.probe_out = true;
                    true
                }
            }
        }
    }

    /// The endpoint answered (any status that shows it is alive and itself).
    pub(crate) fn success(&mut self) {
        self.state = BreakerState::Closed;
        self.consecutive = 0;
        self.cooldown = self.base_cooldown;
        self.open_until = None;
        self.probe_out = false;
    }

    /// A timeout, connection failure or 5xx.
    pub(crate) fn failure(&mut self, now: std::time::Instant) {
        self.consecutive = self.consecutive.saturating_add(1);
        match self.state {
            BreakerState::HalfOpen => {
                self.cooldown = (self.cooldown * 2).min(self.max_cooldown);
                self.open(now);
            }
            BreakerState::Closed if self.consecutive >= self.threshold => self.open(now),
            _ => {}
        }
    }

    /// A request let through came back with neither verdict (e.g. 429): frees the probe slot.
    pub(crate) fn neutral(&mut self) {
        self.probe_out = false;
    }

    fn open(&mut self, now: std::time::Instant) {
        self.state = BreakerState::Open;
        self.open_until = Some(now + self.cooldown);
        self.probe_out = false;
    }
}

/// Throttled requests in a row, on more than one lane, that mean the server limits the
/// gateway as a whole rather than one request.
pub(crate) const GLOBAL_THROTTLE_STREAK: u32 = 3;

/// Tells a rate limit on one request from one on the whole sender. A 429 backs off only the
/// lanes of the request it refused (the scheduler does that); but when
/// [`GLOBAL_THROTTLE_STREAK`] requests in a row on at least two lanes are throttled with no
/// success between, the server is refusing everyone, and all sending pauses: for the longest
/// `Retry-After` of the streak, else for the backoff of the pauses so far.
#[derive(Debug, Default)]
pub(crate) struct ThrottleWatch {
    streak: u32,
    first_lane: Option<String>,
    several_lanes: bool,
    longest_after: Option<Duration>,
    /// Global pauses since the last success.
    pauses: u32,
}

impl ThrottleWatch {
    /// A request was answered without throttling.
    pub(crate) fn success(&mut self) {
        *self = ThrottleWatch::default();
    }

    /// Global pauses since the last success (0: no global limit seen).
    pub(crate) fn pauses(&self) -> u32 {
        self.pauses
    }

    /// A request for `lanes` was throttled (with the server's `Retry-After`, if any); returns
    /// how long everything should pause if the streak says the limit is global.
    pub(crate) fn throttled<'a>(
        &mut self,
        lanes: impl IntoIterator<Item = &'a str>,
        after: Option<Duration>,
        backoff: &Backoff,
    ) -> Option<Duration> {
        self.streak += 1;
        for lane in lanes {
            match &self.first_lane {
                None => self.first_lane = Some(lane.to_string()),
                Some(first) if first != lane => self.several_lanes = true,
                Some(_) => {}
            }
        }
        self.longest_after = self.longest_after.max(after);
        if self.streak < GLOBAL_THROTTLE_STREAK || !self.several_lanes {
            return None;
        }
        self.pauses = self.pauses.saturating_add(1);
        let pause = self.longest_after.unwrap_or_else(|| backoff.delay(self.pauses));
        // The next streak is counted afresh; the requests already out may add to it.
        (self.streak, self.first_lane, self.several_lanes, self.longest_after) = (0, None, false, None);
        Some(pause)
    }
}

/// Salesforce's `Sforce-Limit-Info: api-usage=N/M` → `(N, M)`.
pub(crate) fn parse_limit_info(value: &str) -> Option<(u64, u64)> {
    value.split([',', ';']).find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("api-usage") {
            return None;
        }
        let (used, max) = v.trim().split_once('/')?;
        let (used, max) = (used.trim().parse().ok()?, max.trim().parse().ok()?);
        (max > 0).then_some((used, max))
    })
}

/// What the API usage asks of the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Throttle {
    Normal,
    /// ≥ 90 %: one request at a time, at most one per this interval.
    Slow(Duration),
    /// ≥ 98 %: nothing until the next window (the top of the next hour, then one probe
    /// request refreshes the figure).
    Pause(Duration),
}

/// The slow-down interval near the limit.
pub(crate) const SLOW_INTERVAL: Duration = Duration::from_secs(2);

pub(crate) fn throttle(used: u64, max: u64, now: SystemTime) -> Throttle {
    if max == 0 {
        return Throttle::Normal;
    }
    let permille = used.saturating_mul(1000) / max;
    if permille >= 980 {
        let secs = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        Throttle::Pause(Duration::from_secs(3600 - secs % 3600))
    } else if permille >= 900 {
        Throttle::Slow(SLOW_INTERVAL)
    } else {
        Throttle::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn retry_after_seconds_dates_and_garbage() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(retry_after("99999999999999999999999", now), Some(Duration::from_secs(86_400)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO), "past date");
        assert_eq!(
            retry_after("Mon, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10)),
            "wrong weekday tolerated"
        );
        for junk in ["", "soon", "-5", "1.5", "12s", "Sun, 99 Nov 1994 08:49:37 GMT"] {
            assert_eq!(retry_after(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let b = Backoff { base: Duration::from_millis(500), max: Duration::from_secs(300), jitter: false };
        assert_eq!(b.delay(1), Duration::from_millis(500));
        assert_eq!(b.delay(2), Duration::from_secs(1));
        assert_eq!(b.delay(5), Duration::from_secs(8));
        assert_eq!(b.delay(10), Duration::from_secs(256));
        assert_eq!(b.delay(11), Duration::from_secs(300));
        assert_eq!(b.delay(1000), Duration::from_secs(300));
        let j = Backoff { jitter: true, ..b };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = j.delay(4);
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_secs(4), "{d:?}");
            seen.insert(d);
            let capped = j.delay(30);
            assert!(capped >= Duration::from_secs(150) && capped <= Duration::from_secs(300));
        }
        assert!(seen.len() > 10, "jitter varies");
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(10), Duration::from_secs(40));
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure(t0);
        b.failure(t0);
        assert!(b.allow(t0));
        b.success();
        b.failure(t0);
        b.failure(t0);
        assert_eq!(b.state(), BreakerState::Closed, "success resets the count");
        b.failure(t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(9)));
        assert!(b.allow(t0 + Duration::from_secs(10)), "probe after cooldown");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.allow(t0 + Duration::from_secs(10)), "one probe at a time");
        b.failure(t0 + Duration::from_secs(10));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.open_until(), Some(t0 + Duration::from_secs(30)), "cooldown doubled");
        assert!(b.allow(t0 + Duration::from_secs(30)));
        b.neutral();
        assert!(b.allow(t0 + Duration::from_secs(30)), "a neutral answer frees the probe slot");
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow(t0) && b.allow(t0));
        // Cooldown doubles per failed probe and is capped.
        b.failure(t0);
        b.failure(t0);
        b.failure(t0);
        let mut last = t0;
        for i in 1..8 {
            last = t0 + Duration::from_secs(1000 * i);
            assert!(b.allow(last));
            b.failure(last);
        }
        assert_eq!(b.open_until(), Some(last + Duration::from_secs(40)));
    }

    #[test]
    fn only_a_streak_of_throttled_requests_on_several_lanes_pauses_everything() {
        let backoff = Backoff { base: Duration::from_millis(500), max: Duration::from_secs(300), jitter: false };
        let mut w = ThrottleWatch::default();
        // One request in five refused: never a global pause.
        for round in 0..10 {
            assert_eq!(w.throttled([format!("L{round}").as_str()], Some(Duration::from_secs(30)), &backoff), None);
            w.success();
        }
        // One lane throttled again and again is that lane's business.
        for _ in 0..5 {
            assert_eq!(w.throttled(["A"], None, &backoff), None);
        }
        assert_eq!(w.pauses(), 0);
        // Three in a row over several lanes: the longest Retry-After of the streak, for all.
        w.success();
        assert_eq!(w.throttled(["A"], Some(Duration::from_secs(2)), &backoff), None);
        assert_eq!(w.throttled(["B", "C"], Some(Duration::from_secs(7)), &backoff), None);
        assert_eq!(w.throttled(["D"], Some(Duration::from_secs(1)), &backoff), Some(Duration::from_secs(7)));
        assert_eq!(w.pauses(), 1);
        // Without Retry-After the pauses back off while no request succeeds.
        for _ in 0..2 {
            assert_eq!(w.throttled(["A", "B"], None, &backoff), None);
        }
        assert_eq!(w.throttled(["C"], None, &backoff), Some(Duration::from_secs(1)), "second pause");
        w.success();
        assert_eq!(w.pauses(), 0, "a success clears it");
    }

    #[test]
    fn limit_info_parsing_and_throttling() {
        assert_eq!(parse_limit_info("api-usage=25/5000"), Some((25, 5000)));
        assert_eq!(parse_limit_info("per-app-api-usage=1/10(appName=x), api-usage=4500/5000"), Some((4500, 5000)));
        assert_eq!(parse_limit_info("API-Usage = 7 / 10"), Some((7, 10)));
        assert_eq!(parse_limit_info("api-usage=1/0"), None);
        assert_eq!(parse_limit_info("api-usage=abc"), None);
        assert_eq!(parse_limit_info(""), None);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(3600 * 100 + 600);
        assert_eq!(throttle(25, 5000, now), Throttle::Normal);
        assert_eq!(throttle(4499, 5000, now), Throttle::Normal);
        assert_eq!(throttle(4500, 5000, now), Throttle::Slow(SLOW_INTERVAL));
        assert_eq!(throttle(4900, 5000, now), Throttle::Pause(Duration::from_secs(3000)));
        assert_eq!(throttle(6000, 5000, now), Throttle::Pause(Duration::from_secs(3000)));
    }
}
