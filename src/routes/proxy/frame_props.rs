//! Property tests of the proxy's frame parser (`frame::parse_header`) and
//! encoders: arbitrary bytes never panic it nor make it read past the
//! header it reports; headers from a reference encoder (every length form,
//! masked or not) round-trip; a stream of frames cut at arbitrary points
//! parses as the whole does.

use proptest::prelude::*;

use super::frame::{
    Header, MAX_HEADER, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, close_frame, control_frame,
    parse_header, unmask,
};
use crate::keepalive::CloseReason;

/// How a length is written: the shortest form, or a longer one (legal on
/// the wire for a parser, though not minimal).
#[derive(Debug, Clone, Copy)]
enum LenForm {
    Shortest,
    Bits16,
    Bits64,
}

/// Reference encoder of a frame header (RFC 6455 section 5.2).
fn encode_header(
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    form: LenForm,
) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0F)];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let form = match form {
        LenForm::Shortest if len < 126 => None,
        LenForm::Shortest if len <= 0xFFFF => Some(LenForm::Bits16),
        LenForm::Shortest => Some(LenForm::Bits64),
        LenForm::Bits16 if len > 0xFFFF => Some(LenForm::Bits64),
        other => Some(other),
    };
    match form {
        None => out.push(mask_bit | len as u8),
        Some(LenForm::Bits16) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        Some(_) => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
    out
}

fn len_form() -> impl Strategy<Value = LenForm> {
    prop_oneof![
        Just(LenForm::Shortest),
        Just(LenForm::Bits16),
        Just(LenForm::Bits64)
    ]
}

/// Lengths around every boundary of the three forms, and any.
fn length() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=130,
        125u64..=127,
        0xFFFEu64..=0x1_0001,
        any::<u64>(),
        Just(u64::MAX),
    ]
}

/// One whole frame: header from the reference encoder, then the payload
/// (masked on the wire when a mask is given).
#[derive(Debug, Clone)]
struct Frame {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: Vec<u8>,
    form: LenForm,
}

impl Frame {
    fn wire(&self) -> Vec<u8> {
        let mut out = encode_header(
            self.fin,
            0,
            self.opcode,
            self.mask,
            self.payload.len() as u64,
            self.form,
        );
        let mut payload = self.payload.clone();
        unmask(&mut payload, self.mask);
        out.extend_from_slice(&payload);
        out
    }
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<bool>(),
        prop::sample::select(&[OP_TEXT, OP_BINARY, 0x0, OP_PING, OP_PONG, OP_CLOSE][..]),
        prop::option::of(any::<[u8; 4]>()),
        prop::collection::vec(any::<u8>(), 0..300),
        len_form(),
    )
        .prop_map(|(fin, opcode, mask, payload, form)| Frame {
            fin,
            opcode,
            mask,
            payload,
            form,
        })
}

/// A frame as the relay reads it: the header and the unmasked payload.
type Decoded = (Header, Vec<u8>);

/// Decodes frames from `buf` the way a reader that got the bytes in
/// pieces does: a header only once `parse_header` has one, a payload only
/// once all of it is there. Returns the frames and the bytes left over.
fn drain(buf: &mut Vec<u8>, out: &mut Vec<Decoded>) {
    while let Some(h) = parse_header(buf) {
        let Ok(len) = usize::try_from(h.len) else {
            return;
        };
        if buf.len() < h.size + len {
            return;
        }
        let mut payload = buf[h.size..h.size + len].to_vec();
        unmask(&mut payload, h.mask);
        out.push((h, payload));
        buf.drain(..h.size + len);
    }
}

proptest! {
    #![proptest_config(crate::props::config(1024))]

    /// Catches: a panic or a read past the buffer on arbitrary bytes; a
    /// header size beyond 14 bytes; a header that depends on bytes after
    /// it, or one announced before all its bytes arrived.
    #[test]
    fn arbitrary_bytes_parse_within_bounds(buf in prop::collection::vec(any::<u8>(), 0..32)) {
        match parse_header(&buf) {
            Some(h) => {
                prop_assert!(h.size <= buf.len() && h.size <= MAX_HEADER, "{h:?}");
                prop_assert_eq!(parse_header(&buf[..h.size]), Some(h));
                for cut in 0..h.size {
                    prop_assert_eq!(parse_header(&buf[..cut]), None, "cut at {}", cut);
                }
            }
            None => prop_assert!(buf.len() < MAX_HEADER, "14 bytes always hold a header"),
        }
    }

    /// Catches: a wrong bit for FIN, RSV, the opcode or the mask flag; a
    /// length read from the wrong bytes or with the wrong width; a mask
    /// key read from the wrong offset.
    #[test]
    fn reference_headers_round_trip(
        fin in any::<bool>(),
        rsv in 0u8..8,
        opcode in 0u8..16,
        mask in prop::option::of(any::<[u8; 4]>()),
        len in length(),
        form in len_form(),
        trailing in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut wire = encode_header(fin, rsv, opcode, mask, len, form);
        let size = wire.len();
        wire.extend_from_slice(&trailing);
        let h = parse_header(&wire);
        prop_assert_eq!(h, Some(Header { fin, rsv, opcode, mask, len, size }));
    }

    /// Catches: frames lost, merged or misread when the bytes arrive cut
    /// at arbitrary points (a header split across reads).
    #[test]
    fn frames_cut_anywhere_parse_as_whole(
        frames in prop::collection::vec(frame(), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let wire: Vec<u8> = frames.iter().flat_map(Frame::wire).collect();
        let mut whole_buf = wire.clone();
        let mut whole = Vec::new();
        drain(&mut whole_buf, &mut whole);
        prop_assert!(whole_buf.is_empty());
        prop_assert_eq!(whole.len(), frames.len());
        for ((h, payload), f) in whole.iter().zip(&frames) {
            prop_assert_eq!((h.fin, h.opcode, h.mask, h.rsv), (f.fin, f.opcode, f.mask, 0));
            prop_assert_eq!(payload, &f.payload);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.sort_unstable();
        points.push(wire.len());
        let (mut buf, mut pieces, mut from) = (Vec::new(), Vec::new(), 0);
        for to in points {
            buf.extend_from_slice(&wire[from..to]);
            from = to;
            drain(&mut buf, &mut pieces);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(pieces, whole);
    }

    /// Catches: a control frame over 125 bytes, a wrong mask flag, a
    /// payload that does not unmask to what was given.
    #[test]
    fn control_frames_round_trip(
        opcode in prop::sample::select(&[OP_PING, OP_PONG, OP_CLOSE][..]),
        payload in prop::collection::vec(any::<u8>(), 0..200),
        mask in prop::option::of(any::<[u8; 4]>()),
    ) {
        let wire = control_frame(opcode, &payload, mask);
        let h = parse_header(&wire).unwrap();
        let kept = payload.len().min(125);
        prop_assert_eq!((h.fin, h.rsv, h.opcode, h.mask, h.len), (true, 0, opcode, mask, kept as u64));
        prop_assert_eq!(wire.len(), h.size + kept);
        let mut body = wire[h.size..].to_vec();
        unmask(&mut body, h.mask);
        prop_assert_eq!(&body[..], &payload[..kept]);
    }

    /// Catches: masking that is not its own inverse.
    #[test]
    fn unmask_twice_is_identity(payload in prop::collection::vec(any::<u8>(), 0..64), mask in prop::option::of(any::<[u8; 4]>())) {
        let mut p = payload.clone();
        unmask(&mut p, mask);
        unmask(&mut p, mask);
        prop_assert_eq!(p, payload);
    }
}

/// Every close reason fits a control frame and carries its code.
#[test]
fn close_frames_fit_and_carry_the_code() {
    for reason in [
        CloseReason::Shutdown,
        CloseReason::RouteChanged,
        CloseReason::RouteRemoved,
        CloseReason::PingTimeout,
        CloseReason::Idle,
        CloseReason::MessageTooBig,
        CloseReason::ProgramNotStarted,
        CloseReason::ClientGone,
        CloseReason::UpstreamLost,
    ] {
        for mask in [None, Some([1, 2, 3, 4])] {
            let wire = close_frame(reason, mask);
            let h = parse_header(&wire).unwrap();
            assert!(h.len <= 125);
            let mut body = wire[h.size..].to_vec();
            unmask(&mut body, h.mask);
            assert_eq!(&body[..2], &reason.code().to_be_bytes());
        }
    }
}
