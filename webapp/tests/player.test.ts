import { describe, expect, it } from "vitest";
import { PlaybackClock } from "../src/player";

describe("PlaybackClock", () => {
  it("schedules chunks back to back with no gap", () => {
    const c = new PlaybackClock(0.05);
    expect(c.schedule(1.0, 0.5)).toBeCloseTo(1.05);
    expect(c.schedule(1.1, 0.25)).toBeCloseTo(1.55);
    expect(c.schedule(1.2, 0.25)).toBeCloseTo(1.8);
    expect(c.endTime).toBeCloseTo(2.05);
  });

  it("restarts with a lead after an underrun or a reset", () => {
    const c = new PlaybackClock(0.05);
    c.schedule(0, 0.1);
    expect(c.schedule(3.0, 0.1)).toBeCloseTo(3.05); // queue ran dry: no scheduling in the past
    c.reset();
    expect(c.schedule(3.1, 0.1)).toBeCloseTo(3.15);
  });
});
