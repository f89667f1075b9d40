// The page: push-to-talk over /v1/voice, streaming transcript/answer/citations, playback,
// barge-in, typed questions, documents, and the per-turn latency waterfall.

import "./style.css";
import workletUrl from "./capture-worklet.ts?worker&url";
import { Api, AuthRequired, type DocumentInfo } from "./api";
import { Downsampler, FrameChunker, TARGET_RATE, floatToPcm16, level } from "./pcm";
import { Player } from "./player";
import {
  busyMessage,
  type Citation,
  type ClientEvent,
  EventDecoder,
  type ServerEvent,
  type Timings,
  voiceUrl,
  waterfall,
} from "./protocol";

type State = "idle" | "listening" | "transcribing" | "thinking" | "speaking" | "busy";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const els = {
  connection: $("connection"),
  banner: $("banner"),
  tokenForm: $<HTMLFormElement>("token-form"),
  tokenInput: $<HTMLInputElement>("token-input"),
  messages: $<HTMLOListElement>("messages"),
  state: $("state"),
  level: $<HTMLMeterElement>("level"),
  talk: $<HTMLButtonElement>("talk"),
  askForm: $<HTMLFormElement>("ask-form"),
  askInput: $<HTMLInputElement>("ask-input"),
  askSpeak: $<HTMLInputElement>("ask-speak"),
  waterfall: $("waterfall"),
  waterfallRows: $("waterfall-rows"),
  indexSize: $("index-size"),
  dropzone: $("dropzone"),
  fileInput: $<HTMLInputElement>("file-input"),
  progress: $<HTMLProgressElement>("upload-progress"),
  documents: $<HTMLUListElement>("documents"),
};

const TOKEN_KEY = "voicebot.token";
const api = new Api(localStorage.getItem(TOKEN_KEY));
const player = new Player();
const decoder = new EventDecoder();
let socket: WebSocket | null = null;
let reconnectDelay = 500;
let state: State = "idle";
let userBubble: HTMLElement | null = null;
let answerBubble: HTMLElement | null = null;
let answerText: HTMLElement | null = null;
let answerActive = false;
let lastAnswer: HTMLElement | null = null; // outlives the turn: its audio may still be playing

// Exposed for end-to-end tests and the curious: what actually reached the speakers.
const stats = { audioChunksReceived: 0, audioChunksScheduled: 0, turnsDone: 0 };
(window as unknown as { voicebot: unknown }).voicebot = {
  stats,
  get chunksPlayed() {
    return player.chunksPlayed;
  },
  get playing() {
    return player.playing;
  },
};

// ------------------------------------------------------------------ state and feedback

function setState(next: State): void {
  state = next;
  els.state.textContent = next;
  els.state.dataset.state = next;
  els.talk.classList.toggle("active", next === "listening");
  els.talk.setAttribute("aria-pressed", String(next === "listening"));
}

function showError(message: string): void {
  els.banner.textContent = message;
  els.banner.hidden = false;
}

function clearError(): void {
  els.banner.hidden = true;
}

function bubble(role: "user" | "assistant", text: string): HTMLElement {
  const item = document.createElement("li");
  item.className = `bubble ${role}`;
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  item.append(body);
  els.messages.append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function ensureAnswer(): HTMLElement {
  if (!answerBubble) {
    answerBubble = bubble("assistant", "");
    answerText = answerBubble.querySelector(".text");
    lastAnswer = answerBubble;
  }
  return answerBubble;
}

function showCitations(items: Citation[]): void {
  const host = ensureAnswer();
  host.querySelector(".citations")?.remove();
  if (!items.length) return;
  const list = document.createElement("ul");
  list.className = "citations";
  list.setAttribute("aria-label", "Sources");
  items.forEach((c, n) => {
    const li = document.createElement("li");
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    const where = c.heading && c.heading !== c.title ? `${c.title} › ${c.heading}` : c.title;
    summary.textContent = `[${n + 1}] ${where} — ${c.source}`;
    const passage = document.createElement("p");
    passage.textContent = c.text;
    details.append(summary, passage);
    li.append(details);
    list.append(li);
  });
  host.append(list);
}

function showWaterfall(t: Timings): void {
  const rows = waterfall(t);
  const span = Math.max(1, ...rows.map((r) => r.start + r.length));
  els.waterfallRows.replaceChildren(
    ...rows.map((r) => {
      const row = document.createElement("div");
      row.className = "wf-row";
      const label = document.createElement("span");
      label.className = "wf-label";
      label.textContent = r.label;
      const track = document.createElement("span");
      track.className = "wf-track";
      const bar = document.createElement("span");
      bar.className = "wf-bar";
      bar.style.marginLeft = `${(100 * r.start) / span}%`;
      bar.style.width = `${Math.max(0.5, (100 * r.length) / span)}%`;
      track.append(bar);
      const value = document.createElement("span");
      value.className = "wf-value";
      value.textContent = `${Math.round(r.length)} ms`;
      row.append(label, track, value);
      return row;
    }),
  );
  els.waterfall.hidden = false;
}

// ------------------------------------------------------------------ the socket

function send(event: ClientEvent): boolean {
  if (socket?.readyState !== WebSocket.OPEN) {
    showError("Not connected to the server; reconnecting…");
    return false;
  }
  socket.send(JSON.stringify(event));
  return true;
}

function connect(): void {
  els.connection.textContent = "connecting…";
  const ws = new WebSocket(voiceUrl(location, api.token));
  ws.binaryType = "arraybuffer";
  socket = ws;
  ws.onopen = () => {
    els.connection.textContent = "connected";
    els.connection.dataset.ok = "true";
    reconnectDelay = 500;
    clearError();
  };
  ws.onmessage = (message) => {
    const decoded = decoder.handle(message.data as string | ArrayBuffer);
    if (decoded) onEvent(decoded.event, decoded.audio);
  };
  ws.onclose = (close) => {
    els.connection.dataset.ok = "false";
    decoder.reset();
    if (close.code === 4401) {
      els.connection.textContent = "token needed";
      els.tokenForm.hidden = false;
      showError("This server needs an access token.");
      return;
    }
    els.connection.textContent = "disconnected — retrying";
    if (state === "listening") stopCapture(false);
    setState("idle");
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 8000);
  };
}

function onEvent(event: ServerEvent, audio?: Int16Array): void {
  switch (event.type) {
    case "transcript":
      if (!userBubble) userBubble = bubble("user", "");
      userBubble.querySelector(".text")!.textContent = event.text || "…";
      userBubble.classList.toggle("partial", !event.final);
      if (event.final && state === "busy") clearError(); // admitted: the busy notice is over
      if (event.final) setState("thinking");
      break;
    case "citations":
      if (state === "busy") clearError(); // a typed question has no transcript event
      showCitations(event.items);
      setState("thinking");
      break;
    case "token":
      if (!answerActive) return;
      ensureAnswer();
      answerText!.textContent += event.text;
      break;
    case "audio":
      if (!answerActive || !audio) return;
      stats.audioChunksReceived++;
      player.enqueue(audio, event.sample_rate);
      stats.audioChunksScheduled++;
      setState("speaking");
      break;
    case "done":
      answerActive = false; // the server has sent everything; only playback may remain
      stats.turnsDone++;
      showWaterfall(event.timings);
      answerBubble?.classList.add("complete");
      finishTurn();
      break;
    case "cancelled":
      finishTurn();
      break;
    case "busy":
      showError(busyMessage(event)); // cleared when the answer starts
      if (state !== "listening") setState("busy");
      break;
    case "error":
      showError(`${event.message} (${event.code})`);
      if (state !== "listening") finishTurn();
      break;
  }
}

function finishTurn(): void {
  userBubble = null;
  answerBubble = null;
  answerText = null;
  if (state !== "listening") setState(player.playing ? "speaking" : "idle");
}

player.onIdle = () => {
  if (state === "speaking") setState("idle");
};

/** Barge-in: silence what is playing, drop what is queued, tell the server. */
function interrupt(): void {
  const wasAnswering = answerActive || player.playing || state === "thinking" || state === "transcribing";
  player.stop();
  if (wasAnswering) {
    lastAnswer?.classList.add("interrupted");
    send({ type: "cancel" });
    if (state !== "listening") setState("idle");
  }
  answerActive = false;
}

// ------------------------------------------------------------------ the microphone

let capture: { ctx: AudioContext; stream: MediaStream; node: AudioWorkletNode } | null = null;
let chunker = new FrameChunker();

async function startCapture(): Promise<void> {
  if (state === "listening") return;
  interrupt();
  clearError();
  try {
    await player.resume();
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
    const ctx = new AudioContext();
    await ctx.audioWorklet.addModule(workletUrl);
    const node = new AudioWorkletNode(ctx, "voicebot-capture");
    const downsampler = new Downsampler(ctx.sampleRate, TARGET_RATE);
    chunker = new FrameChunker();
    node.port.onmessage = (m: MessageEvent<Float32Array>) => {
      if (state !== "listening") return;
      els.level.value = level(m.data);
      for (const frame of chunker.push(floatToPcm16(downsampler.process(m.data)))) socket?.send(frame.buffer);
    };
    ctx.createMediaStreamSource(stream).connect(node);
    capture = { ctx, stream, node };
    if (!send({ type: "start", sample_rate: TARGET_RATE, encoding: "pcm_s16le" })) {
      stopCapture(false);
      return;
    }
    userBubble = null;
    answerBubble = null;
    setState("listening");
  } catch (err) {
    const name = (err as DOMException)?.name;
    showError(
      name === "NotAllowedError"
        ? "Microphone access was denied. Allow it in the browser to talk, or type your question."
        : `Could not open the microphone: ${(err as Error).message}`,
    );
    setState("idle");
  }
}

function stopCapture(sendStop = true): void {
  if (!capture) return;
  const rest = chunker.flush();
  if (sendStop && rest && socket?.readyState === WebSocket.OPEN) socket.send(rest.buffer);
  capture.stream.getTracks().forEach((t) => t.stop());
  capture.node.port.onmessage = null;
  void capture.ctx.close();
  capture = null;
  els.level.value = 0;
  if (sendStop && send({ type: "stop" })) {
    answerActive = true;
    setState("transcribing");
  } else {
    setState("idle");
  }
}

// ------------------------------------------------------------------ input: button, keys, text

els.talk.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  els.talk.setPointerCapture?.(e.pointerId);
  void startCapture();
});
for (const type of ["pointerup", "pointercancel"] as const) {
  els.talk.addEventListener(type, () => state === "listening" && stopCapture());
}
els.talk.addEventListener("keydown", (e) => {
  if ((e.key === "Enter" || e.key === " ") && !e.repeat) {
    e.preventDefault();
    void startCapture();
  }
});
els.talk.addEventListener("keyup", (e) => {
  if ((e.key === "Enter" || e.key === " ") && state === "listening") stopCapture();
});

const typing = (target: EventTarget | null) =>
  target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLButtonElement;
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") {
    interrupt();
    return;
  }
  if (e.code === "Space" && !e.repeat && !typing(e.target)) {
    e.preventDefault();
    void startCapture();
  }
});
document.addEventListener("keyup", (e) => {
  if (e.code === "Space" && !typing(e.target) && state === "listening") stopCapture();
});

els.askForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = els.askInput.value.trim();
  if (!text) return;
  interrupt();
  void player.resume();
  if (!send({ type: "text", text, speak: els.askSpeak.checked })) return;
  answerActive = true;
  userBubble = bubble("user", text);
  answerBubble = null;
  els.askInput.value = "";
  setState("thinking");
});

els.tokenForm.addEventListener("submit", (e) => {
  e.preventDefault();
  api.token = els.tokenInput.value.trim() || null;
  if (api.token) localStorage.setItem(TOKEN_KEY, api.token);
  else localStorage.removeItem(TOKEN_KEY);
  els.tokenForm.hidden = true;
  connect();
  void refreshDocuments();
});

// ------------------------------------------------------------------ documents

function renderDocuments(docs: DocumentInfo[], chunks: number, search: string): void {
  els.indexSize.textContent = `${docs.length} · ${chunks} passages · ${search}`;
  els.documents.replaceChildren(
    ...docs.map((d) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "doc-title";
      name.textContent = d.title;
      const meta = document.createElement("small");
      meta.textContent = `${d.source} · ${d.chunks} passages`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Delete";
      remove.setAttribute("aria-label", `Delete ${d.title}`);
      remove.addEventListener("click", async () => {
        try {
          await api.remove(d.id);
          await refreshDocuments();
        } catch (err) {
          handleApiError(err);
        }
      });
      li.append(name, meta, remove);
      return li;
    }),
  );
}

function handleApiError(err: unknown): void {
  if (err instanceof AuthRequired) {
    els.tokenForm.hidden = false;
    showError("This server needs an access token.");
  } else {
    showError((err as Error).message);
  }
}

async function refreshDocuments(): Promise<void> {
  try {
    const listing = await api.documents();
    renderDocuments(listing.documents, listing.chunks, listing.search);
  } catch (err) {
    handleApiError(err);
  }
}

async function uploadFiles(files: FileList | File[]): Promise<void> {
  for (const file of Array.from(files)) {
    els.progress.hidden = false;
    els.progress.value = 0;
    try {
      await api.upload(file, (f) => (els.progress.value = f));
    } catch (err) {
      handleApiError(err);
    }
  }
  els.progress.hidden = true;
  await refreshDocuments();
}

els.fileInput.addEventListener("change", () => {
  if (els.fileInput.files?.length) void uploadFiles(els.fileInput.files);
  els.fileInput.value = "";
});
els.dropzone.addEventListener("dragover", (e) => {
  e.preventDefault();
  els.dropzone.classList.add("over");
});
els.dropzone.addEventListener("dragleave", () => els.dropzone.classList.remove("over"));
els.dropzone.addEventListener("drop", (e) => {
  e.preventDefault();
  els.dropzone.classList.remove("over");
  if (e.dataTransfer?.files.length) void uploadFiles(e.dataTransfer.files);
});
els.dropzone.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") {
    e.preventDefault();
    els.fileInput.click();
  }
});

setState("idle");
connect();
void refreshDocuments();
