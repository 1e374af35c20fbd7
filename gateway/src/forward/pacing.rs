//! Pacing: whether the forwarder may send now and how long a failing lane waits — the
//! circuit breaker, global pauses (server unavailable, a server-wide rate limit, refused
//! credentials, the API-usage limit), slow sending near that limit, and each lane's backoff.
//! Plain state fed with each request's verdicts: no database, tested on its own.

use std::time::{Duration, Instant, SystemTime};

use super::cloud_state::CloudState;
use super::deliver::Verdict;
use super::retry::{self, Backoff, Breaker, BreakerState, Throttle, ThrottleWatch};
use super::worker::Done;
use crate::metrics::{FailClass, Metrics};

/// Least time between two WARN lines about a global rate limit.
const THROTTLE_WARN_EVERY: Duration = Duration::from_secs(300);

pub(super) struct Pacing {
    /// Requests in flight at once (one while sending slowly).
    concurrency: usize,
    backoff: Backoff,
    /// Retry interval while the target refuses our credentials.
    auth_retry: Duration,
    breaker: Breaker,
    /// Tells a 429 for one request (that lane backs off) from a limit on the whole sender.
    throttle: ThrottleWatch,
    /// When a global rate limit was last logged (one WARN line per episode, at most every
    /// [`THROTTLE_WARN_EVERY`]).
    throttle_warned: Option<Instant>,
    /// A WARN line about a global rate limit awaits its all-clear.
    throttle_reported: bool,
    /// Nothing is sent before this (server unavailable, global rate limit, auth failure, API
    /// limit).
    pause_until: Option<Instant>,
    /// Near the API limit: one request at a time, spaced.
    slow: Option<Duration>,
    next_send: Instant,
    /// What was last logged about the link, the circuit and the credentials.
    reported: CloudState,
}

impl Pacing {
    /// `breaker_threshold` consecutive failures open the breaker for `breaker_cooldown`
    /// (doubling up to the longer of it and the backoff's maximum).
    pub(crate) fn new(
        concurrency: usize,
        backoff: Backoff,
        auth_retry: Duration,
        breaker_threshold: u32,
        breaker_cooldown: Duration,
    ) -> Pacing {
        Pacing {
            concurrency: concurrency.max(1),
            backoff,
            auth_retry,
            breaker: Breaker::new(breaker_threshold, breaker_cooldown, backoff.max.max(breaker_cooldown)),
            throttle: ThrottleWatch::default(),
            throttle_warned: None,
            throttle_reported: false,
            pause_until: None,
            slow: None,
            next_send: Instant::now(),
            reported: CloudState::default(),
        }
    }

    /// Requests allowed in flight now.
    pub(crate) fn cap(&self) -> usize {
        if self.slow.is_some() {
            1
        } else {
            self.concurrency
        }
    }

    /// Is all sending paused (a global pause, or slow sending between two requests)?
    pub(crate) fn paused(&self, now: Instant) -> bool {
        self.pause_until.is_some_and(|t| now < t) || (self.slow.is_some() && now < self.next_send)
    }

    /// May a request go out now? Takes the breaker's probe slot when half-open, so ask only
    /// when a request will really be sent, then call [`sent`](Self::sent).
    pub(crate) fn may_send(&mut self, now: Instant) -> bool {
        !self.paused(now) && self.breaker.allow(now)
    }

    /// A request went out at `now`.
    pub(crate) fn sent(&mut self, now: Instant) {
        if let Some(interval) = self.slow {
            self.next_send = now + interval;
        }
    }

    /// Nothing can be sent until an answer comes back (every slot taken, or the breaker's
    /// probe out).
    pub(crate) fn awaits_answer(&self, in_flight: usize) -> bool {
        in_flight >= self.cap() || self.breaker.state() == BreakerState::HalfOpen
    }

    /// The earliest time sending may resume, if a pause, the open breaker or slow sending
    /// holds it back.
    pub(crate) fn resume_at(&self) -> Option<Instant> {
        [self.pause_until, self.breaker.open_until(), self.slow.map(|_| self.next_send)].into_iter().flatten().max()
    }

    pub(crate) fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// How long a lane waits after its `failures`-th failure in a row: its backoff, or the
    /// server's `Retry-After` if longer.
    pub(crate) fn retry_delay(&self, failures: u32, after: Option<Duration>) -> Duration {
        let backoff = self.backoff.delay(failures);
        after.map_or(backoff, |a| a.max(backoff))
    }

    /// How long a lane waits while the target refuses our credentials.
    pub(crate) fn auth_retry(&self) -> Duration {
        self.auth_retry
    }

    /// Breaker, pauses, throttling and failure metrics from one request's outcome. A 429
    /// backs off only its own lanes (through [`retry_delay`](Self::retry_delay));
    /// everything pauses only for a 5xx with `Retry-After`, a [`ThrottleWatch`] streak, an
    /// auth failure or the API-usage limit.
    pub(crate) fn observe(&mut self, done: &Done, now: Instant, metrics: &Metrics) {
        let fail = |class: FailClass| metrics.forward_failures[class].inc();
        self.reported.observe_link(done, now, metrics);
        CloudState::report_dead_letters(done);
        let mut pause: Option<Duration> = done.signals.unavailable;
        let (mut answered, mut tripped, mut auth_failed) = (false, false, false);
        let mut throttled: Vec<&str> = Vec::new();
        let mut throttled_after: Option<Duration> = None;
        for (lane, verdict) in done.parts.iter().filter_map(|p| Some((p.lane.as_str(), p.verdict.as_ref()?))) {
            match verdict {
                Verdict::Settled { dead, .. } => {
                    answered = true;
                    if !dead.is_empty() {
                        fail(FailClass::Client);
                    }
                }
                Verdict::Dead { class, .. } => {
                    answered = true;
                    fail(*class);
                }
                Verdict::Retry { class, after, .. } => {
                    fail(*class);
                    metrics.forward_retries.inc();
                    tripped |= class.trips_breaker();
                    if *class == FailClass::Throttled {
                        throttled.push(lane);
                        throttled_after = throttled_after.max(*after);
                    }
                }
                Verdict::AuthFailed => {
                    fail(FailClass::Auth);
                    metrics.forward_retries.inc();
                    auth_failed = true;
                }
            }
        }
        if !throttled.is_empty() {
            if let Some(d) = self.throttle.throttled(throttled, throttled_after, &self.backoff) {
                if self.throttle.pauses() == 1
                    && self.throttle_warned.is_none_or(|t| t.elapsed() >= THROTTLE_WARN_EVERY)
                {
                    self.throttle_warned = Some(now);
                    self.throttle_reported = true;
                    tracing::warn!("forwarder: the FHIR server throttles requests on several lanes in a row; pausing all sending for {d:?}");
                }
                pause = pause.max(Some(d));
            }
        } else if answered {
            if std::mem::take(&mut self.throttle_reported) {
                tracing::info!("forwarder: the FHIR server accepts requests again after throttling");
            }
            self.throttle.success();
        }
        if tripped {
            self.breaker.failure(now);
        } else if answered {
            self.breaker.success();
        } else {
            self.breaker.neutral();
        }
        self.reported.observe_circuit(self.breaker.state(), self.breaker.consecutive());
        let was_failing = metrics.forward_auth_failing.get() == 1;
        if answered && !auth_failed {
            metrics.forward_auth_failing.set(0);
        }
        if auth_failed {
            metrics.forward_auth_failing.set(1);
            pause = pause.max(Some(self.auth_retry));
        }
        self.reported.observe_auth(metrics.forward_auth_failing.get() == 1, was_failing, self.auth_retry.as_secs());
        if let Some((used, max)) = done.signals.limit_info.as_deref().and_then(retry::parse_limit_info) {
            metrics.forward_api_usage_permille.set((used.saturating_mul(1000) / max) as i64);
            match retry::throttle(used, max, SystemTime::now()) {
                Throttle::Normal => self.slow = None,
                Throttle::Slow(interval) => self.slow = Some(interval),
                Throttle::Pause(d) => {
                    tracing::warn!(used, max, "forwarder: API usage near the daily limit; pausing for {d:?}");
                    pause = pause.max(Some(d));
                }
            }
        }
        if let Some(d) = pause {
            let until = now + d;
            self.pause_until = Some(self.pause_until.map_or(until, |p| p.max(until)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::worker::{Head, Sent, Signals};

    fn pacing() -> Pacing {
        let backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(10), jitter: false };
        Pacing::new(4, backoff, Duration::from_secs(60), 3, Duration::from_secs(5))
    }

    /// One request's outcome: `verdict` for each of `lanes`.
    fn done(lanes: &[&str], verdict: Verdict, signals: Signals) -> Done {
        let head = Head { id: 1, journal_seq: 1, created_at: 0, shape: None };
        let parts = lanes
            .iter()
            .map(|l| Sent {
                lane: l.to_string(),
                head,
                verdict: Some(verdict.clone()),
                follower: false,
                settled: vec![],
                searched_ahead: false,
            })
            .collect();
        Done { parts, signals, fill: Default::default() }
    }

    fn throttled(after: Option<Duration>) -> Verdict {
        Verdict::Retry { class: FailClass::Throttled, after, ok: vec![], dead: vec![] }
    }

    fn settled() -> Verdict {
        Verdict::Settled { ok: vec![0], dead: vec![] }
    }

    #[test]
    fn a_429_on_one_lane_pauses_nothing_but_a_streak_on_several_lanes_pauses_everything() {
        let (mut p, metrics, now) = (pacing(), Metrics::default(), Instant::now());
        for _ in 0..5 {
            p.observe(&done(&["A"], throttled(Some(Duration::from_secs(20))), Signals::default()), now, &metrics);
        }
        assert!(p.may_send(now), "one lane's 429s back off that lane only");
        p.observe(&done(&["A"], settled(), Signals::default()), now, &metrics);
        for lane in ["A", "B", "C"] {
            assert!(!p.paused(now));
            p.observe(&done(&[lane], throttled(Some(Duration::from_secs(20))), Signals::default()), now, &metrics);
        }
        assert!(p.paused(now) && !p.may_send(now), "three lanes throttled in a row: the limit is the server's");
        assert!(p.resume_at().is_some_and(|t| t >= now + Duration::from_secs(20)), "for the longest Retry-After");
        assert!(!p.paused(now + Duration::from_secs(21)));
        assert_eq!(metrics.forward_failures[FailClass::Throttled].get(), 8);
        assert_eq!(metrics.forward_retries.get(), 8);
    }

    #[test]
    fn a_5xx_with_retry_after_pauses_everything_at_once() {
        let (mut p, metrics, now) = (pacing(), Metrics::default(), Instant::now());
        let unavailable = Signals { limit_info: None, unavailable: Some(Duration::from_secs(20)) };
        p.observe(&done(&["D"], throttled(Some(Duration::from_secs(20))), unavailable), now, &metrics);
        assert!(p.paused(now + Duration::from_secs(19)));
        assert!(!p.paused(now + Duration::from_secs(20)));
    }

    #[test]
    fn refused_credentials_pause_sending_and_show_until_an_answer_clears_them() {
        let (mut p, metrics, now) = (pacing(), Metrics::default(), Instant::now());
        p.observe(&done(&["A"], Verdict::AuthFailed, Signals::default()), now, &metrics);
        assert_eq!(metrics.forward_auth_failing.get(), 1);
        assert_eq!(metrics.forward_failures[FailClass::Auth].get(), 1);
        assert!(p.paused(now + Duration::from_secs(59)) && !p.paused(now + Duration::from_secs(60)));
        p.observe(&done(&["A"], settled(), Signals::default()), now + Duration::from_secs(60), &metrics);
        assert_eq!(metrics.forward_auth_failing.get(), 0);
    }

    #[test]
    fn consecutive_server_failures_open_the_breaker_until_its_cooldown() {
        let (mut p, metrics, now) = (pacing(), Metrics::default(), Instant::now());
        let failed = || Verdict::Retry { class: FailClass::Server, after: None, ok: vec![], dead: vec![] };
        for _ in 0..3 {
            assert!(p.may_send(now));
            p.observe(&done(&["A"], failed(), Signals::default()), now, &metrics);
        }
        assert_eq!(p.breaker_state(), BreakerState::Open);
        assert!(!p.may_send(now), "open");
        assert_eq!(p.resume_at(), Some(now + Duration::from_secs(5)));
        let later = now + Duration::from_secs(5);
        assert!(p.may_send(later), "one probe after the cooldown");
        assert!(p.awaits_answer(0) && !p.may_send(later), "and only one");
        p.observe(&done(&["A"], settled(), Signals::default()), later, &metrics);
        assert_eq!(p.breaker_state(), BreakerState::Closed);
    }

    #[test]
    fn near_the_api_limit_one_request_at_a_time_spaced() {
        let (mut p, metrics, now) = (pacing(), Metrics::default(), Instant::now());
        assert_eq!(p.cap(), 4);
        let near = Signals { limit_info: Some("api-usage=4600/5000".into()), unavailable: None };
        p.observe(&done(&["A"], settled(), near), now, &metrics);
        assert_eq!(metrics.forward_api_usage_permille.get(), 920);
        assert_eq!(p.cap(), 1);
        assert!(p.may_send(now));
        p.sent(now);
        assert!(p.paused(now + retry::SLOW_INTERVAL / 2), "spaced");
        assert!(!p.paused(now + retry::SLOW_INTERVAL));
        let normal = Signals { limit_info: Some("api-usage=10/5000".into()), unavailable: None };
        p.observe(&done(&["A"], settled(), normal), now, &metrics);
        assert_eq!(p.cap(), 4);
    }

    #[test]
    fn a_lane_waits_its_backoff_or_a_longer_retry_after() {
        let p = pacing();
        assert_eq!(p.retry_delay(1, None), Duration::from_millis(100));
        assert_eq!(p.retry_delay(3, None), Duration::from_millis(400));
        assert_eq!(p.retry_delay(1, Some(Duration::from_secs(30))), Duration::from_secs(30));
        assert_eq!(p.retry_delay(3, Some(Duration::from_millis(10))), Duration::from_millis(400));
    }
}
