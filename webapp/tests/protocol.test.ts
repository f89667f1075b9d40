import { describe, expect, it } from "vitest";
import { busyMessage, EventDecoder, type Timings, voiceUrl, waterfall } from "../src/protocol";

describe("EventDecoder", () => {
  it("pairs an audio event with the binary frame after it", () => {
    const d = new EventDecoder();
    expect(d.handle(JSON.stringify({ type: "audio", sample_rate: 22050, encoding: "pcm_s16le", seq: 0 }))).toBeNull();
    const pcm = Int16Array.from([1, -2, 3]);
    const out = d.handle(pcm.buffer);
    expect(out?.event).toMatchObject({ type: "audio", sample_rate: 22050, seq: 0 });
    expect(Array.from(out!.audio!)).toEqual([1, -2, 3]);
  });

  it("ignores stray frames, unknown events and bad JSON", () => {
    const d = new EventDecoder();
    expect(d.handle(new ArrayBuffer(4))).toBeNull();
    expect(d.handle('{"type":"mystery"}')).toBeNull();
    expect(d.handle("{nope")).toBeNull();
    expect(d.handle('{"type":"token","text":"hi"}')).toEqual({ event: { type: "token", text: "hi" } });
  });
});

describe("busy", () => {
  it("is decoded and says the place in line and the wait", () => {
    const d = new EventDecoder();
    const out = d.handle('{"type":"busy","position":3,"estimate_s":6.4}');
    expect(out?.event).toEqual({ type: "busy", position: 3, estimate_s: 6.4 });
    expect(busyMessage({ position: 3, estimate_s: 6.4 })).toBe("The server is busy: your question is number 3 in line, about 6 s.");
    expect(busyMessage({ position: 1, estimate_s: 0.4 })).toBe("The server is busy: your question is next in line.");
  });
});

describe("voiceUrl", () => {
  it("follows the page's scheme and adds the token", () => {
    expect(voiceUrl({ protocol: "https:", host: "x:1" } as Location, "a b")).toBe("wss://x:1/v1/voice?token=a%20b");
    expect(voiceUrl({ protocol: "http:", host: "x" } as Location, null)).toBe("ws://x/v1/voice");
  });
});

describe("waterfall", () => {
  it("lays stages out on one time axis and skips stages that did not run", () => {
    const t: Timings = { stt_ms: 400, retrieval_ms: 20, llm_first_token_ms: 300, tts_first_audio_ms: -1, first_audio_ms: -1, total_ms: 900 };
    expect(waterfall(t)).toEqual([
      { label: "Speech to text", start: 0, length: 400 },
      { label: "Retrieval", start: 400, length: 20 },
      { label: "LLM first token", start: 420, length: 300 },
      { label: "Total", start: 0, length: 900 },
    ]);
  });
});
