//! Which state the status LED shows, from what the gateway knows of itself: the journal's
//! health, the stages' liveness, the forwarder's circuit and auth, start-up, and the update
//! marker. Pure, so the precedence is tested without a board.

use crate::metrics::board::LedState;

/// The facts the LED state is decided from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Inputs {
    /// The daemon has opened the journal and bound every listener (`READY=1`).
    pub(crate) ready: bool,
    /// The update marker exists.
    pub(crate) updating: bool,
    /// What the provisioning marker says (`gateway provision`).
    pub(crate) provisioning: Provisioning,
    /// The journal's last commit stored messages (not full, not failing).
    pub(crate) journal_ok: bool,
    /// A stage's thread is gone, or the writer or forwarder is stalled.
    pub(crate) stage_trouble: bool,
    /// The FHIR server refuses the gateway's credentials.
    pub(crate) auth_failing: bool,
    /// The forwarder's circuit breaker is open or half-open: the cloud is unreachable or
    /// failing, messages wait in the journal.
    pub(crate) cloud_down: bool,
}

/// The provisioning marker's content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Provisioning {
    /// No marker, or the last stick was applied.
    #[default]
    Idle,
    /// A stick is being read and applied.
    Running,
    /// The stick still plugged in was refused.
    Refused,
}

impl Provisioning {
    pub(crate) fn from_marker(content: &str) -> Provisioning {
        match content.trim() {
            "provisioning" => Provisioning::Running,
            "refused" => Provisioning::Refused,
            _ => Provisioning::Idle,
        }
    }
}

/// The most urgent state wins: an update in progress explains everything else; a storage
/// fault means messages are refused; until ready nothing else is known; a credentials
/// problem needs an operator, an outage only patience.
pub(crate) fn led_state(i: &Inputs) -> LedState {
    if i.updating {
        LedState::Updating
    } else if i.provisioning == Provisioning::Running {
        LedState::Provisioning
    } else if !i.journal_ok || i.stage_trouble {
        LedState::StorageFault
    } else if !i.ready {
        LedState::Booting
    } else if i.provisioning == Provisioning::Refused {
        // The field engineer is looking at the box: the refusal first, then the rest.
        LedState::ProvisionRefused
    } else if i.auth_failing {
        LedState::AuthFailing
    } else if i.cloud_down {
        LedState::Buffering
    } else {
        LedState::Healthy
    }
}

/// The blink pattern (bsp's health) that shows a state.
pub(crate) fn pattern(state: LedState) -> bsp::Health {
    match state {
        LedState::Booting => bsp::Health::Booting,
        LedState::Healthy => bsp::Health::Ok,
        LedState::Buffering => bsp::Health::Degraded,
        LedState::AuthFailing => bsp::Health::AuthFailing,
        LedState::StorageFault => bsp::Health::Fault,
        LedState::Updating => bsp::Health::Updating,
        LedState::Provisioning => bsp::Health::Provisioning,
        LedState::ProvisionRefused => bsp::Health::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bsp::sim::SimLine;
    use bsp::StatusLed;

    const HEALTHY: Inputs = Inputs {
        ready: true,
        updating: false,
        provisioning: Provisioning::Idle,
        journal_ok: true,
        stage_trouble: false,
        auth_failing: false,
        cloud_down: false,
    };

    #[test]
    fn the_most_urgent_state_wins() {
        let cases = [
            (HEALTHY, LedState::Healthy),
            (Inputs { ready: false, ..HEALTHY }, LedState::Booting),
            (Inputs { cloud_down: true, ..HEALTHY }, LedState::Buffering),
            (Inputs { cloud_down: true, auth_failing: true, ..HEALTHY }, LedState::AuthFailing),
            (Inputs { journal_ok: false, auth_failing: true, ..HEALTHY }, LedState::StorageFault),
            (Inputs { stage_trouble: true, ..HEALTHY }, LedState::StorageFault),
            (Inputs { provisioning: Provisioning::Running, journal_ok: false, ..HEALTHY }, LedState::Provisioning),
            (Inputs { provisioning: Provisioning::Refused, cloud_down: true, ..HEALTHY }, LedState::ProvisionRefused),
            (Inputs { provisioning: Provisioning::Refused, journal_ok: false, ..HEALTHY }, LedState::StorageFault),
            (Inputs { ready: false, journal_ok: false, ..HEALTHY }, LedState::StorageFault),
            (Inputs { updating: true, journal_ok: false, ready: false, ..HEALTHY }, LedState::Updating),
        ];
        for (inputs, want) in cases {
            assert_eq!(led_state(&inputs), want, "{inputs:?}");
        }
    }

    #[test]
    fn the_provisioning_marker_says_running_or_refused() {
        assert_eq!(Provisioning::from_marker("provisioning\n"), Provisioning::Running);
        assert_eq!(Provisioning::from_marker("refused\n"), Provisioning::Refused);
        assert_eq!(Provisioning::from_marker("applied\n"), Provisioning::Idle);
        assert_eq!(Provisioning::from_marker(""), Provisioning::Idle);
    }

    /// The LED level at each of `times` (ms since the state was first shown).
    fn levels(state: LedState, times: &[u64]) -> Vec<bool> {
        let line = SimLine::new(false);
        let mut led = StatusLed::new(line.pin());
        led.set_health(pattern(state));
        times
            .iter()
            .map(|&t| {
                led.tick(t).unwrap();
                line.is_high()
            })
            .collect()
    }

    #[test]
    fn each_state_blinks_its_own_way_on_a_simulated_led() {
        let times = [0, 120, 200, 320, 600, 1000, 1850];
        let seen: Vec<(LedState, Vec<bool>)> = LedState::ALL.iter().map(|&s| (s, levels(s, &times))).collect();
        let want = [
            (LedState::Booting, vec![true, false, false, false, false, true, false]),
            (LedState::Healthy, vec![true; 7]),
            (LedState::Buffering, vec![true, true, true, true, false, true, false]),
            (LedState::AuthFailing, vec![true, true, false, true, false, false, true]),
            (LedState::StorageFault, vec![true, false, true, false, true, true, true]),
            (LedState::Updating, vec![true, true, true, true, true, true, false]),
            (LedState::Provisioning, vec![true, true, false, true, true, false, false]),
            (LedState::ProvisionRefused, vec![true, true, true, false, true, true, false]),
        ];
        assert_eq!(seen, want);
        // No two states look the same over the sampled times.
        for (i, a) in seen.iter().enumerate() {
            for b in &seen[i + 1..] {
                assert_ne!(a.1, b.1, "{:?} and {:?}", a.0, b.0);
            }
        }
    }
}
