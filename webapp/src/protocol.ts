// The /v1/voice wire protocol, as the server speaks it (see the README's protocol table).

export interface Citation {
  id: string;
  document_id: string;
  title: string;
  heading: string; // the section the passage comes from ("" when the document has none)
  source: string;
  text: string; // the sentences of the passage that the model saw
  score: number;
}

export type Timings = Record<
  "stt_ms" | "retrieval_ms" | "llm_first_token_ms" | "tts_first_audio_ms" | "first_audio_ms" | "total_ms",
  number
>;

export type ServerEvent =
  | { type: "transcript"; text: string; final: boolean }
  | { type: "citations"; items: Citation[] }
  | { type: "token"; text: string }
  | { type: "audio"; sample_rate: number; encoding: string; seq: number }
  | { type: "done"; turn_id: string; timings: Timings }
  | { type: "cancelled" }
  | { type: "busy"; position: number; estimate_s: number }
  | { type: "error"; code: string; message: string; retry_after_s?: number };

export type ClientEvent =
  | { type: "start"; sample_rate: number; encoding: "pcm_s16le" }
  | { type: "stop" }
  | { type: "cancel" }
  | { type: "text"; text: string; speak: boolean };

export interface Decoded {
  event: ServerEvent;
  audio?: Int16Array;
}

const KNOWN = new Set(["transcript", "citations", "token", "audio", "done", "cancelled", "busy", "error"]);

/** What to tell someone whose question waits for the server (a `busy` event). */
export function busyMessage(event: { position: number; estimate_s: number }): string {
  const place = event.position === 1 ? "next in line" : `number ${event.position} in line`;
  const wait = event.estimate_s >= 1 ? `, about ${Math.round(event.estimate_s)} s` : "";
  return `The server is busy: your question is ${place}${wait}.`;
}

/**
 * Turns WebSocket messages into events. An `audio` event announces the binary frame
 * that follows it; the pair comes out as one decoded item.
 */
export class EventDecoder {
  private awaitingAudio: Extract<ServerEvent, { type: "audio" }> | null = null;

  handle(data: string | ArrayBuffer): Decoded | null {
    if (typeof data !== "string") {
      const header = this.awaitingAudio;
      this.awaitingAudio = null;
      if (!header) return null; // a stray frame: nothing announced it
      return { event: header, audio: new Int16Array(data.slice(0, data.byteLength - (data.byteLength % 2))) };
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch {
      return null;
    }
    if (!parsed || typeof parsed !== "object" || !KNOWN.has((parsed as { type?: string }).type ?? "")) return null;
    const event = parsed as ServerEvent;
    if (event.type === "audio") {
      this.awaitingAudio = event;
      return null;
    }
    return { event };
  }

  reset(): void {
    this.awaitingAudio = null;
  }
}

export function voiceUrl(location: Location, token: string | null): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return `${scheme}//${location.host}/v1/voice${query}`;
}

/** Waterfall rows from `done` timings: where each stage starts and how long it took, in ms. */
export function waterfall(t: Timings): { label: string; start: number; length: number }[] {
  const rows: { label: string; start: number; length: number }[] = [];
  const answerStart = Math.max(0, t.stt_ms) + Math.max(0, t.retrieval_ms);
  rows.push({ label: "Speech to text", start: 0, length: Math.max(0, t.stt_ms) });
  rows.push({ label: "Retrieval", start: Math.max(0, t.stt_ms), length: Math.max(0, t.retrieval_ms) });
  if (t.llm_first_token_ms >= 0) rows.push({ label: "LLM first token", start: answerStart, length: t.llm_first_token_ms });
  if (t.tts_first_audio_ms >= 0) rows.push({ label: "First audio", start: answerStart, length: t.tts_first_audio_ms });
  rows.push({ label: "Total", start: 0, length: Math.max(0, t.total_ms) });
  return rows;
}
