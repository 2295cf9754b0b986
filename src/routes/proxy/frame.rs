//! WebSocket frames as the proxy relay sees them (RFC 6455 section 5):
//! header parsing, control and close frames, masking.
#![allow(
    clippy::disallowed_types,
    reason = "seeds the mask generator from a clock reading"
)]

use std::time::Instant as StdInstant;

use crate::keepalive::CloseReason;

/// Longest frame header: 2 + 8 (length) + 4 (mask).
pub(super) const MAX_HEADER: usize = 14;
pub(super) const OP_CONTINUATION: u8 = 0x0;
pub(super) const OP_TEXT: u8 = 0x1;
pub(super) const OP_BINARY: u8 = 0x2;
pub(super) const OP_CLOSE: u8 = 0x8;
pub(super) const OP_PING: u8 = 0x9;
pub(super) const OP_PONG: u8 = 0xA;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) fin: bool,
    /// RSV1-3; no extension is negotiated, so they must be 0.
    pub(super) rsv: u8,
    pub(super) opcode: u8,
    pub(super) mask: Option<[u8; 4]>,
    pub(super) len: u64,
    /// Bytes the header takes on the wire.
    pub(super) size: usize,
}

/// Parses a frame header; `None` when more bytes are needed.
pub(super) fn parse_header(buf: &[u8]) -> Option<Header> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let rsv = (buf[0] >> 4) & 0x07;
    let opcode = buf[0] & 0x0F;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut size) = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        if buf.len() < size + 4 {
            return None;
        }
        let mut m = [0u8; 4];
        m.copy_from_slice(&buf[size..size + 4]);
        size += 4;
        Some(m)
    } else {
        None
    };
    Some(Header {
        fin,
        rsv,
        opcode,
        mask,
        len,
        size,
    })
}

/// Encodes a control frame (payload <= 125 bytes), masked when `mask` is set.
pub(super) fn control_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let len = payload.len().min(125);
    let mut out = Vec::with_capacity(len + 6);
    out.push(0x80 | opcode);
    match mask {
        Some(m) => {
            out.push(0x80 | len as u8);
            out.extend_from_slice(&m);
            out.extend(payload[..len].iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => {
            out.push(len as u8);
            out.extend_from_slice(&payload[..len]);
        }
    }
    out
}

/// A close frame with a code and reason.
pub(super) fn close_frame(reason: CloseReason, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut payload = reason.code().to_be_bytes().to_vec();
    let reason = reason.text();
    let mut reason = reason.as_bytes();
    reason = &reason[..reason.len().min(123)];
    payload.extend_from_slice(reason);
    control_frame(OP_CLOSE, &payload, mask)
}

pub(super) fn unmask(payload: &mut [u8], mask: Option<[u8; 4]>) {
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
}

/// A fresh masking key for frames wssd sends upstream.
pub(super) fn new_mask() -> [u8; 4] {
    let mut m = [0u8; 4];
    if crate::tls::provider().secure_random.fill(&mut m).is_err() {
        // Masks only need to be unpredictable to scripts in browsers; the
        // time is a poor but harmless fallback.
        let t = StdInstant::now().elapsed().subsec_nanos() ^ std::process::id();
        m = t.to_be_bytes();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(parse_header(&[0x81]), None);
        let h = parse_header(&[0x81, 0x05]).unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.len, h.size, h.mask),
            (true, 1, 5, 2, None)
        );
        let h = parse_header(&[0x02, 0xFE, 0x01, 0x00, 1, 2, 3, 4]).unwrap();
        assert_eq!((h.fin, h.opcode, h.len, h.size), (false, 2, 256, 8));
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
        let mut big = vec![0x82, 0x7F];
        big.extend_from_slice(&(1u64 << 20).to_be_bytes());
        assert_eq!(parse_header(&big).unwrap().len, 1 << 20);
        assert_eq!(parse_header(&big[..9]), None);
    }

    #[test]
    fn control_frames_mask_round_trip() {
        let f = control_frame(OP_PING, b"abc", Some([9, 8, 7, 6]));
        let h = parse_header(&f).unwrap();
        let mut p = f[h.size..].to_vec();
        unmask(&mut p, h.mask);
        assert_eq!(p, b"abc");
        let c = close_frame(CloseReason::UpstreamLost, None);
        assert_eq!(&c[2..4], &1014u16.to_be_bytes());
    }
}
