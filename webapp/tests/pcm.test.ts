import { describe, expect, it } from "vitest";
import { Downsampler, FRAME_SAMPLES, FrameChunker, floatToPcm16, level } from "../src/pcm";

describe("floatToPcm16", () => {
  it("scales and clips", () => {
    expect(Array.from(floatToPcm16(Float32Array.from([0, 1, -1, 0.5, 2, -3])))).toEqual([
      0, 32767, -32768, 16384, 32767, -32768,
    ]);
  });
});

describe("Downsampler", () => {
  it("turns 48 kHz into 16 kHz with the right length, across chunk boundaries", () => {
    const d = new Downsampler(48000, 16000);
    let total = 0;
    for (const size of [128, 128, 100, 1000, 7]) total += d.process(new Float32Array(size).fill(0.25)).length;
    expect(total).toBe(Math.floor((128 + 128 + 100 + 1000 + 7) / 3));
  });

  it("keeps a low tone and averages away a tone above the new Nyquist", () => {
    const rate = 48000;
    const tone = (f: number) => Float32Array.from({ length: rate }, (_, i) => Math.sin((2 * Math.PI * f * i) / rate));
    const low = new Downsampler(rate).process(tone(440));
    const high = new Downsampler(rate).process(tone(15000));
    expect(level(low)).toBeGreaterThan(0.9);
    expect(Math.max(...high.map(Math.abs))).toBeLessThan(0.5);
  });

  it("handles 44.1 kHz (a non-integer ratio) without drift", () => {
    const d = new Downsampler(44100, 16000);
    let total = 0;
    for (let i = 0; i < 441; i++) total += d.process(new Float32Array(100)).length;
    expect(Math.abs(total - 16000)).toBeLessThanOrEqual(1);
  });

  it("refuses upsampling", () => {
    expect(() => new Downsampler(8000, 16000)).toThrow();
  });
});

describe("FrameChunker", () => {
  it("emits whole 20 ms frames and keeps the rest for flush", () => {
    const c = new FrameChunker();
    expect(c.push(new Int16Array(100))).toHaveLength(0);
    const frames = c.push(new Int16Array(700));
    expect(frames.map((f) => f.length)).toEqual([FRAME_SAMPLES, FRAME_SAMPLES]);
    expect(c.flush()?.length).toBe(800 - 2 * FRAME_SAMPLES);
    expect(c.flush()).toBeNull();
  });
});
