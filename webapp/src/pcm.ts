// Microphone samples -> 16 kHz mono PCM16 in 20 ms frames, as /v1/voice expects.

export const TARGET_RATE = 16000;
export const FRAME_SAMPLES = 320; // 20 ms at 16 kHz

/** Float samples in [-1, 1] to little-endian-ready int16 (clipped, symmetric rounding). */
export function floatToPcm16(input: Float32Array): Int16Array {
  const out = new Int16Array(input.length);
  for (let i = 0; i < input.length; i++) {
    const s = Math.max(-1, Math.min(1, input[i]));
    out[i] = Math.round(s < 0 ? s * 0x8000 : s * 0x7fff);
  }
  return out;
}

/**
 * Streaming downsampler: each output sample averages the input samples of its interval
 * (a box filter, enough to keep speech band aliasing down), carrying the fractional
 * position across chunks so chunk boundaries never click or drift.
 */
export class Downsampler {
  private readonly step: number;
  private pos = 0; // position of the next output sample, in input samples, relative to the pending buffer
  private pending: number[] = [];

  constructor(readonly inRate: number, readonly outRate: number = TARGET_RATE) {
    if (!(inRate > 0) || !(outRate > 0) || outRate > inRate) {
      throw new Error(`cannot resample ${inRate} Hz to ${outRate} Hz`);
    }
    this.step = inRate / outRate;
  }

  process(chunk: Float32Array): Float32Array {
    for (let i = 0; i < chunk.length; i++) this.pending.push(chunk[i]);
    const out: number[] = [];
    while (this.pos + this.step <= this.pending.length) {
      const start = Math.floor(this.pos);
      const end = Math.floor(this.pos + this.step);
      let sum = 0;
      for (let i = start; i < end; i++) sum += this.pending[i];
      out.push(end > start ? sum / (end - start) : this.pending[start]);
      this.pos += this.step;
    }
    const consumed = Math.floor(this.pos);
    this.pending = this.pending.slice(consumed);
    this.pos -= consumed;
    return Float32Array.from(out);
  }
}

/** Collects int16 samples and hands out whole 20 ms frames. */
export class FrameChunker {
  private buffer = new Int16Array(0);

  constructor(readonly frameSamples: number = FRAME_SAMPLES) {}

  push(samples: Int16Array): Int16Array[] {
    const joined = new Int16Array(this.buffer.length + samples.length);
    joined.set(this.buffer);
    joined.set(samples, this.buffer.length);
    const frames: Int16Array[] = [];
    let offset = 0;
    while (joined.length - offset >= this.frameSamples) {
      frames.push(joined.slice(offset, offset + this.frameSamples));
      offset += this.frameSamples;
    }
    this.buffer = joined.slice(offset);
    return frames;
  }

  /** The last partial frame, if any (sent before `stop`). */
  flush(): Int16Array | null {
    const rest = this.buffer;
    this.buffer = new Int16Array(0);
    return rest.length ? rest : null;
  }
}

/** Root-mean-square level of a chunk, 0..1, for the input meter. */
export function level(samples: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return samples.length ? Math.min(1, Math.sqrt(sum / samples.length) * 4) : 0;
}
