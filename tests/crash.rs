//! Crash safety: SIGKILL the real gateway at a random moment while several connections
//! send, restart it, and check that every ACKed control ID is in the journal exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
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
        let addr = gw.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicUsize::new(0));
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let (stop, acks) = (stop.clone(), acks.clone());
                std::thread::spawn(move || {
                    let mut c = Mllp::plain(addr);
                    let mut acked = Vec::new();
                    for i in 0..1_000_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let id = format!("R{round}S{s}N{i}");
                        if c.try_send(&adt(&id)).is_err() {
                            break;
                        }
                        match c.read_ack() {
                            Some(ack) => {
                                assert_eq!(msa(&ack), ("AA".into(), id.clone()));
                                acked.push(id);
                                acks.fetch_add(1, Ordering::Relaxed);
                            }
                            None => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        // Kill after a random number of ACKs (so the kill lands mid-stream, with commits
        // in flight), bounded in time.
        let target = 5 + (rng.next() % 300) as usize;
        let deadline = Instant::now() + WAIT;
        while acks.load(Ordering::Relaxed) < target && Instant::now() < deadline {
            std::thread::yield_now();
        }
        gw.kill();
        stop.store(true, Ordering::Relaxed);
        for t in senders {
            for id in t.join().unwrap() {
                *acked_total.entry(id).or_default() += 1;
            }
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
