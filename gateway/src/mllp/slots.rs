//! Connection slots of one listener: at most `max` connections, at most `per_source` from one
//! address, and a policy that cannot lock a new sender out: when a new connection finds no
//! room, the connection idle the longest (no frame in progress, none being committed) is
//! closed for it — among the connections of the same address when that address is at its
//! limit, so one host cycling connections only ever pushes out its own. Only when every
//! candidate is busy with a frame is the newcomer refused; a busy connection is never cut (its
//! sender is owed an ACK after the commit), and it cannot stay busy past the frame timeout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::log_limit::{self, Repeats};
use crate::metrics::Metrics;

pub(crate) struct Slots {
    listener: Arc<str>,
    max: usize,
    per_source: usize,
    metrics: Arc<Metrics>,
    open: Mutex<Open>,
    warn_full: Repeats,
    warn_per_source: Repeats,
    warn_evicted: Repeats,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    /// At most `max` staying entries plus the few told to leave and not gone yet; scanned
    /// linearly.
    entries: HashMap<u64, Entry>,
}

struct Entry {
    source: IpAddr,
    /// The last complete frame, or the connection's start.
    last_active: Instant,
    busy: bool,
    /// Chosen to make room; closing.
    leaving: bool,
    close: CancellationToken,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its address holds `per_source` connections, all busy.
    PerSource,
    /// The listener holds `max` connections, all busy.
    Full,
}

impl Slots {
    pub(crate) fn new(listener: Arc<str>, max: usize, per_source: usize, metrics: Arc<Metrics>) -> Arc<Slots> {
        Arc::new(Slots {
            listener,
            max,
            per_source,
            metrics,
            open: Mutex::default(),
            warn_full: Repeats::new(log_limit::EVERY),
            warn_per_source: Repeats::new(log_limit::EVERY),
            warn_evicted: Repeats::new(log_limit::EVERY),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection from `source`, making room if needed; refusals are counted
    /// and logged (rate-limited).
    pub(crate) fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Slot, Refused> {
        let source = source.to_canonical();
        let mut open = self.lock();
        let staying = || open.entries.values().filter(|e| !e.leaving);
        let from_source = staying().filter(|e| e.source == source).count();
        let total = staying().count();
        let room = if from_source >= self.per_source {
            open.close_idlest(|e| e.source == source).ok_or(Refused::PerSource)
        } else if total >= self.max {
            open.close_idlest(|_| true).ok_or(Refused::Full)
        } else {
            Ok(false)
        };
        match room {
            Ok(closed_one) => {
                let id = open.next_id;
                open.next_id += 1;
                let close = CancellationToken::new();
                let entry =
                    Entry { source, last_active: Instant::now(), busy: false, leaving: false, close: close.clone() };
                open.entries.insert(id, entry);
                drop(open);
                if closed_one {
                    self.metrics.connections_evicted.inc();
                    if let Some(more) = self.warn_evicted.hit("") {
                        tracing::warn!(listener = %self.listener, max_connections = self.max, per_source = self.per_source, closed_not_logged = more.left_out, "connection limit reached: the connection idle the longest was closed to admit a new one");
                    }
                }
                Ok(Slot { slots: self.clone(), id, close })
            }
            Err(refused) => {
                drop(open);
                match refused {
                    Refused::PerSource => {
                        self.metrics.refused_per_source.inc();
                        if let Some(more) = self.warn_per_source.hit("") {
                            tracing::warn!(listener = %self.listener, peer = %source, per_source = self.per_source, refused_not_logged = more.left_out, "per-source connection limit reached and all of its connections busy; connection closed");
                        }
                    }
                    Refused::Full => {
                        self.metrics.refused_limit.inc();
                        if let Some(more) = self.warn_full.hit("") {
                            tracing::warn!(listener = %self.listener, max_connections = self.max, refused_not_logged = more.left_out, "connection limit reached and every connection busy with a frame; connection closed");
                        }
                    }
                }
                Err(refused)
            }
        }
    }
}

impl Open {
    /// Tells the staying, idle connection matching `candidate` that was active the longest
    /// ago to close. `Some(true)` if one was found.
    fn close_idlest(&mut self, candidate: impl Fn(&Entry) -> bool) -> Option<bool> {
        // Ties (same instant) go to the older connection.
        let (_, idlest) = self
            .entries
            .iter_mut()
            .filter(|(_, e)| !e.leaving && !e.busy && candidate(e))
            .min_by_key(|(id, e)| (e.last_active, **id))?;
        idlest.leaving = true;
        idlest.close.cancel();
        Some(true)
    }
}

/// One admitted connection's slot; freed when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    close: CancellationToken,
}

impl Slot {
    /// Call before acting on received bytes: marks the connection busy so it cannot be chosen
    /// to make room. `false` if it already was chosen: it must close without acting on them.
    pub(crate) fn begin(&self) -> bool {
        let mut open = self.slots.lock();
        let Some(e) = open.entries.get_mut(&self.id) else { return false };
        if e.leaving {
            return false;
        }
        if !e.busy {
            e.busy = true;
            self.slots.metrics.connections_in_frame.add(1);
        }
        true
    }

    /// Between frames again; `last_frame` is when its last frame was answered (or it
    /// connected): the longest idle gives way first.
    pub(crate) fn rest(&self, last_frame: Instant) {
        let mut open = self.slots.lock();
        if let Some(e) = open.entries.get_mut(&self.id) {
            e.last_active = last_frame;
            if e.busy {
                e.busy = false;
                self.slots.metrics.connections_in_frame.add(-1);
            }
        }
    }

    /// Resolves when this connection was chosen to make room (only ever while it rests).
    pub(crate) fn closing(&self) -> WaitForCancellationFuture<'_> {
        self.close.cancelled()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        if let Some(e) = open.entries.remove(&self.id) {
            if e.busy {
                self.slots.metrics.connections_in_frame.add(-1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn slots(max: usize, per_source: usize) -> (Arc<Slots>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (Slots::new(Arc::from("t"), max, per_source, metrics.clone()), metrics)
    }

    #[test]
    fn a_full_listener_closes_its_longest_idle_connection_for_a_newcomer() {
        let (slots, metrics) = slots(2, 10);
        let a = slots.admit(ip(1)).unwrap();
        let b = slots.admit(ip(2)).unwrap();
        // `a` answered a frame after `b` connected: `b` is now the longest idle.
        assert!(a.begin());
        a.rest(Instant::now() + std::time::Duration::from_secs(1));
        let c = slots.admit(ip(3)).unwrap();
        assert!(b.close.is_cancelled() && !a.close.is_cancelled());
        assert!(!b.begin(), "a chosen connection may not start a frame");
        assert_eq!(metrics.connections_evicted.get(), 1);
        // Busy connections are never chosen.
        assert!(a.begin() && c.begin());
        drop(b);
        assert_eq!(slots.admit(ip(4)).err(), Some(Refused::Full));
        assert_eq!(metrics.refused_limit.get(), 1);
        assert_eq!(metrics.connections_in_frame.get(), 2);
        c.rest(Instant::now() + std::time::Duration::from_secs(2));
        assert!(slots.admit(ip(4)).is_ok());
        assert!(c.close.is_cancelled());
        drop((a, c));
        assert_eq!(metrics.connections_in_frame.get(), 0);
    }

    #[test]
    fn a_source_at_its_limit_only_pushes_out_its_own_connections() {
        let (slots, metrics) = slots(10, 2);
        let other = slots.admit(ip(9)).unwrap();
        let a1 = slots.admit(ip(1)).unwrap();
        let a2 = slots.admit(ip(1)).unwrap();
        let a3 = slots.admit(ip(1)).unwrap();
        assert!(a1.close.is_cancelled() && !other.close.is_cancelled());
        assert!(a2.begin() && a3.begin());
        assert_eq!(slots.admit(ip(1)).err(), Some(Refused::PerSource));
        assert_eq!(metrics.refused_per_source.get(), 1);
        assert!(slots.admit(ip(2)).is_ok(), "other sources are not limited by it");
        // An IPv4-mapped IPv6 address is the same source.
        let mapped = IpAddr::from(std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(slots.admit(mapped).err(), Some(Refused::PerSource));
    }
}
