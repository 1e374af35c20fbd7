//! The forwarder's dequeue queries on an outbox holding a million delivered rows (and a
//! few thousand pending ones), on the real schema: they must stay as fast as on an empty
//! journal. `cargo bench -p gateway --bench dequeue`

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::store::db::{self, Synchronous};
use gateway::store::delivery;
use gateway::store::state::{JournalState, OutboxState};
use rusqlite::params;

const DELIVERED: i64 = 1_000_000;
const PENDING: i64 = 2_000;

fn outbox() -> (tempfile::TempDir, rusqlite::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut conn = db::open(&path, None, Synchronous::Full).unwrap();
    db::migrate(&mut conn, &path).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut journal = tx
            .prepare("INSERT INTO journal (seq, received_at, listener, sender, control_id, message_type, lane, payload_hash, state, payload) VALUES (?1, 0, 'l', 's', ?1, 'ADT^A08', ?2, x'00', ?3, x'00')")
            .unwrap();
        let mut outbox = tx
            .prepare("INSERT INTO outbox (journal_seq, part, lane, created_at, state, bundle) VALUES (?1, 0, ?2, 0, ?3, x'00')")
            .unwrap();
        for seq in 1..=DELIVERED + PENDING {
            let (lane, journal_state, state) = if seq <= DELIVERED {
                (format!("lane{}", seq % 5000), JournalState::Delivered, OutboxState::Delivered)
            } else {
                (format!("lane{}", seq % 500), JournalState::Converted, OutboxState::Pending)
            };
            journal.execute(params![seq, lane, journal_state]).unwrap();
            outbox.execute(params![seq, lane, state]).unwrap();
        }
    }
    tx.commit().unwrap();
    (dir, conn)
}

fn bench(c: &mut Criterion) {
    let (_dir, conn) = outbox();
    let mut lane = 0;
    c.bench_function("head of a lane (1M delivered rows)", |b| {
        let mut stmt = conn.prepare(delivery::LANE_PENDING).unwrap();
        b.iter(|| {
            lane = (lane + 1) % 500;
            stmt.query(params![format!("lane{lane}"), 0]).unwrap().next().unwrap().unwrap().get::<_, i64>(0).unwrap()
        })
    });
    c.bench_function("a page of 1000 pending rows in journal order (1M delivered rows)", |b| {
        let mut stmt = conn.prepare(delivery::PENDING_AFTER).unwrap();
        b.iter(|| stmt.query_map([0, 1000], |r| r.get::<_, i64>(1)).unwrap().count())
    });
    c.bench_function("new rows after an id (1M delivered rows)", |b| {
        let mut stmt = conn.prepare(delivery::NEW_ROWS).unwrap();
        b.iter(|| stmt.query_map([DELIVERED + PENDING - 10], |r| r.get::<_, i64>(2)).unwrap().count())
    });
    let mut seq = 0;
    c.bench_function("parts of a message left (1M delivered rows)", |b| {
        let mut stmt = conn.prepare(delivery::MESSAGE_PARTS_LEFT).unwrap();
        b.iter(|| {
            seq = (seq + 7919) % (DELIVERED + PENDING) + 1;
            stmt.query_row(params![seq, OutboxState::Pending, OutboxState::Dead], |r| r.get::<_, i64>(0)).unwrap()
        })
    });
}

criterion_group! { name = benches; config = Criterion::default().sample_size(30); targets = bench }
criterion_main!(benches);
