//! MLLP framing: finds `<VT> message <FS><CR>` frames in a byte stream.
//!
//! The decoder is a plain state machine over byte slices (no I/O, no tokio types), so it
//! can be unit-tested byte by byte and fuzzed. It keeps at most `max_frame` bytes of one
//! frame in memory: a frame that grows past the limit is reported as [`FrameError::TooLarge`]
//! and the caller closes the connection without reading the rest.

/// Start block (vertical tab).
pub const START: u8 = 0x0B;
/// First byte of the end block (file separator).
pub const END: u8 = 0x1C;
/// Second byte of the end block (carriage return).
pub const END_CR: u8 = 0x0D;

/// Why the decoder rejected a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The frame grew past the limit. `head` holds the first bytes of the frame (enough to
    /// read its MSH for the NAK); the connection must be closed.
    TooLarge { head: Vec<u8> },
    /// `<FS>` was followed by something other than `<CR>`. The frame content is returned so
    /// the caller can NAK it with the control ID; the decoder resynchronises on the next `<VT>`.
    BadEndBlock { content: Vec<u8> },
}

/// What one call to [`Decoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Need more bytes.
    Incomplete,
    /// A complete frame (without the start and end blocks). May be empty.
    Frame(Vec<u8>),
    /// A malformed frame.
    Error(FrameError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames: everything but `<VT>` is discarded.
    Idle,
    /// Inside a frame, collecting content.
    InFrame,
    /// Saw `<FS>` inside a frame; the next byte must be `<CR>`.
    SawEnd,
}

/// Bytes of a too-large frame kept for the NAK (MSH is always near the start).
const HEAD_KEEP: usize = 4096;

/// Incremental MLLP frame decoder.
#[derive(Debug)]
pub struct Decoder {
    max_frame: usize,
    state: State,
    frame: Vec<u8>,
    discarded: u64,
}

impl Decoder {
    pub fn new(max_frame: usize) -> Self {
        Decoder { max_frame, state: State::Idle, frame: Vec::new(), discarded: 0 }
    }

    /// True while a frame has been opened and not yet closed (the frame timeout runs).
    pub fn in_frame(&self) -> bool {
        self.state != State::Idle
    }

    /// The buffer capacity to give the decoder (with [`Decoder::reserve`]) before it decodes
    /// `input`, so that its buffer never grows on its own and the caller can account for
    /// every byte it holds; `None` when it has the room. Grows by at least half again (so
    /// copying stays linear in the frame size), never past the frame limit.
    pub(crate) fn room_for(&self, input: &[u8]) -> Option<usize> {
        // Between frames only what follows a start block can land in the buffer.
        let incoming = match self.state {
            State::Idle => memchr::memchr(START, input).map_or(0, |i| input.len() - i - 1),
            _ => input.len(),
        };
        let need = (self.frame.len() + incoming).min(self.max_frame);
        let capacity = self.frame.capacity();
        if need <= capacity {
            return None;
        }
        Some(need.max(capacity + capacity / 2).min(self.max_frame))
    }

    /// Grows the frame buffer to exactly `capacity` bytes (see [`Decoder::room_for`]).
    pub(crate) fn reserve(&mut self, capacity: usize) {
        self.frame.reserve_exact(capacity.saturating_sub(self.frame.len()));
    }

    /// Capacity of the frame buffer: what the decoder holds in memory.
    pub fn capacity(&self) -> usize {
        self.frame.capacity()
    }

    /// Bytes discarded so far outside of frames (garbage, whitespace, truncated frames).
    /// The caller reads and resets it with [`Decoder::take_discarded`].
    pub fn take_discarded(&mut self) -> u64 {
        std::mem::take(&mut self.discarded)
    }

    /// Consumes bytes from `input` until one frame (or error) is complete or the input is
    /// exhausted. Returns how many bytes were consumed and what was found; call again with
    /// the rest of the input.
    pub fn decode(&mut self, input: &[u8]) -> (usize, Decoded) {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Idle => match memchr::memchr(START, &input[pos..]) {
                    Some(i) => {
                        self.discarded += i as u64;
                        pos += i + 1;
                        self.state = State::InFrame;
                        self.frame.clear();
                    }
                    None => {
                        self.discarded += (input.len() - pos) as u64;
                        pos = input.len();
                    }
                },
                State::InFrame => {
                    let rest = &input[pos..];
                    let stop = memchr::memchr2(END, START, rest);
                    let take = stop.unwrap_or(rest.len());
                    if self.frame.len() + take > self.max_frame {
                        return (pos + take, Decoded::Error(self.too_large(&rest[..take])));
                    }
                    self.frame.extend_from_slice(&rest[..take]);
                    pos += take;
                    if let Some(i) = stop {
                        pos += 1;
                        if rest[i] == END {
                            self.state = State::SawEnd;
                        } else {
                            // A new start block inside a frame: the previous frame was cut
                            // short by the sender. Drop it and start over.
                            self.discarded += self.frame.len() as u64 + 1;
                            self.frame.clear();
                        }
                    }
                }
                State::SawEnd => {
                    self.state = State::Idle;
                    let content = std::mem::take(&mut self.frame);
                    if input[pos] == END_CR {
                        return (pos + 1, Decoded::Frame(content));
                    }
                    // Do not consume the byte: it may be the start of the next frame.
                    return (pos, Decoded::Error(FrameError::BadEndBlock { content }));
                }
            }
        }
        (pos, Decoded::Incomplete)
    }

    fn too_large(&mut self, more: &[u8]) -> FrameError {
        let mut head = std::mem::take(&mut self.frame);
        head.truncate(HEAD_KEEP);
        let room = HEAD_KEEP - head.len();
        head.extend_from_slice(&more[..room.min(more.len())]);
        self.state = State::Idle;
        FrameError::TooLarge { head }
    }
}

/// Wraps `content` in an MLLP frame.
pub fn encode(content: &[u8], out: &mut Vec<u8>) {
    out.reserve(content.len() + 3);
    out.push(START);
    out.extend_from_slice(content);
    out.push(END);
    out.push(END_CR);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds all of `input` and collects every result.
    fn decode_all(dec: &mut Decoder, mut input: &[u8]) -> Vec<Decoded> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (used, found) = dec.decode(input);
            input = &input[used..];
            if found != Decoded::Incomplete {
                out.push(found);
            }
        }
        out
    }

    fn frame(s: &[u8]) -> Decoded {
        Decoded::Frame(s.to_vec())
    }

    #[test]
    fn one_frame() {
        let mut d = Decoder::new(100);
        assert_eq!(decode_all(&mut d, b"\x0bMSH|^~\\&\r\x1c\x0d"), vec![frame(b"MSH|^~\\&\r")]);
        assert!(!d.in_frame());
        assert_eq!(d.take_discarded(), 0);
    }

    #[test]
    fn frame_split_byte_by_byte() {
        let mut d = Decoder::new(100);
        let wire = b"\x0bABC\rDEF\x1c\x0d";
        let mut got = Vec::new();
        for (i, b) in wire.iter().enumerate() {
            let (used, found) = d.decode(std::slice::from_ref(b));
            assert_eq!(used, 1, "byte {i} consumed");
            if found != Decoded::Incomplete {
                got.push(found);
            }
            if i > 0 && i < wire.len() - 1 {
                assert!(d.in_frame());
            }
        }
        assert_eq!(got, vec![frame(b"ABC\rDEF")]);
    }

    #[test]
    fn split_between_end_bytes() {
        let mut d = Decoder::new(100);
        assert_eq!(decode_all(&mut d, b"\x0bAB\x1c"), vec![]);
        assert!(d.in_frame());
        assert_eq!(decode_all(&mut d, b"\x0d"), vec![frame(b"AB")]);
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut d = Decoder::new(100);
        let got = decode_all(&mut d, b"\x0bA\x1c\x0d\x0bBB\x1c\x0d\x0bCCC\x1c\x0d");
        assert_eq!(got, vec![frame(b"A"), frame(b"BB"), frame(b"CCC")]);
    }

    #[test]
    fn garbage_and_whitespace_between_frames_discarded_and_counted() {
        let mut d = Decoder::new(100);
        let got = decode_all(&mut d, b"junk\x0bA\x1c\x0d\r\n \x0bB\x1c\x0dtail");
        assert_eq!(got, vec![frame(b"A"), frame(b"B")]);
        assert_eq!(d.take_discarded(), 4 + 3 + 4);
        assert_eq!(d.take_discarded(), 0, "counter resets when taken");
    }

    #[test]
    fn end_block_without_cr_is_an_error_and_resyncs() {
        let mut d = Decoder::new(100);
        let got = decode_all(&mut d, b"\x0bA\x1cX\x0bB\x1c\x0d");
        assert_eq!(got, vec![Decoded::Error(FrameError::BadEndBlock { content: b"A".to_vec() }), frame(b"B")]);
        assert_eq!(d.take_discarded(), 1, "the stray X");
    }

    #[test]
    fn end_block_followed_by_start_keeps_next_frame() {
        let mut d = Decoder::new(100);
        let got = decode_all(&mut d, b"\x0bA\x1c\x0bB\x1c\x0d");
        assert_eq!(got, vec![Decoded::Error(FrameError::BadEndBlock { content: b"A".to_vec() }), frame(b"B")]);
    }

    #[test]
    fn empty_frame_is_reported() {
        let mut d = Decoder::new(100);
        assert_eq!(decode_all(&mut d, b"\x0b\x1c\x0d"), vec![frame(b"")]);
    }

    #[test]
    fn restart_inside_frame_drops_truncated_frame() {
        let mut d = Decoder::new(100);
        assert_eq!(decode_all(&mut d, b"\x0bPART\x0bFULL\x1c\x0d"), vec![frame(b"FULL")]);
        assert_eq!(d.take_discarded(), 5);
    }

    #[test]
    fn frame_at_exact_limit_is_accepted() {
        let mut d = Decoder::new(4);
        assert_eq!(decode_all(&mut d, b"\x0bABCD\x1c\x0d"), vec![frame(b"ABCD")]);
    }

    #[test]
    fn frame_over_limit_is_rejected_without_buffering_the_rest() {
        let mut d = Decoder::new(4);
        let (used, found) = d.decode(b"\x0bABCDE and much more");
        assert_eq!(found, Decoded::Error(FrameError::TooLarge { head: b"ABCDE and much more".to_vec() }));
        assert_eq!(used, 20);
        assert!(!d.in_frame());
        // Over many reads the buffer never exceeds the limit.
        let mut d = Decoder::new(10);
        assert_eq!(d.decode(b"\x0b0123456").1, Decoded::Incomplete);
        assert!(d.frame.capacity() < 64);
        let (_, found) = d.decode(b"789abc");
        assert!(matches!(found, Decoded::Error(FrameError::TooLarge { .. })));
    }

    #[test]
    fn too_large_head_is_bounded() {
        let mut d = Decoder::new(HEAD_KEEP * 2);
        let mut wire = vec![START];
        wire.extend(std::iter::repeat_n(b'x', HEAD_KEEP * 3));
        let (_, found) = d.decode(&wire);
        match found {
            Decoded::Error(FrameError::TooLarge { head }) => assert_eq!(head.len(), HEAD_KEEP),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn with_room_reserved_first_the_buffer_never_grows_on_its_own() {
        let mut d = Decoder::new(1000);
        let mut wire = b"junk".to_vec();
        wire.push(START);
        wire.extend(std::iter::repeat_n(b'x', 900));
        wire.extend_from_slice(b"\x1c\x0d\x0bAB");
        let mut frames = 0;
        for chunk in wire.chunks(70) {
            let mut input = chunk;
            while !input.is_empty() {
                if let Some(capacity) = d.room_for(input) {
                    assert!(capacity <= 1000);
                    d.reserve(capacity);
                    assert_eq!(d.capacity(), capacity);
                }
                let before = d.capacity();
                let (used, found) = d.decode(input);
                input = &input[used..];
                match found {
                    Decoded::Frame(f) => {
                        assert_eq!((f.len(), f.capacity()), (900, before));
                        frames += 1;
                    }
                    Decoded::Incomplete => assert_eq!(d.capacity(), before, "no growth inside decode"),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(frames, 1);
        // Growth is geometric: few reallocations for a large frame.
        assert!(d.capacity() >= 2 && d.in_frame());
        // Garbage between frames needs no room.
        let mut idle = Decoder::new(1000);
        assert_eq!(idle.room_for(b"no start block here"), None);
        assert_eq!(idle.room_for(b"..\x0bABC"), Some(3));
        // Never past the limit, even for a larger input.
        idle.decode(b"\x0b");
        assert_eq!(idle.room_for(&[b'x'; 5000]), Some(1000));
    }

    #[test]
    fn encode_round_trips() {
        let mut wire = Vec::new();
        encode(b"MSH|x", &mut wire);
        assert_eq!(wire, b"\x0bMSH|x\x1c\x0d");
        let mut d = Decoder::new(100);
        assert_eq!(decode_all(&mut d, &wire), vec![frame(b"MSH|x")]);
    }
}
