//! The simulated OS page cache of one file: writes that have not been fsynced yet.
//!
//! An [`Overlay`] sits on top of a [`Backing`] (the real file on disk, or a `Vec<u8>` in the
//! model test below). The *logical* file — what every reader sees — is the backing content,
//! cut at `hide_from` by pending truncations, extended with zeros up to `size`, with the
//! pending extents laid on top. The *durable* file is the backing alone. `flush` makes the
//! durable file equal to the logical one (that is what fsync does); `discard` is a power
//! cut: the logical file falls back to the durable one.
//!
//! This is pure Rust with no FFI so that it can be checked against a trivial model.

use std::collections::BTreeMap;
use std::os::raw::c_int;

/// The file underneath the overlay. Errors are SQLite result codes.
pub trait Backing {
    fn size(&mut self) -> Result<u64, c_int>;
    /// Fills `buf` from `off`; bytes past the end of the file read as zero (not an error).
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<(), c_int>;
    fn write(&mut self, off: u64, data: &[u8]) -> Result<(), c_int>;
    /// Sets the file length (shrinks or zero-extends).
    fn truncate(&mut self, size: u64) -> Result<(), c_int>;
}

/// Pending (unsynced) state of one file.
#[derive(Debug, Default)]
pub struct Overlay {
    /// Pending writes: start offset -> bytes. Invariant: extents neither overlap nor touch
    /// (touching ones are merged), so their end offsets increase with their start offsets,
    /// and they all lie below `size`.
    extents: BTreeMap<u64, Vec<u8>>,
    /// Lowest pending truncation: backing bytes at or past this offset are logically gone
    /// (they read as zero if the logical file extends that far again).
    hide_from: Option<u64>,
    /// Logical file length; `None` while nothing is pending (then it is the backing length).
    size: Option<u64>,
}

/// Outcome of a read: SQLite must be told when it read past the logical end of the file.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Full,
    /// The buffer was zero-filled past the logical end (SQLITE_IOERR_SHORT_READ).
    Short,
}

impl Overlay {
    pub fn is_clean(&self) -> bool {
        self.extents.is_empty() && self.hide_from.is_none() && self.size.is_none()
    }

    /// Bytes that would be lost if the power failed now (truncations not counted).
    pub fn pending_bytes(&self) -> u64 {
        self.extents.values().map(|d| d.len() as u64).sum()
    }

    pub fn size(&self, b: &mut dyn Backing) -> Result<u64, c_int> {
        match self.size {
            Some(s) => Ok(s),
            None => b.size(),
        }
    }

    pub fn read(&self, b: &mut dyn Backing, off: u64, buf: &mut [u8]) -> Result<Read, c_int> {
        let size = self.size(b)?;
        let end = off + buf.len() as u64;
        // 1. What the disk holds (zero past its end).
        b.read(off, buf)?;
        // 2. Minus what a pending truncation removed.
        if let Some(h) = self.hide_from {
            if end > h {
                let from = h.saturating_sub(off) as usize;
                buf[from..].fill(0);
            }
        }
        // 3. Plus pending writes. Ends increase with starts, so walking backwards from the
        //    last extent starting before `end` we can stop at the first one ending at/before
        //    `off`.
        for (&start, data) in self.extents.range(..end).rev() {
            let ext_end = start + data.len() as u64;
            if ext_end <= off {
                break;
            }
            let lo = start.max(off);
            let hi = ext_end.min(end);
            buf[(lo - off) as usize..(hi - off) as usize]
                .copy_from_slice(&data[(lo - start) as usize..(hi - start) as usize]);
        }
        // 4. Past the logical end: zeros and a short read, as the unix VFS does.
        if end > size {
            let from = size.saturating_sub(off) as usize;
            buf[from..].fill(0);
            return Ok(Read::Short);
        }
        Ok(Read::Full)
    }

    pub fn write(&mut self, b: &mut dyn Backing, off: u64, data: &[u8]) -> Result<(), c_int> {
        if data.is_empty() {
            return Ok(());
        }
        let size = self.size(b)?;
        let end = off + data.len() as u64;
        // Every extent overlapping or touching [off, end): same backwards walk as `read`,
        // with `>=` so touching extents merge too (keeps the map small for appends).
        let merged: Vec<u64> =
            self.extents.range(..=end).rev().take_while(|(&s, d)| s + d.len() as u64 >= off).map(|(&s, _)| s).collect();
        let mut lo = off;
        let mut hi = end;
        let mut old = Vec::with_capacity(merged.len());
        for s in merged {
            let d = self.extents.remove(&s).expect("key just listed");
            lo = lo.min(s);
            hi = hi.max(s + d.len() as u64);
            old.push((s, d));
        }
        let mut buf = vec![0u8; (hi - lo) as usize];
        // Old extents are disjoint: their order does not matter. The new write goes last
        // because it overwrites them.
        for (s, d) in old {
            buf[(s - lo) as usize..(s - lo) as usize + d.len()].copy_from_slice(&d);
        }
        buf[(off - lo) as usize..(end - lo) as usize].copy_from_slice(data);
        self.extents.insert(lo, buf);
        self.size = Some(size.max(end));
        Ok(())
    }

    pub fn truncate(&mut self, new_size: u64) {
        // Drop extents wholly past the new end, clip the one straddling it.
        let gone: Vec<u64> = self.extents.range(new_size..).map(|(&s, _)| s).collect();
        for s in gone {
            self.extents.remove(&s);
        }
        if let Some((&s, d)) = self.extents.range_mut(..new_size).next_back() {
            if s + d.len() as u64 > new_size {
                d.truncate((new_size - s) as usize);
            }
        }
        // Hiding from the minimum of all truncations is right even if the file grew again in
        // between: whatever was re-written past that point lives in the extents.
        self.hide_from = Some(self.hide_from.map_or(new_size, |h| h.min(new_size)));
        self.size = Some(new_size);
    }

    /// fsync, part one: make the backing equal to the logical file. On error the overlay is
    /// kept as it is (re-applying it is idempotent).
    pub fn flush(&mut self, b: &mut dyn Backing) -> Result<(), c_int> {
        if let Some(h) = self.hide_from {
            b.truncate(h)?;
        }
        for (&s, d) in &self.extents {
            b.write(s, d)?;
        }
        if let Some(size) = self.size {
            // Covers truncations that grew the file, and extents that do not reach `size`.
            if b.size()? != size {
                b.truncate(size)?;
            }
        }
        *self = Overlay::default();
        Ok(())
    }

    /// Power cut: pending data never reached the disk.
    pub fn discard(&mut self) {
        *self = Overlay::default();
    }

    /// Power cut with torn write-back: the disk had already written back some of the pending
    /// data on its own, in any order. Splits every extent at `sector` boundaries and keeps
    /// each piece with probability 1/2 — but with two pieces or more, always at least one
    /// kept and one dropped, so that every torn cut really is torn. Pending truncations are
    /// not applied (a subset of "some writes happened" too). A piece holds only bytes that
    /// were written, never the rest of its sector: the disk is powersafe-overwrite (mod.rs).
    pub fn torn_pieces(&self, rng: &mut Rng, sector: u64) -> Vec<(u64, &[u8])> {
        let mut pieces = Vec::new();
        for (&s, d) in &self.extents {
            let end = s + d.len() as u64;
            let mut p = s;
            while p < end {
                let q = ((p / sector + 1) * sector).min(end);
                pieces.push((p, &d[(p - s) as usize..(q - s) as usize]));
                p = q;
            }
        }
        let mut keep: Vec<bool> = pieces.iter().map(|_| rng.next() & 1 == 1).collect();
        let (n, kept) = (keep.len(), keep.iter().filter(|&&k| k).count());
        if n >= 2 && kept == n {
            keep[n - 1] = false;
        } else if n >= 2 && kept == 0 {
            keep[0] = true;
        }
        pieces.into_iter().zip(keep).filter_map(|(p, k)| k.then_some(p)).collect()
    }
}

/// splitmix64: deterministic, seedable, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A backing file in memory, for the model test.
#[cfg(test)]
impl Backing for Vec<u8> {
    fn size(&mut self) -> Result<u64, c_int> {
        Ok(self.len() as u64)
    }
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<(), c_int> {
        for (i, x) in buf.iter_mut().enumerate() {
            *x = self.get(off as usize + i).copied().unwrap_or(0);
        }
        Ok(())
    }
    fn write(&mut self, off: u64, data: &[u8]) -> Result<(), c_int> {
        let end = off as usize + data.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[off as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn truncate(&mut self, size: u64) -> Result<(), c_int> {
        self.resize(size as usize, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random writes/truncates/reads/syncs/cuts against the obvious model: `logical` is what
    /// readers must see, `durable` what the disk must hold.
    #[test]
    fn overlay_matches_model() {
        for seed in 0..40u64 {
            let mut rng = Rng::new(seed);
            let initial: Vec<u8> = (0..rng.below(3000)).map(|_| rng.next() as u8).collect();
            let mut disk = initial.clone();
            let mut durable = initial.clone();
            let mut logical = initial;
            let mut ov = Overlay::default();
            for step in 0..400 {
                let ctx = format!("seed {seed} step {step}");
                match rng.below(100) {
                    0..=44 => {
                        let off = rng.below(4096);
                        let data: Vec<u8> = (0..1 + rng.below(700)).map(|_| rng.next() as u8).collect();
                        ov.write(&mut disk, off, &data).unwrap();
                        let end = off as usize + data.len();
                        if logical.len() < end {
                            logical.resize(end, 0);
                        }
                        logical[off as usize..end].copy_from_slice(&data);
                    }
                    45..=54 => {
                        let n = rng.below(4500);
                        ov.truncate(n);
                        logical.resize(n as usize, 0);
                    }
                    55..=84 => {
                        let off = rng.below(5000);
                        let mut buf = vec![0xAA; 1 + rng.below(900) as usize];
                        let r = ov.read(&mut disk, off, &mut buf).unwrap();
                        let want: Vec<u8> =
                            (0..buf.len()).map(|i| logical.get(off as usize + i).copied().unwrap_or(0)).collect();
                        assert_eq!(buf, want, "{ctx}: read {off}+{}", buf.len());
                        let short = off as usize + buf.len() > logical.len();
                        assert_eq!(r == Read::Short, short, "{ctx}: short read flag");
                    }
                    85..=94 => {
                        ov.flush(&mut disk).unwrap();
                        durable = logical.clone();
                        assert!(ov.is_clean());
                    }
                    _ => {
                        ov.discard();
                        logical = durable.clone();
                    }
                }
                assert_eq!(ov.size(&mut disk).unwrap(), logical.len() as u64, "{ctx}: size");
                assert_eq!(disk, durable, "{ctx}: the disk changed without a sync");
            }
        }
    }

    /// After a torn cut every byte on disk is either its durable or its logical value, and
    /// over many seeds both outcomes occur.
    #[test]
    fn torn_cut_mixes_only_old_and_new_bytes() {
        let (mut saw_old, mut saw_new) = (false, false);
        for seed in 0..20u64 {
            let mut rng = Rng::new(1000 + seed);
            let durable: Vec<u8> = vec![1; 2000];
            let mut disk = durable.clone();
            let mut ov = Overlay::default();
            let mut logical = durable.clone();
            for _ in 0..10 {
                let off = rng.below(3000);
                let data = vec![2 + rng.below(200) as u8; 1 + rng.below(1500) as usize];
                ov.write(&mut disk, off, &data).unwrap();
                let end = off as usize + data.len();
                if logical.len() < end {
                    logical.resize(end, 0);
                }
                logical[off as usize..end].copy_from_slice(&data);
            }
            let pieces: Vec<(u64, Vec<u8>)> =
                ov.torn_pieces(&mut rng, 512).into_iter().map(|(o, d)| (o, d.to_vec())).collect();
            for (o, d) in pieces {
                disk.write(o, &d).unwrap();
            }
            assert!(disk.len() >= durable.len());
            for (i, &x) in disk.iter().enumerate() {
                let old = durable.get(i).copied().unwrap_or(0);
                let new = logical.get(i).copied();
                assert!(x == old || Some(x) == new, "seed {seed}: byte {i} is {x}, neither {old} nor {new:?}");
                saw_old |= x == old && Some(x) != new;
                saw_new |= Some(x) == new && x != old;
            }
        }
        assert!(saw_old && saw_new);
    }
}
