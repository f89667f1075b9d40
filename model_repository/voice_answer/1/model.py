"""Streaming pipeline model: grounded prompt -> streamed llm tokens -> clauses -> streamed tts audio.

Tokens go out as they arrive; each finished clause goes to ``tts`` on a second thread
while generation continues, so the first audio leaves long before the answer ends. The
calls to ``llm`` and ``tts`` go through this server's own gRPC endpoint rather than BLS:
see ``voicebot/serving/loopback.py`` for why.
"""

import json
import queue
import threading
import time
import uuid

import numpy as np
import triton_python_backend_utils as pb_utils

from voicebot import contract as c
from voicebot.sampling import parse_sampling_parameters
from voicebot.serving import cancel, metrics
from voicebot.serving.config import ConfigError, param
from voicebot.serving.loopback import LoopbackError, ModelStream
from voicebot.serving.triton_io import RequestError, StreamWorkers, bytes_tensor, input_text
from voicebot.text import (
    ANSWER_DEFAULTS,
    FIRST_CLAUSE_WORDS,
    ClauseSplitter,
    build_prompt,
    parse_history,
    parse_passages,
)

_DONE = object()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        try:
            max_in_flight = param(config, "max_in_flight", 16)
            self.stall_timeout_s = param(config, "stall_timeout_s", 120.0)
        except ConfigError as exc:
            raise pb_utils.TritonModelException(f"voice_answer: {exc}") from None
        self.first_audio = metrics.histogram(
            metrics.VOICE_FIRST_AUDIO, "Time from request to first audio chunk", args, metrics.LATENCY_BUCKETS
        )
        self.workers = StreamWorkers(pb_utils.Logger.log_error, max_in_flight)

    def execute(self, requests):
        for request in requests:
            self.workers.submit(request, self._answer)
        return None

    def _answer(self, request, is_cancelled):
        began = time.perf_counter()
        question = input_text(request, c.QUESTION, 2000)
        passages = parse_passages(input_text(request, c.PASSAGES, 64_000, allow_empty=True) or "[]")
        history = parse_history(input_text(request, c.HISTORY, 16_000, required=False, allow_empty=True))
        params = parse_sampling_parameters(
            input_text(request, c.SAMPLING_PARAMETERS, 4096, required=False, allow_empty=True), ANSWER_DEFAULTS
        )
        prompt = build_prompt(question, passages, history)

        base = f"bls-{uuid.uuid4().hex}"
        out: queue.Queue = queue.Queue()
        clauses: queue.Queue = queue.Queue()
        stop = threading.Event()
        sub_ids = [f"{base}-llm"]

        def generate():
            try:
                splitter = ClauseSplitter(first_max_words=FIRST_CLAUSE_WORDS)
                for delta in self._stream_llm(prompt, params, sub_ids[0], stop):
                    out.put(("text", delta))
                    for clause in splitter.feed(delta):
                        clauses.put(clause)
                for clause in splitter.flush():
                    clauses.put(clause)
            except Exception as exc:
                out.put(("error", exc))
            finally:
                clauses.put(_DONE)

        def speak():
            try:
                n = 0
                with ModelStream(stall_timeout_s=self.stall_timeout_s) as stream:
                    while (clause := clauses.get()) is not _DONE:
                        if stop.is_set():
                            continue  # drain without speaking
                        n += 1
                        sub_ids.append(f"{base}-tts{n}")
                        for samples, rate in self._stream_tts(stream, clause, sub_ids[-1], stop):
                            out.put(("audio", samples, rate))
            except Exception as exc:
                out.put(("error", exc))
            finally:
                out.put(("done",))

        threads = [threading.Thread(target=generate, daemon=True), threading.Thread(target=speak, daemon=True)]
        for thread in threads:
            thread.start()
        first_audio = True
        try:
            while not is_cancelled():
                try:
                    item = out.get(timeout=0.02)
                except queue.Empty:
                    continue
                kind = item[0]
                if kind == "done":
                    return
                if kind == "error":
                    if isinstance(item[1], LoopbackError):
                        raise RequestError(str(item[1]), item[1].code)
                    raise item[1]
                if kind == "text":
                    yield [bytes_tensor(c.TEXT_OUTPUT, [item[1]])]
                else:
                    if first_audio:
                        self.first_audio.observe(time.perf_counter() - began)
                        first_audio = False
                    yield [
                        pb_utils.Tensor(c.AUDIO, item[1]),
                        pb_utils.Tensor(c.SAMPLE_RATE, np.array([item[2]], dtype=np.int32)),
                    ]
        finally:
            stop.set()
            for sub_id in list(sub_ids):
                cancel.request_cancel(sub_id)
            for thread in threads:
                thread.join(timeout=5.0)
            for sub_id in list(sub_ids):
                cancel.clear(sub_id)

    def _stream_llm(self, prompt, params, sub_id, stop):
        with ModelStream(stall_timeout_s=self.stall_timeout_s) as stream:
            inputs = {
                c.TEXT_INPUT: np.array([prompt.encode("utf-8")], dtype=np.object_),
                c.STREAM: np.array([True]),
                c.SAMPLING_PARAMETERS: np.array([params.to_json().encode("utf-8")], dtype=np.object_),
                c.EXCLUDE_INPUT_IN_OUTPUT: np.array([True]),
            }
            for outputs in stream.call(c.LLM.name, inputs, [c.TEXT_OUTPUT], sub_id, stop):
                for item in outputs[c.TEXT_OUTPUT].reshape(-1):
                    yield item.decode("utf-8", errors="replace")

    def _stream_tts(self, stream, clause, sub_id, stop):
        inputs = {c.TEXT: np.array([clause.encode("utf-8")], dtype=np.object_)}
        for outputs in stream.call(c.TTS.name, inputs, [c.AUDIO, c.SAMPLE_RATE], sub_id, stop):
            if c.AUDIO in outputs and c.SAMPLE_RATE in outputs:
                yield outputs[c.AUDIO].astype(np.int16, copy=False), int(outputs[c.SAMPLE_RATE].reshape(-1)[0])

    def finalize(self):
        self.workers.join()
