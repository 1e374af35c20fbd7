//! A doorbell between threads: the journal writer rings after each commit, a background
//! stage waits on it (with a timeout, so work left from before a restart is found too).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Clone, Default, Debug)]
pub struct Doorbell(Arc<(Mutex<bool>, Condvar)>);

impl Doorbell {
    /// Rings; rings before the next wait coalesce into one.
    pub(crate) fn ring(&self) {
        let (rung, cv) = &*self.0;
        *rung.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    /// Waits for a ring or the timeout; true if it rang.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let (rung, cv) = &*self.0;
        let guard = rung.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = cv.wait_timeout_while(guard, timeout, |r| !*r).unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_wake_a_waiter_and_coalesce() {
        let bell = Doorbell::default();
        assert!(!bell.wait(Duration::from_millis(1)));
        bell.ring();
        bell.ring();
        assert!(bell.wait(Duration::from_secs(5)));
        assert!(!bell.wait(Duration::from_millis(1)), "two rings before a wait are one");
        let other = bell.clone();
        let t = std::thread::spawn(move || other.wait(Duration::from_secs(30)));
        bell.ring();
        assert!(t.join().unwrap());
    }
}
