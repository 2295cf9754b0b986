//! The stamped message: sequence number and send time up front (both u64
//! LE, nanoseconds since the bench's own epoch), then padding to the size.

use bytes::{BufMut, BytesMut};
use tokio_tungstenite::tungstenite::Message;

/// Bytes at the front of every message: sequence number, send time (both u64 LE).
pub(super) const HEADER: usize = 16;
/// Set in the sequence number of warm-up messages.
pub(super) const WARMUP_FLAG: u64 = 1 << 63;

/// One message: sequence number, send time (ns since the bench epoch), padding.
pub(super) fn encode(seq: u64, sent_ns: u64, size: usize) -> Message {
    let mut body = BytesMut::with_capacity(size.max(HEADER));
    body.put_u64_le(seq);
    body.put_u64_le(sent_ns);
    let pad = size.saturating_sub(HEADER);
    body.extend((0..pad).map(|i| b'a' + (i % 26) as u8));
    Message::Binary(body.freeze())
}

/// (sequence number, send time) of a message, or None when it is too short.
pub(super) fn decode(data: &[u8]) -> Option<(u64, u64)> {
    let seq = data.get(0..8)?.try_into().ok().map(u64::from_le_bytes)?;
    let sent = data.get(8..16)?.try_into().ok().map(u64::from_le_bytes)?;
    Some((seq, sent))
}
