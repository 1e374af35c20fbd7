//! Parse and convert throughput on one core, over the team's corpus (realistic messages of
//! every supported type). `cargo bench -p gateway --bench convert`
//!
//! Reported: parse in bytes/s (criterion prints MB/s or GB/s), convert in messages/s (elements).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway::fhir::bundle::{self, Profile};
use gateway::fhir::convert;
use gateway::fhir::site::SiteMaps;

// Same allocator as the gateway binary.
#[global_allocator]
static ALLOC: gateway_heap::Counted = gateway_heap::Counted;

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/hl7");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn bench(c: &mut Criterion) {
    let messages = corpus();
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let site = SiteMaps::empty(jiff::tz::TimeZone::get("America/Chicago").unwrap());

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("corpus", |b| {
        b.iter(|| {
            for m in &messages {
                let msg = gateway::hl7::parser::parse(m).unwrap();
                std::hint::black_box(msg.segment_count());
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("convert");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("corpus_to_transaction_bundle", |b| {
        b.iter(|| {
            for m in &messages {
                let conversion = convert::convert(m, &site).unwrap();
                let bundles = bundle::bundles(&conversion, Profile::Generic).unwrap();
                std::hint::black_box(serde_json::to_vec(&bundles[0]).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
