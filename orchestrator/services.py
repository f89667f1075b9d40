"""One interface per modality, and their implementation over Triton's gRPC API (asyncio).

Speech to text, retrieval and the streamed answer are separate so a session can be
tested with small fakes; :class:`TritonServices` implements all three over one client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from rag_index import DocumentIndex, SearchHit
from voicebot import contract as c
from voicebot.access import authorize
from voicebot.contract import ErrorCode
from voicebot.text import ANSWER_DEFAULTS, Passage, build_prompt

from .protocol import PCM_ENCODING


class ServiceError(RuntimeError):
    """A Triton call failed; ``code`` is what the client sees in its error event."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class AudioChunk:
    pcm: bytes  # int16 little-endian mono
    sample_rate: int


class SpeechToText(Protocol):
    async def transcribe(self, audio: bytes, encoding: str, request_id: str) -> str: ...


class Retriever(Protocol):
    async def retrieve(self, query: str, k: int, request_id: str) -> list[SearchHit]: ...


class Answerer(Protocol):
    def answer(
        self, question: str, passages: Sequence[SearchHit], history: Sequence[str], speak: bool, request_id: str
    ) -> AsyncIterator[TextDelta | AudioChunk]: ...


def _bytes_input(name: str, values: list[bytes]) -> InferInput:
    arr = np.array(values, dtype=np.object_)
    tensor = InferInput(name, list(arr.shape), "BYTES")
    tensor.set_data_from_numpy(arr)
    return tensor


def _service_error(exc: InferenceServerException, what: str) -> ServiceError:
    status = str(exc.status() or "").upper()
    if "INVALID_ARG" in status or "400" in status:
        return ServiceError(ErrorCode.INVALID_INPUT, f"{what}: {exc.message()}")
    if "DEADLINE_EXCEEDED" in status:
        return ServiceError(ErrorCode.UPSTREAM_STALLED, f"{what} did not answer in time")
    return ServiceError(ErrorCode.UPSTREAM_UNAVAILABLE, f"{what} failed: {exc.message()}")


# A restarted tritonserver must be found again within seconds: gRPC's default reconnect
# backoff grows to two minutes while the server is away.
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def passages_json(hits: Sequence[SearchHit]) -> str:
    return json.dumps([{"id": f"{h.document_id}#{h.chunk_id}", "title": h.title, "text": h.text} for h in hits])


class TritonServices:
    """Speech to text, retrieval and answers, all through Triton.

    Every wait on Triton is bounded: a model whose process died mid-request never answers
    (Triton 2.51 does not fail such a request). A unary call and the first piece of a stream
    may wait ``first_response_timeout_s`` (they can queue behind other sessions' work); later
    pieces of a stream ``stall_timeout_s``.
    """

    def __init__(
        self,
        grpc_url: str,
        index: DocumentIndex,
        language: str = "en",
        stall_timeout_s: float = 30.0,
        first_response_timeout_s: float = 90.0,
        api_token: str | None = None,
    ) -> None:
        self.client = authorize(grpcaio.InferenceServerClient(grpc_url, channel_args=CHANNEL_ARGS), api_token, "grpc")
        self.index = index
        self.language = language
        self.stall_timeout_s = stall_timeout_s
        self.first_response_timeout_s = first_response_timeout_s

    async def close(self) -> None:
        await self.client.close()

    async def ready(self) -> dict[str, bool]:
        states: dict[str, bool] = {}
        for name in c.MODEL_NAMES:
            try:
                states[name] = bool(await self.client.is_model_ready(name, client_timeout=2.0))
            except InferenceServerException:
                states[name] = False
        return states

    async def _infer(self, model: str, inputs: list[InferInput], outputs: list[str], request_id: str) -> Any:
        try:
            return await self.client.infer(
                model,
                inputs,
                outputs=[InferRequestedOutput(o) for o in outputs],
                request_id=request_id,
                client_timeout=self.first_response_timeout_s,
            )
        except InferenceServerException as exc:
            raise _service_error(exc, model) from None

    async def transcribe(self, audio: bytes, encoding: str, request_id: str) -> str:
        if encoding == PCM_ENCODING:
            samples = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0
            tensor = InferInput(c.AUDIO, [samples.size], "FP32")
            tensor.set_data_from_numpy(samples)
            inputs = [tensor, _bytes_input(c.LANGUAGE, [self.language.encode()])]
            result = await self._infer(c.WHISPER_STT.name, inputs, [c.TRANSCRIPT], request_id)
        else:
            inputs = [_bytes_input(c.AUDIO_BYTES, [audio])]
            result = await self._infer(c.TRANSCRIBE.name, inputs, [c.TRANSCRIPT], request_id)
        return result.as_numpy(c.TRANSCRIPT).reshape(-1)[0].decode("utf-8").strip()

    async def embed(self, texts: list[str], request_id: str) -> np.ndarray:
        data = np.array([[t.encode() for t in texts]], dtype=np.object_)  # [1, N]: one request of the batch
        tensor = InferInput(c.TEXT, list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        result = await self._infer(c.EMBEDDER.name, [tensor], [c.EMBEDDING], request_id)
        return np.asarray(result.as_numpy(c.EMBEDDING)[0], dtype=np.float32)

    async def retrieve(self, query: str, k: int, request_id: str) -> list[SearchHit]:
        vector = (await self.embed([query], request_id))[0]
        return await asyncio.to_thread(self.index.search, vector, k)

    async def answer(
        self, question: str, passages: Sequence[SearchHit], history: Sequence[str], speak: bool, request_id: str
    ) -> AsyncIterator[TextDelta | AudioChunk]:
        if speak:
            model, outputs = c.VOICE_ANSWER.name, [c.TEXT_OUTPUT, c.AUDIO, c.SAMPLE_RATE]
            inputs = [
                _bytes_input(c.QUESTION, [question.encode()]),
                _bytes_input(c.PASSAGES, [passages_json(passages).encode()]),
                _bytes_input(c.HISTORY, [json.dumps(list(history)).encode()]),
            ]
        else:
            # Text only: the same grounded prompt straight to the LLM, no speech work.
            prompt = build_prompt(question, [Passage(p.document_id, p.title, p.text) for p in passages], history)
            stream_flag = InferInput(c.STREAM, [1], "BOOL")
            stream_flag.set_data_from_numpy(np.array([True]))
            model, outputs = c.LLM.name, [c.TEXT_OUTPUT]
            inputs = [
                _bytes_input(c.TEXT_INPUT, [prompt.encode()]),
                stream_flag,
                _bytes_input(c.SAMPLING_PARAMETERS, [ANSWER_DEFAULTS.to_json().encode()]),
            ]
        async for result in self._stream(model, inputs, outputs, request_id):
            text = result.as_numpy(c.TEXT_OUTPUT)
            if text is not None:
                joined = "".join(x.decode("utf-8", errors="replace") for x in text.reshape(-1))
                if joined:
                    yield TextDelta(joined)
            audio = result.as_numpy(c.AUDIO)
            if audio is not None and audio.size:
                rate = int(result.as_numpy(c.SAMPLE_RATE).reshape(-1)[0])
                yield AudioChunk(audio.astype("<i2").tobytes(), rate)

    async def _stream(
        self, model: str, inputs: list[InferInput], outputs: list[str], request_id: str
    ) -> AsyncIterator[Any]:
        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield {
                "model_name": model,
                "inputs": inputs,
                "outputs": [InferRequestedOutput(o) for o in outputs],
                "request_id": request_id,
            }

        responses = self.client.stream_infer(requests())
        pieces = aiter(responses)
        bound = self.first_response_timeout_s
        try:
            while True:
                try:
                    result, error = await asyncio.wait_for(anext(pieces), bound)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise ServiceError(ErrorCode.UPSTREAM_STALLED, f"{model} sent nothing for {bound:g} s") from None
                bound = self.stall_timeout_s
                if error is not None:
                    raise _service_error(error, model)
                yield result
        except InferenceServerException as exc:
            raise _service_error(exc, model) from None
        except grpc.aio.AioRpcError as exc:  # the stream itself broke: the server went away mid-answer
            raise ServiceError(ErrorCode.UPSTREAM_UNAVAILABLE, f"{model} stream broke: {exc.code().name}") from None
        finally:
            # Ends the gRPC stream; on barge-in this cancels the request in Triton.
            responses.cancel()
