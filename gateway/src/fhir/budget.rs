//! The conversion budget of one message: how large a message the converter takes on and how
//! long it may work on it. Conversion time is linear in the message's size, so the size bounds
//! keep one message from holding the single convert thread (and memory) for everyone; the time
//! bound is the backstop. A message past the budget is dead-lettered with the reason.

use std::time::Duration;

use serde::Deserialize;

use crate::hl7::parser::Message;

/// `[mapping.budget]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// Most segments in one message (an ORU with this many OBX is still taken).
    pub max_segments: usize,
    /// Most repetitions of one field (PID-3 identifiers, PID-11 addresses, ...).
    pub max_repetitions: usize,
    /// Longest one message's conversion may take, in milliseconds.
    pub max_convert_ms: u64,
    /// Most heap one message's conversion may hold, in MiB (counted by [`gateway_heap`];
    /// bundling and serializing the result take up to about twice as much again).
    pub max_convert_mib: usize,
}

impl Default for Budget {
    fn default() -> Self {
        // Real messages stay far below: the largest ORUs seen carry a few hundred OBX, a PID-3
        // a handful of identifiers. 20,000 segments convert in well under a second.
        // 24 MiB of resources: an ORU of about 3,400 OBX (~7 KB each); with its bundle and
        // JSON the conversion peaks near 3x that (`cargo bench --bench convert_scaling`:
        // ~21 KB per OBX), far inside the unit's MemoryMax next to the ingest frame budget.
        Budget { max_segments: 20_000, max_repetitions: 1_000, max_convert_ms: 5_000, max_convert_mib: 24 }
    }
}

/// Why a message is past its budget (counts only: no content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverBudget {
    #[error("message has {found} segments; the conversion budget allows {limit} ([mapping.budget] max_segments)")]
    Segments { found: usize, limit: usize },
    #[error("segment {segment} field {field} has {found} repetitions; the conversion budget allows {limit} ([mapping.budget] max_repetitions)")]
    Repetitions { segment: usize, field: usize, found: usize, limit: usize },
    #[error("conversion took longer than {limit_ms} ms ([mapping.budget] max_convert_ms)")]
    Time { limit_ms: u64 },
    #[error("conversion needed more than {limit_mib} MiB ([mapping.budget] max_convert_mib)")]
    Memory { limit_mib: usize },
}

impl Budget {
    /// No limits (benchmarks that measure how cost grows with size).
    pub fn unlimited() -> Budget {
        Budget {
            max_segments: usize::MAX,
            max_repetitions: usize::MAX,
            max_convert_ms: u64::MAX,
            max_convert_mib: usize::MAX >> 20,
        }
    }

    pub fn max_time(&self) -> Duration {
        Duration::from_millis(self.max_convert_ms)
    }

    /// Heap bytes allowed, as [`gateway_heap::thread_net`] counts them.
    pub fn max_heap(&self) -> isize {
        isize::try_from(self.max_convert_mib.saturating_mul(1 << 20)).unwrap_or(isize::MAX)
    }

    /// Checks the message's size against the budget; one pass over its fields.
    pub fn check(&self, msg: &Message) -> Result<(), OverBudget> {
        let found = msg.segment_count();
        if found > self.max_segments {
            return Err(OverBudget::Segments { found, limit: self.max_segments });
        }
        for seg in msg.segments() {
            for field in 1..=seg.field_count() {
                let found = seg.field(field).reps().count();
                if found > self.max_repetitions {
                    return Err(OverBudget::Repetitions {
                        segment: seg.index(),
                        field,
                        found,
                        limit: self.max_repetitions,
                    });
                }
            }
        }
        Ok(())
    }
}
