//! How conversion cost grows with message size: time and peak heap of the convert stage's own
//! path (`pipeline::convert::convert_message`: parse, budget, convert, bundle, serialize) for
//! an ADT whose PID-3 repeats 1…16,000 times and an ORU with 10…50,000 OBX. Linear growth
//! shows as a flat cost per unit (and a growth ratio equal to the size ratio).
//! `cargo bench -p gateway --bench convert_scaling`
//!
//! The budget is lifted here (the default dead-letters the largest of these messages) so the
//! converter's own cost is what is measured.

use std::time::{Duration, Instant};

use gateway::fhir::budget::Budget;
use gateway::fhir::bundle::Profile;
use gateway::fhir::site::SiteMaps;
use gateway::pipeline::convert::convert_message;

// The gateway's allocator: it also keeps each thread's peak.
#[global_allocator]
static ALLOC: gateway_heap::Counted = gateway_heap::Counted;

const MSH: &str = "MSH|^~\\&|LAB|HOSP|GW|CLOUD|20260316081500-0500||";

fn adt_with_identifiers(n: usize) -> Vec<u8> {
    let ids: Vec<String> = (0..n).map(|i| format!("{}^^^HOSP^MR", 100_000 + i)).collect();
    format!("{MSH}ADT^A08^ADT_A01|C1|P|2.5.1\rEVN|A08|20260316081500-0500\rPID|1||{}||DOE^JANE||19800101|F\rPV1|1|I|W^1^A\r", ids.join("~"))
        .into_bytes()
}

fn oru_with_results(n: usize) -> Vec<u8> {
    let mut m = format!(
        "{MSH}ORU^R01^ORU_R01|C2|P|2.5.1\rPID|1||7700123^^^HOSP^MR||DOE^JANE||19800101|F\rOBR|1|P1|F1|24323-8^Metabolic panel^LN|||20260316070000-0500||||||||||||||||||F\r"
    );
    for i in 1..=n {
        m.push_str(&format!(
            "OBX|{i}|NM|{}-{}^Test {i}^LN|{i}|{}|mmol/L^^UCUM|1-9|N|||F\r",
            1000 + i % 9000,
            i % 10,
            i % 97
        ));
    }
    m.into_bytes()
}

/// Mean time and peak heap (bytes above what was live before) of one conversion.
fn measure(raw: &[u8], site: &SiteMaps) -> (Duration, usize) {
    let base = gateway_heap::thread_net();
    gateway_heap::reset_thread_peak();
    let bundles = convert_message(raw, site, Profile::Generic).expect("converts");
    std::hint::black_box(bundles);
    let peak = (gateway_heap::thread_peak() - base) as usize;
    let mut runs = 0u32;
    let started = Instant::now();
    while runs < 3 || started.elapsed() < Duration::from_millis(300) {
        std::hint::black_box(convert_message(raw, site, Profile::Generic).expect("converts"));
        runs += 1;
    }
    (started.elapsed() / runs, peak)
}

fn series(name: &str, unit: &str, sizes: &[usize], make: fn(usize) -> Vec<u8>, site: &SiteMaps) {
    println!("\n{name}");
    println!(
        "{:>8} {unit:<6} {:>10} {:>12} {:>14} {:>12} {:>12}",
        "n", "bytes", "time", "time/unit", "peak heap", "heap/unit"
    );
    let mut previous: Option<(usize, Duration)> = None;
    for &n in sizes {
        let raw = make(n);
        let (time, peak) = measure(&raw, site);
        let per_unit = time.as_secs_f64() * 1e6 / n as f64;
        print!(
            "{n:>8} {:<6} {:>10} {:>10.2} ms {:>11.2} µs {:>10.1} MB {:>9.0} B",
            "",
            raw.len(),
            time.as_secs_f64() * 1e3,
            per_unit,
            peak as f64 / 1e6,
            peak as f64 / n as f64
        );
        if let Some((m, t)) = previous {
            // Linear: time grows by the size ratio (a ratio well above it means superlinear).
            print!("   x{:.1} size -> x{:.1} time", n as f64 / m as f64, time.as_secs_f64() / t.as_secs_f64());
        }
        println!();
        previous = Some((n, time));
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mut site = SiteMaps::empty(jiff::tz::TimeZone::get("America/Chicago").unwrap());
    site.budget = Budget::unlimited();
    let (reps, obx): (&[usize], &[usize]) = if quick {
        (&[1, 10], &[10, 100])
    } else {
        (&[1, 10, 100, 1_000, 4_000, 16_000], &[10, 100, 1_000, 10_000, 50_000])
    };
    series("ADT^A08, PID-3 repetitions", "reps", reps, adt_with_identifiers, &site);
    series("ORU^R01, OBX segments", "OBX", obx, oru_with_results, &site);
}
