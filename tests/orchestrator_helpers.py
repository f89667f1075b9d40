"""A real uvicorn serving the orchestrator in this process, and a WebSocket client for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
import websockets

from orchestrator.app import create_app
from orchestrator.server import uvicorn_config
from orchestrator.settings import Settings
from voicebot.serving.launcher import free_port

__all__ = ["LiveServer", "VoiceClient", "free_port", "make_settings", "pcm_frames"]


class LiveServer:
    """uvicorn on a thread; ``stop()`` shuts it down cleanly."""

    def __init__(self, settings: Settings, **app_options: Any) -> None:
        self.settings = settings
        self.server = uvicorn.Server(uvicorn_config(create_app(settings, **app_options), settings))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.port}/v1/voice"

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("orchestrator did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def make_settings(triton: Any, index_dir: Path, **overrides: Any) -> Settings:
    return Settings(
        _env_file=None,
        port=free_port(),
        triton_grpc_url=triton.grpc_url,
        triton_http_url=triton.http_url,
        index_dir=index_dir,
        **overrides,
    )


def pcm_frames(wav_path: Path, frame_ms: int = 20) -> list[bytes]:
    with wave.open(str(wav_path), "rb") as wav:
        assert wav.getframerate() == 16000 and wav.getsampwidth() == 2 and wav.getnchannels() == 1
        pcm = wav.readframes(wav.getnframes())
    step = 16000 * 2 * frame_ms // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


@dataclass
class Received:
    at: float
    event: dict[str, Any]
    audio: bytes | None = None


@dataclass
class TurnLog:
    items: list[Received] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r.event for r in self.items if r.event["type"] == kind]

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.items]


class VoiceClient:
    """A ``/v1/voice`` client that keeps audio frames with the event that announced them."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pending: list[Received] = []

    @classmethod
    async def connect(cls, url: str) -> VoiceClient:
        return cls(await websockets.connect(url, max_size=1 << 22))

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def receive(self, timeout: float = 60) -> Received:
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(message, bytes):
            raise AssertionError("binary frame without an audio event before it")
        event = json.loads(message)
        item = Received(time.monotonic(), event)
        if event["type"] == "audio":
            frame = await asyncio.wait_for(self.ws.recv(), 10)  # sent right behind its event
            assert isinstance(frame, bytes), "audio event not followed by its binary frame"
            item.audio = frame
        return item

    async def until(self, *kinds: str, timeout: float = 120) -> TurnLog:
        log = TurnLog()
        deadline = time.monotonic() + timeout
        while True:
            item = await self.receive(max(deadline - time.monotonic(), 0.1))
            log.items.append(item)
            if item.event["type"] in kinds:
                return log

    async def speak(self, frames: list[bytes], paced: bool = True, log: TurnLog | None = None) -> TurnLog:
        """Stream frames in real time, collecting whatever arrives meanwhile (partial transcripts)."""
        log = log or TurnLog()
        await self.send({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"})
        began = time.monotonic()
        for n, frame in enumerate(frames):
            await self.ws.send(frame)
            if paced:
                wait = began + (n + 1) * 0.02 - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    log.items.append(await self.receive(max(wait, 0.0001)))
        await self.send({"type": "stop"})
        return log

    async def close(self) -> None:
        await self.ws.close()
