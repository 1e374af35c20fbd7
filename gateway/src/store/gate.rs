//! Order among the gateway's own writers. Several connections write to one SQLite file, and
//! SQLite's busy handler only polls (sleeping 1, 2, 5 … 100 ms): a connection that commits
//! back to back — the forwarder's recorder while a backlog drains — took the write lock
//! every time and starved the ingest writer for seconds (ACKs late, then AE "database is
//! locked"). Every writer in the process passes this gate around its transaction; ingest
//! goes first, background writers wait while it waits. The busy timeout still covers other
//! processes (the `deadletter` CLI).

use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug, Default)]
pub struct WriteGate {
    state: Mutex<State>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct State {
    held: bool,
    ingest_waiting: usize,
}

/// The right to write, until dropped.
pub struct Pass<'a> {
    gate: &'a WriteGate,
}

impl WriteGate {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.turn.wait(s).unwrap_or_else(|e| e.into_inner())
    }

    /// For the ingest writer: next as soon as the current writer is done.
    pub fn ingest(&self) -> Pass<'_> {
        let mut s = self.lock();
        s.ingest_waiting += 1;
        while s.held {
            s = self.wait(s);
        }
        s.ingest_waiting -= 1;
        s.held = true;
        Pass { gate: self }
    }

    /// For the convert stage, the forwarder's recorder and maintenance: after any waiting
    /// ingest.
    pub fn background(&self) -> Pass<'_> {
        let mut s = self.lock();
        while s.held || s.ingest_waiting > 0 {
            s = self.wait(s);
        }
        s.held = true;
        Pass { gate: self }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.lock().held = false;
        self.gate.turn.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn ingest_is_not_starved_by_a_writer_that_never_pauses() {
        let gate = Arc::new(WriteGate::default());
        let stop = Arc::new(AtomicBool::new(false));
        let inside = Arc::new(AtomicUsize::new(0));
        // A background writer re-entering the gate with no pause at all.
        let background = {
            let (gate, stop, inside) = (gate.clone(), stop.clone(), inside.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _pass = gate.background();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "one writer at a time");
                    std::thread::sleep(Duration::from_millis(2));
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        };
        // The background writer is busy before ingest asks, and again between its asks.
        while inside.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let mut worst = Duration::ZERO;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(3));
            let asked = Instant::now();
            let pass = gate.ingest();
            worst = worst.max(asked.elapsed());
            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "one writer at a time");
            inside.fetch_sub(1, Ordering::SeqCst);
            drop(pass);
        }
        stop.store(true, Ordering::Relaxed);
        background.join().unwrap();
        // At most the background transaction in progress (2 ms), with scheduling slack.
        assert!(worst < Duration::from_millis(100), "ingest waited {worst:?}");
    }
}
