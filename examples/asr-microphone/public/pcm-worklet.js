// Audio worklet: the microphone's samples (at the context's rate) averaged
// down to 16 kHz, as 16-bit little-endian PCM in 100 ms frames (3200 bytes).
// "flush" sends the partial last frame, then {last: true}.
class Pcm16k extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / 16000;
    this.pos = 0;
    this.sum = 0;
    this.n = 0;
    this.frame = new Int16Array(1600);
    this.len = 0;
    this.port.onmessage = () => {
      this.emit();
      this.port.postMessage({ last: true });
    };
  }

  emit() {
    if (this.len === 0) return;
    const pcm = this.frame.slice(0, this.len).buffer;
    this.port.postMessage({ pcm }, [pcm]);
    this.len = 0;
  }

  process(inputs) {
    const samples = inputs[0] && inputs[0][0];
    if (!samples) return true;
    for (const x of samples) {
      this.sum += x;
      this.n += 1;
      this.pos += 1;
      if (this.pos >= this.step) {
        this.pos -= this.step;
        const v = Math.max(-1, Math.min(1, this.sum / this.n));
        this.frame[this.len++] = v < 0 ? v * 0x8000 : v * 0x7fff;
        this.sum = this.n = 0;
        if (this.len === this.frame.length) this.emit();
      }
    }
    return true;
  }
}
registerProcessor("pcm16k", Pcm16k);
