//! `[cloud] daily_api_budget`: the org's API calls per day (UTC). The forwarder counts the
//! requests it sent (lookups and resends included), warns once a day at 80 % (log,
//! `gateway_forward_api_budget_permille`, the `api_budget` alert), and starts nothing more
//! once the budget is spent, until the day ends — a backlog waits in the journal rather than
//! locking the org's other integrations out. Requests already under way when the budget runs
//! out still finish, so a day may end a few requests over.

const DAY_MS: i64 = 86_400_000;

#[derive(Debug)]
pub(super) struct DailyBudget {
    limit: u64,
    day: i64,
    used: u64,
    warned: bool,
}

impl DailyBudget {
    pub(super) fn new(limit: u64) -> DailyBudget {
        DailyBudget { limit, day: i64::MIN, used: 0, warned: false }
    }

    fn roll(&mut self, now_ms: i64) {
        let day = now_ms.div_euclid(DAY_MS);
        if day != self.day {
            *self = DailyBudget { day, ..DailyBudget::new(self.limit) };
        }
    }

    /// Whether a request may be sent now.
    pub(super) fn allows(&mut self, now_ms: i64) -> bool {
        self.roll(now_ms);
        self.used < self.limit
    }

    /// Counts `requests`; returns the use per mille, and whether the 80 % mark was just passed.
    pub(super) fn spend(&mut self, now_ms: i64, requests: u64) -> (u64, bool) {
        self.roll(now_ms);
        self.used += requests;
        let permille = self.used.saturating_mul(1000) / self.limit.max(1);
        let warn = permille >= 800 && !self.warned;
        self.warned |= warn;
        (permille, warn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_at_80_percent_stops_at_the_budget_and_resets_next_day() {
        let mut b = DailyBudget::new(10);
        let t = 5 * DAY_MS + 1000;
        let mut warnings = 0;
        for n in 1..=10 {
            assert!(b.allows(t));
            let (permille, warn) = b.spend(t, 1);
            assert_eq!(permille, n * 100);
            warnings += warn as u32;
            assert_eq!(warn, n == 8);
        }
        assert_eq!(warnings, 1);
        assert!(!b.allows(t + 1000));
        assert!(b.allows(6 * DAY_MS), "a new day, a new budget");
    }
}
