// Gapless streaming playback: each chunk starts exactly where the previous one ends.

/** Pure scheduling: where the next chunk starts on the audio clock. */
export class PlaybackClock {
  private end = 0;

  constructor(readonly lead = 0.05) {}

  /** Start time for a chunk of `duration` s, given the context's current time. */
  schedule(now: number, duration: number): number {
    // After an underrun (or at the start) leave a small lead so the chunk is not clipped.
    const start = this.end > now ? this.end : now + this.lead;
    this.end = start + duration;
    return start;
  }

  get endTime(): number {
    return this.end;
  }

  reset(): void {
    this.end = 0;
  }
}

/** Web Audio output for PCM16 chunks. `stop()` silences everything queued at once. */
export class Player {
  private ctx: AudioContext | null = null;
  private readonly clock = new PlaybackClock();
  private sources = new Set<AudioBufferSourceNode>();
  chunksPlayed = 0;
  onIdle: () => void = () => {};

  private context(): AudioContext {
    if (!this.ctx) this.ctx = new AudioContext();
    return this.ctx;
  }

  async resume(): Promise<void> {
    const ctx = this.context();
    if (ctx.state === "suspended") await ctx.resume();
  }

  enqueue(pcm: Int16Array, sampleRate: number): void {
    if (!pcm.length) return;
    const ctx = this.context();
    const buffer = ctx.createBuffer(1, pcm.length, sampleRate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32768;
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    source.start(this.clock.schedule(ctx.currentTime, buffer.duration));
    this.sources.add(source);
    source.onended = () => {
      this.sources.delete(source);
      this.chunksPlayed++;
      if (this.sources.size === 0) this.onIdle();
    };
  }

  get playing(): boolean {
    return this.sources.size > 0;
  }

  stop(): void {
    for (const source of this.sources) {
      source.onended = null;
      try {
        source.stop();
      } catch {
        /* already stopped */
      }
    }
    this.sources.clear();
    this.clock.reset();
  }
}
