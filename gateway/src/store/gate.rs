//! Order among the gateway's own writers. Several connections write to one SQLite file, and
//! SQLite's busy handler only polls (sleeping 1, 2, 5 … 100 ms): a connection that commits
//! back to back — the forwarder's recorder while a backlog drains — took the write lock
//! every time and starved the ingest writer for seconds (ACKs late, then AE "database is
//! locked"). So background writers (convert stage, recorder, maintenance) pass this gate
//! around their transactions, one at a time, and do not start one while the ingest writer
//! is writing or wrote within the last [`QUIET`] (it is about to write again) — for at most
//! [`PATIENCE`], so a busy feed delays the background without stopping it. Ingest only
//! announces itself: it never waits here, only (through SQLite) for a background
//! transaction already running. The busy timeout still covers other
//! processes (the `deadletter` CLI).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// After an ingest commit, how long background writers leave the lock to the next one.
pub(crate) const QUIET: Duration = Duration::from_millis(2);
/// The longest a background writer defers to a busy ingest writer that is between commits.
pub(crate) const PATIENCE: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
pub struct WriteGate {
    state: Mutex<State>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// A background writer is in its transaction.
    held: bool,
    /// Ingest commits under way (announced, not yet done).
    ingest: usize,
    last_ingest: Option<Instant>,
}

/// A writer's turn, until dropped.
pub(crate) struct Pass<'a> {
    gate: &'a WriteGate,
    ingest: bool,
}

impl WriteGate {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// For the ingest writer, around its transaction: background writers wait until it is
    /// done. Returns at once.
    pub(crate) fn ingest(&self) -> Pass<'_> {
        self.lock().ingest += 1;
        Pass { gate: self, ingest: true }
    }

    /// For the convert stage, the forwarder's recorder and maintenance, around a
    /// transaction: waits for the other background writer and for ingest.
    pub(crate) fn background(&self) -> Pass<'_> {
        let asked = Instant::now();
        let mut s = self.lock();
        loop {
            let busy = s.held || s.ingest > 0;
            let recent = s.last_ingest.is_some_and(|t| t.elapsed() < QUIET) && asked.elapsed() < PATIENCE;
            s = match (busy, recent) {
                (false, false) => break,
                (true, _) => self.turn.wait(s).unwrap_or_else(|e| e.into_inner()),
                (false, true) => self.turn.wait_timeout(s, QUIET).unwrap_or_else(|e| e.into_inner()).0,
            };
        }
        s.held = true;
        Pass { gate: self, ingest: false }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        if self.ingest {
            s.ingest -= 1;
            s.last_ingest = Some(Instant::now());
        } else {
            s.held = false;
        }
        drop(s);
        self.gate.turn.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn background_writers_go_one_at_a_time_and_never_while_ingest_writes() {
        let gate = Arc::new(WriteGate::default());
        let ingest_pass = gate.ingest();
        // Ingest does not wait, even for itself.
        drop(gate.ingest());
        let started = Arc::new(AtomicUsize::new(0));
        let inside = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let (gate, started, inside) = (gate.clone(), started.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let _pass = gate.background();
                        started.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "one background writer at a time");
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        // While ingest is under way, no background transaction starts.
        for _ in 0..1000 {
            std::thread::yield_now();
        }
        assert_eq!(started.load(Ordering::SeqCst), 0);
        drop(ingest_pass);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(started.load(Ordering::SeqCst), 300);
    }
}
