//! The in-flight frame budget: one process-wide count of the bytes held for MLLP frames
//! across every connection of every listener, so memory stays bounded however many
//! connections send large frames at once.
//!
//! What is counted is what is really held: a frame buffer's capacity (the decoder grows it
//! only as far as a connection's reservation covers) twice, because while a frame is committed
//! its plaintext and its sealed copy exist together. Each connection's first
//! [`FREE_PER_CONNECTION`] bytes are not drawn from the budget, so ordinary messages (a few
//! KiB) never wait behind large ones; that part is a fixed cost per connection, bounded by
//! `max_connections`.
//!
//! At the limit a connection waits for room: it stops reading, the sender's TCP window
//! closes, and either others release theirs or its frame timeout closes it (releasing its
//! share). Nothing waits forever.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::log_limit::{self, Repeats};
use crate::metrics::Metrics;

/// Frame bytes a connection may hold without drawing on the budget: one read's worth.
pub(crate) const FREE_PER_CONNECTION: usize = 64 * 1024;

/// Largest single draw on the semaphore (its API counts in `u32`).
const MAX_DRAW: usize = 1 << 30;

/// The shared budget. Cheap to share: connections hold an `Arc` of it.
pub(crate) struct FrameBudget {
    permits: Semaphore,
    total: usize,
    metrics: Arc<Metrics>,
    warn: Repeats,
}

impl FrameBudget {
    pub(crate) fn new(total: usize, metrics: Arc<Metrics>) -> Arc<FrameBudget> {
        metrics.inflight_frame_budget.set(total as i64);
        Arc::new(FrameBudget { permits: Semaphore::new(total), total, metrics, warn: Repeats::new(log_limit::EVERY) })
    }

    /// Bytes a frame buffer of `capacity` bytes draws from the budget.
    pub(crate) fn cost(capacity: usize) -> usize {
        2 * capacity.saturating_sub(FREE_PER_CONNECTION)
    }
}

/// The share of the budget one frame buffer holds; given back when dropped.
pub(crate) struct Reservation {
    budget: Arc<FrameBudget>,
    held: usize,
}

impl Reservation {
    pub(crate) fn new(budget: Arc<FrameBudget>) -> Reservation {
        Reservation { budget, held: 0 }
    }

    #[cfg(test)]
    /// Bytes held from the budget.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Grows the share to cover a frame buffer of `capacity` bytes, waiting while the budget
    /// is spent. Cancel-safe: what was already drawn stays held (and is given back on drop).
    pub(crate) async fn cover(&mut self, capacity: usize) {
        let budget = self.budget.clone();
        let mut waited = false;
        while self.held < FrameBudget::cost(capacity) {
            let draw = (FrameBudget::cost(capacity) - self.held).min(MAX_DRAW) as u32;
            let permit = match budget.permits.try_acquire_many(draw) {
                Ok(p) => p,
                Err(_) => {
                    if !waited {
                        waited = true;
                        budget.metrics.inflight_frame_waits.inc();
                        if let Some(more) = budget.warn.hit("") {
                            tracing::warn!(
                                budget_bytes = budget.total,
                                waits_not_logged = more.left_out,
                                "in-flight frame budget spent: connections with large frames stop reading until it has room ([limits] inflight_frame_bytes)"
                            );
                        }
                    }
                    budget.permits.acquire_many(draw).await.expect("the budget semaphore is never closed")
                }
            };
            permit.forget();
            self.held += draw as usize;
            budget.metrics.inflight_frame_bytes.add(draw as i64);
        }
    }

    /// Moves the share out (to travel with a finished frame's buffer); this reservation
    /// starts again from nothing, like the decoder's new buffer.
    pub(crate) fn take(&mut self) -> Reservation {
        Reservation { budget: self.budget.clone(), held: std::mem::take(&mut self.held) }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.permits.add_permits(self.held);
            self.budget.metrics.inflight_frame_bytes.add(-(self.held as i64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_first_64_kib_are_free_the_rest_counts_twice() {
        assert_eq!(FrameBudget::cost(0), 0);
        assert_eq!(FrameBudget::cost(FREE_PER_CONNECTION), 0);
        assert_eq!(FrameBudget::cost(FREE_PER_CONNECTION + 10), 20);
    }

    #[tokio::test]
    async fn a_spent_budget_makes_the_next_wait_until_a_share_is_dropped() {
        let metrics = Arc::new(Metrics::default());
        let budget = FrameBudget::new(1000, metrics.clone());
        let mut a = Reservation::new(budget.clone());
        a.cover(FREE_PER_CONNECTION + 400).await;
        assert_eq!((a.held(), metrics.inflight_frame_bytes.get()), (800, 800));
        let mut b = Reservation::new(budget.clone());
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.cover(FREE_PER_CONNECTION + 200)).await;
        assert!(waiting.is_err(), "only 200 left: waits");
        assert_eq!(metrics.inflight_frame_waits.get(), 1);
        // The share moves with a finished frame and is given back with it.
        let frame = a.take();
        assert_eq!(a.held(), 0);
        drop(frame);
        tokio::time::timeout(Duration::from_secs(1), b.cover(FREE_PER_CONNECTION + 200)).await.expect("room again");
        assert_eq!(b.held(), 400);
        drop(b);
        drop(a);
        assert_eq!(metrics.inflight_frame_bytes.get(), 0);
        assert_eq!(budget.permits.available_permits(), 1000);
    }
}
