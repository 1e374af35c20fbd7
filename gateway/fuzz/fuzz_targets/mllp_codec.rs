//! Fuzzes the MLLP frame decoder (`gateway::mllp::codec`).
//!
//! Input layout: `[flags, max, c0, c1, c2, c3, body...]`
//! - `max`: frame limit `max + 1` (1..=256); when bit 7 of `flags` is set, "large" mode
//!   uses a limit of 4000..=6040 (around the 4096-byte TooLarge head) and repeats all of
//!   the body but its first byte `1 + (flags & 0x0f)` times, to build long frames.
//! - `c0..c3`: chunk sizes, cycled, in which the stream is handed to the decoder (as reads
//!   from a socket would be); 0 means "everything that is left".
//!
//! Checks, on arbitrary byte streams:
//! - `used <= input.len()`; `Incomplete` consumes the whole input; `used == 0` on
//!   non-empty input only for `BadEndBlock` (the byte after `<FS>` is left for the next
//!   frame), never twice in a row, so the caller's loop always terminates;
//! - frames are `<= max` and never contain `<VT>`/`<FS>`; TooLarge heads are at most
//!   4096 bytes and are a prefix of the oversize frame; the decoder is idle after a result;
//! - memory: one call never allocates more than a bound set by `max` (not by the input),
//!   and between calls the decoder holds at most one frame buffer;
//! - the results equal those of a byte-at-a-time reference model, whatever the chunking;
//! - `encode` then `decode` (any chunking) returns exactly the encoded frames (the stream
//!   split at `<FS>`, without `<VT>`; frames over the limit must come back as TooLarge).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use gateway::mllp::codec::{self, Decoded, Decoder, FrameError, END, END_CR, START};
use libfuzzer_sys::fuzz_target;

/// `HEAD_KEEP` in codec.rs (private there).
const HEAD_KEEP: usize = 4096;

// ---- allocation accounting ------------------------------------------------------------

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}
fn shrank(n: usize) {
    LIVE.fetch_sub(n, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        shrank(l.size());
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            if new >= l.size() {
                grew(new - l.size());
            } else {
                shrank(l.size() - new);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

// ---- input layout ---------------------------------------------------------------------

struct Setup {
    max: usize,
    pattern: [u8; 4],
    stream: Vec<u8>,
}

fn setup(data: &[u8]) -> Setup {
    let at = |i: usize| data.get(i).copied().unwrap_or(0);
    let flags = at(0);
    let body = data.get(6..).unwrap_or(&[]).to_vec();
    let (max, stream) = if flags & 0x80 != 0 {
        let max = 4000 + at(1) as usize * 8;
        let (first, rest) = body.split_at(body.len().min(1));
        let mut stream = first.to_vec();
        stream.extend(rest.repeat(1 + (flags & 0x0f) as usize));
        (max, stream)
    } else {
        (at(1) as usize + 1, body)
    };
    Setup { max, pattern: [at(2), at(3), at(4), at(5)], stream }
}

/// Splits `s` into chunks whose sizes cycle through `pattern` (0 = the rest).
fn chunks<'a>(s: &'a [u8], pattern: [u8; 4]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut i = 0;
    while !rest.is_empty() {
        let n = match pattern[i % 4] as usize {
            0 => rest.len(),
            n => n.min(rest.len()),
        };
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// Largest capacity a frame buffer can reach: `Vec` growth at most doubles a length
/// that is itself at most `max` (and starts at 8 bytes).
fn frame_cap_bound(max: usize) -> usize {
    (2 * max).max(8)
}

/// Checks one result on its own.
fn check_result(found: &Decoded, max: usize) {
    match found {
        Decoded::Incomplete => {}
        Decoded::Frame(f) | Decoded::Error(FrameError::BadEndBlock { content: f }) => {
            assert!(f.len() <= max, "frame of {} bytes over the limit {max}", f.len());
            assert!(!f.contains(&START) && !f.contains(&END), "frame contains VT/FS: {f:?}");
            assert!(f.capacity() <= frame_cap_bound(max), "frame capacity {} for max {max}", f.capacity());
        }
        Decoded::Error(FrameError::TooLarge { head }) => {
            assert!(head.len() <= HEAD_KEEP, "TooLarge head of {} bytes", head.len());
            assert!(head.len() >= (max + 1).min(HEAD_KEEP), "TooLarge head {} for max {max}", head.len());
            assert!(!head.contains(&START) && !head.contains(&END), "head contains VT/FS");
            assert!(head.capacity() <= (4 * max).max(HEAD_KEEP), "head capacity {} for max {max}", head.capacity());
        }
    }
}

// ---- reference model ------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Ev {
    Frame(Vec<u8>),
    BadEnd(Vec<u8>),
    /// The oversize frame's content, up to the next VT/FS (the real head is a prefix).
    TooLarge(Vec<u8>),
}

struct Model {
    events: Vec<Ev>,
    /// `in_frame[p]`: whether a frame is open after the first `p` bytes.
    in_frame: Vec<bool>,
    discarded: u64,
}

/// Byte-at-a-time reference of the documented behaviour.
fn model(s: &[u8], max: usize) -> Model {
    #[derive(PartialEq)]
    enum St {
        Idle,
        In,
        End,
    }
    let mut st = St::Idle;
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut m = Model { events: Vec::new(), in_frame: vec![false], discarded: 0 };
    for (p, &b) in s.iter().enumerate() {
        if st == St::End {
            st = St::Idle;
            let content = std::mem::take(&mut buf);
            if b == END_CR {
                m.events.push(Ev::Frame(content));
                m.in_frame.push(false);
                continue;
            }
            m.events.push(Ev::BadEnd(content));
            // The byte is looked at again, between frames.
        }
        match st {
            St::Idle => {
                if b == START {
                    st = St::In;
                    buf.clear();
                    start = p + 1;
                } else {
                    m.discarded += 1;
                }
            }
            St::In => {
                if b == END {
                    st = St::End;
                } else if b == START {
                    m.discarded += buf.len() as u64 + 1;
                    buf.clear();
                    start = p + 1;
                } else if buf.len() == max {
                    let run = s[start..].iter().position(|&x| x == START || x == END).map_or(s.len(), |i| start + i);
                    m.events.push(Ev::TooLarge(s[start..run].to_vec()));
                    buf.clear();
                    st = St::Idle;
                } else {
                    buf.push(b);
                }
            }
            St::End => unreachable!(),
        }
        m.in_frame.push(st != St::Idle);
    }
    m
}

// ---- passes ---------------------------------------------------------------------------

/// Feeds `stream` in `pattern` chunks, checking the per-call invariants and memory use.
/// Results are dropped at once, so the live heap after a call is what the decoder holds.
fn pass_invariants(su: &Setup) {
    let max = su.max;
    let parts = chunks(&su.stream, su.pattern);
    let base = live();
    let mut dec = Decoder::new(max);
    for chunk in &parts {
        let mut rest: &[u8] = chunk;
        let mut stalled = false;
        while !rest.is_empty() {
            let before = live();
            PEAK.store(before, Ordering::Relaxed);
            let (used, found) = dec.decode(rest);
            let peak = PEAK.load(Ordering::Relaxed) - before;
            assert!(used <= rest.len(), "used {used} > input {}", rest.len());
            assert!(peak <= 4 * max + HEAD_KEEP + 64, "one decode call allocated {peak} bytes (max {max})");
            match &found {
                Decoded::Incomplete => assert_eq!(used, rest.len(), "Incomplete must consume the input"),
                _ => assert!(!dec.in_frame(), "decoder still in a frame after {found:?}"),
            }
            if used == 0 {
                assert!(
                    matches!(found, Decoded::Error(FrameError::BadEndBlock { .. })),
                    "no progress without a BadEndBlock: {found:?}"
                );
                assert!(!stalled, "two calls in a row without progress");
                stalled = true;
            } else {
                stalled = false;
            }
            check_result(&found, max);
            drop(found);
            let held = live() - base;
            assert!(held <= frame_cap_bound(max), "decoder holds {held} bytes between calls (max {max})");
            rest = &rest[used..];
        }
    }
    assert_eq!(dec.decode(&[]), (0, Decoded::Incomplete));
    drop(dec);
    assert_eq!(live(), base, "decoder leaked");
}

/// Compares chunked decoding of `stream` to the reference model.
fn pass_model(su: &Setup) {
    let max = su.max;
    let m = model(&su.stream, max);
    let mut dec = Decoder::new(max);
    let mut got = Vec::new();
    let mut discarded = 0u64;
    let mut pos = 0;
    for chunk in chunks(&su.stream, su.pattern) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (used, found) = dec.decode(rest);
            rest = &rest[used..];
            pos += used;
            match found {
                Decoded::Incomplete => {
                    assert_eq!(dec.in_frame(), m.in_frame[pos], "in_frame at byte {pos}");
                }
                Decoded::Frame(f) => got.push(Ev::Frame(f)),
                Decoded::Error(FrameError::BadEndBlock { content }) => got.push(Ev::BadEnd(content)),
                Decoded::Error(FrameError::TooLarge { head }) => got.push(Ev::TooLarge(head)),
            }
        }
        discarded += dec.take_discarded();
    }
    assert_eq!(got.len(), m.events.len(), "results differ from the model:\n got {got:?}\nwant {:?}", m.events);
    let mut too_large = false;
    for (i, (g, w)) in got.iter().zip(&m.events).enumerate() {
        match (g, w) {
            (Ev::TooLarge(head), Ev::TooLarge(run)) => {
                too_large = true;
                assert!(run.len() > max);
                assert!(run.starts_with(head), "result {i}: TooLarge head is not the frame's start");
            }
            _ => assert_eq!(g, w, "result {i} differs from the model"),
        }
    }
    // After TooLarge the decoder consumes the frame's tail without counting it (the
    // connection is closed anyway), so the count is only exact without one.
    if !too_large {
        assert_eq!(discarded, m.discarded, "discarded byte count");
    }
}

/// `encode` a list of frames, decode with arbitrary chunking: the same frames come back.
fn pass_round_trip(su: &Setup) {
    let max = su.max;
    let frames: Vec<Vec<u8>> =
        su.stream.split(|&b| b == END).map(|f| f.iter().copied().filter(|&b| b != START).collect()).collect();
    let mut wire = Vec::new();
    for f in &frames {
        codec::encode(f, &mut wire);
    }
    let mut dec = Decoder::new(max);
    let mut got = Vec::new();
    let mut discarded = 0;
    for chunk in chunks(&wire, su.pattern) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (used, found) = dec.decode(rest);
            rest = &rest[used..];
            if found != Decoded::Incomplete {
                got.push(found);
            }
        }
        discarded += dec.take_discarded();
    }
    assert!(!dec.in_frame());
    assert_eq!(got.len(), frames.len(), "frame count after round trip");
    let mut too_large = false;
    for (g, f) in got.iter().zip(&frames) {
        match g {
            Decoded::Frame(c) if f.len() <= max => assert_eq!(c, f),
            Decoded::Error(FrameError::TooLarge { head }) if f.len() > max => {
                too_large = true;
                assert!(f.starts_with(head));
            }
            other => panic!("frame of {} bytes (max {max}) decoded as {other:?}", f.len()),
        }
    }
    if !too_large {
        assert_eq!(discarded, 0, "nothing is discarded from well-formed frames");
    }
}

fuzz_target!(|data: &[u8]| {
    let su = setup(data);
    pass_invariants(&su);
    pass_model(&su);
    pass_round_trip(&su);
});
