//! Crash safety: SIGKILL the real gateway at a random moment while several connections
//! send, restart it, and check that every ACKed control ID is in the journal exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gateway_tests::*;

const ROUNDS: usize = 20;
const SENDERS: usize = 4;

/// A small xorshift generator seeded from the clock; the seed is printed so a failing
/// round can be replayed with CRASH_SEED.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acked_message() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    eprintln!("CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let setup = Setup::new("[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n");
    let started = Instant::now();
    let mut acked_total: HashMap<String, usize> = HashMap::new();
    for round in 0..ROUNDS {
        let gw = setup.start();
        let senders = Senders::start(gw.addr(), SENDERS, &format!("R{round}"));
        // Kill after a random number of ACKs, so the kill lands mid-stream with commits in
        // flight.
        senders.wait_for_acks(5 + (rng.next() % 300) as usize);
        gw.kill();
        for id in senders.finish() {
            *acked_total.entry(id).or_default() += 1;
        }
        // Restart on the same journal: recovery must find everything that was ACKed.
        let gw = setup.start();
        let counts = journal_counts(&setup.db_path());
        for id in acked_total.keys() {
            assert_eq!(counts.get(id), Some(&1), "round {round}: ACKed {id} must be stored exactly once (seed {seed})");
        }
        let duplicates: Vec<_> = counts.iter().filter(|(_, &n)| n != 1).collect();
        assert!(duplicates.is_empty(), "no control ID twice: {duplicates:?}");
        gw.kill();
    }
    eprintln!("{ROUNDS} rounds, {} ACKed messages checked, {:?}", acked_total.len(), started.elapsed());
    assert!(acked_total.len() >= ROUNDS * 5);
    assert!(started.elapsed() < Duration::from_secs(60), "stays under a minute");
}
