#!/usr/bin/env python3
"""A stand-in streaming speech-recognition backend (no real recognizer).

It speaks the protocol of the seed's server (vosk-server style): a WebSocket
at /ws/asr takes binary chunks of 16 kHz mono 16-bit little-endian PCM and
answers each chunk with a JSON partial; the text message {"eof": 1} ends the
utterance and gets the final result, then the server closes (1000).

What it "recognizes" is deterministic: the seconds of audio received and the
number of speech segments in it (runs of at least 60 ms of 20 ms frames
louder than -36 dBFS, ended by 200 ms of quiet), so a test can tell speech
from silence without a model:

    {"partial": "1.2 s, 2 speech segments", "bytes": 38400, "seconds": 1.2, "segments": 2}
    {"final": "heard 4.1 s of audio, 5 speech segments", "bytes": ..., "seconds": ..., "segments": ...}

Plain ws:// on loopback; wssd terminates TLS in front of it.

Usage: python3 asr_server.py [--host 127.0.0.1] [--port 2700]
"""

import argparse
import array
import asyncio
import json
import math
import sys

from websockets.asyncio.server import serve

RATE = 16_000  # samples per second
FRAME = RATE // 50  # 20 ms of samples
LOUD = 32768 * 10 ** (-36 / 20)  # RMS above -36 dBFS counts as speech
MIN_VOICED = 3  # frames (60 ms) for a segment
MIN_QUIET = 10  # frames (200 ms) to end one


class Utterance:
    """Counts bytes and energy-based speech segments of one stream."""

    def __init__(self):
        self.bytes = 0
        self.carry = b""
        self.voiced = 0
        self.quiet = 0
        self.segments = 0

    def feed(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        data = self.carry + chunk
        whole = len(data) // (2 * FRAME) * (2 * FRAME)
        self.carry = data[whole:]
        samples = array.array("h", data[:whole])
        if sys.byteorder == "big":
            samples.byteswap()
        for off in range(0, len(samples), FRAME):
            frame = samples[off : off + FRAME]
            rms = math.sqrt(sum(s * s for s in frame) / FRAME)
            self.frame(rms > LOUD)

    def frame(self, loud: bool) -> None:
        if loud:
            self.voiced += 1
            self.quiet = 0
            if self.voiced == MIN_VOICED:
                self.segments += 1
        else:
            self.quiet += 1
            if self.quiet >= MIN_QUIET:
                self.voiced = 0

    def summary(self) -> dict:
        return {"bytes": self.bytes, "seconds": round(self.bytes / 2 / RATE, 2), "segments": self.segments}


async def asr(ws):
    if ws.request.path != "/ws/asr":
        await ws.close(1008, "unknown path: the recognizer is at /ws/asr")
        return
    utt = Utterance()
    async for msg in ws:
        if isinstance(msg, bytes):
            utt.feed(msg)
            s = utt.summary()
            await ws.send(json.dumps({"partial": f"{s['seconds']} s, {s['segments']} speech segments", **s}))
            continue
        try:
            eof = json.loads(msg).get("eof")
        except (ValueError, AttributeError):
            eof = None
        if not eof:
            await ws.send(json.dumps({"error": 'send PCM as binary messages and {"eof": 1} to finish'}))
            continue
        s = utt.summary()
        await ws.send(json.dumps({"final": f"heard {s['seconds']} s of audio, {s['segments']} speech segments", **s}))
        await ws.close(1000, "final result sent")
        return


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2700)
    args = ap.parse_args()
    async with serve(asr, args.host, args.port, max_size=1 << 20):
        print(f"asr stand-in listening on ws://{args.host}:{args.port}/ws/asr", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main())
