//! One handle for every background stage that runs on a std thread (journal writer,
//! maintenance, convert, the forwarder and its recorder): the thread, a stop flag and the
//! stage's wake-up, with one way to stop — [`Stage::stop`] sets the flag, wakes the thread
//! and joins it; dropping the handle does the same, so a stage never outlives its owner.
//!
//! A stage's loop checks [`Stopping::requested`] each time round and, once it is set,
//! finishes the work in hand and returns. The wake-up is whatever the thread blocks on
//! between rounds (a doorbell, its input channel), so a stop never waits out an idle timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The stage's side of the stop flag.
#[derive(Clone, Debug, Default)]
pub struct Stopping(Arc<AtomicBool>);

impl Stopping {
    /// True once the stage was asked to stop.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

type Wake = Box<dyn FnOnce() + Send>;

/// A running stage; stops (signal, wake, join) when stopped or dropped.
pub struct Stage {
    stopping: Stopping,
    wake: Option<Wake>,
    thread: Option<JoinHandle<()>>,
}

impl Stage {
    /// Runs `body` on a thread named `name`. `wake` is called once, after the flag is set,
    /// to unblock the thread wherever it waits.
    pub fn spawn(
        name: &str,
        wake: impl FnOnce() + Send + 'static,
        body: impl FnOnce(Stopping) + Send + 'static,
    ) -> Stage {
        let stopping = Stopping::default();
        let flag = stopping.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(flag))
            .unwrap_or_else(|e| panic!("spawn the {name} thread: {e}"));
        Stage { stopping, wake: Some(Box::new(wake)), thread: Some(thread) }
    }

    /// Asks the stage to stop, wakes it and waits until it has finished the work in hand.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stopping.0.store(true, Ordering::Release);
        if let Some(wake) = self.wake.take() {
            wake();
        }
        if let Some(thread) = self.thread.take() {
            // A thread that panicked has already told the liveness beats (`metrics::liveness`).
            let _ = thread.join();
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A stage that blocks on a channel until woken, and reports what it saw.
    fn blocked_stage() -> (Stage, mpsc::Receiver<bool>) {
        let (wake_tx, wake_rx) = mpsc::channel::<()>();
        let (seen_tx, seen_rx) = mpsc::channel();
        let stage = Stage::spawn(
            "test-stage",
            move || {
                let _ = wake_tx.send(());
            },
            move |stopping| {
                // Blocks for far longer than any test runs, unless woken.
                let _ = wake_rx.recv_timeout(Duration::from_secs(3600));
                let _ = seen_tx.send(stopping.requested());
            },
        );
        (stage, seen_rx)
    }

    #[test]
    fn stop_sets_the_flag_wakes_the_thread_and_joins_it() {
        let (stage, seen) = blocked_stage();
        assert!(seen.try_recv().is_err(), "the stage runs until stopped");
        stage.stop();
        assert_eq!(seen.try_recv(), Ok(true), "joined after the thread saw the flag");
    }

    #[test]
    fn dropping_the_handle_stops_the_stage() {
        let (stage, seen) = blocked_stage();
        drop(stage);
        assert_eq!(seen.try_recv(), Ok(true));
    }

    #[test]
    fn stopping_a_stage_whose_thread_panicked_returns() {
        let (ran_tx, ran) = mpsc::channel();
        let stage = Stage::spawn(
            "test-panics",
            || {},
            move |_| {
                let _ = ran_tx.send(());
                panic!("a stage's bug");
            },
        );
        ran.recv().unwrap();
        stage.stop();
    }
}
