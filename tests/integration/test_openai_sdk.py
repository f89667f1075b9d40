"""The OpenAI-compatible endpoints, driven by the stock ``openai`` SDK (pinned, unmodified:
only ``base_url`` and ``api_key`` set) against the real orchestrator and the real Triton."""

import base64
import io

import av
import httpx
import numpy as np
import openai
import pytest
from audio_files import encode
from conftest import TRIGGERS_DOC, USERS_DOC, wav_to_float
from orchestrator_helpers import LiveServer, make_settings
from speech_corpus import GANNET_PROMPT, GANNET_QUESTION

from voicebot.text import word_error_rate

pytestmark = pytest.mark.integration

TOKEN = "openai-sdk-test-token"
QUESTION = "What is the user ID of the root user?"


@pytest.fixture(scope="module")
def server(triton, tmp_path_factory):
    live = LiveServer(make_settings(triton, tmp_path_factory.mktemp("index"), api_token=TOKEN)).start()
    for doc in (USERS_DOC, TRIGGERS_DOC):
        resp = httpx.post(
            f"{live.base}/v1/documents",
            files={"file": (doc.name, doc.read_bytes())},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=300,
        )
        assert resp.status_code == 201, resp.text
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server):
    # max_retries=0: the SDK would retry a 429/5xx, which would hide what the server said.
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=TOKEN, max_retries=0, timeout=180)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Any container PyAV reads, as float32 mono and its rate."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().astype(np.float32).reshape(-1) for f in container.decode(stream)]
        return np.concatenate(frames), stream.rate


def test_models_are_listed_and_a_wrong_token_is_refused(server, client):
    ids = {m.id for m in client.models.list()}
    assert {"voicebot", "voicebot-whisper", "voicebot-piper", "voicebot-embed"} <= ids
    assert client.models.retrieve("whisper-1").id == "voicebot-whisper"
    bad = openai.OpenAI(base_url=f"{server.base}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.models.list()
    assert exc.value.body["type"] == "authentication_error"


def test_transcription_of_espeak_speech(client, speak):
    wav = speak(QUESTION).read_bytes()
    text = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav))
    assert word_error_rate(QUESTION, text.text) <= 0.25, text.text
    verbose = client.audio.transcriptions.create(
        model="voicebot-whisper", file=("q.wav", wav), response_format="verbose_json"
    )
    assert verbose.segments and 0 <= verbose.segments[0].start < verbose.segments[-1].end <= verbose.duration + 0.01
    srt = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav), response_format="srt")
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    vtt = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav), response_format="vtt")
    assert vtt.startswith("WEBVTT")
    plain = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav), response_format="text")
    assert plain.strip() == text.text


def test_transcription_prompt_is_whispers_context(client, speak):
    # A file goes through the `transcribe` ensemble, whose optional `prompt` reaches Whisper.
    wav = speak(GANNET_QUESTION, 135, "en-gb").read_bytes()
    plain = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav))
    prompted = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav), prompt=GANNET_PROMPT)
    assert "gannet" not in plain.text.lower()
    assert word_error_rate(GANNET_QUESTION, prompted.text) == 0, prompted.text


def test_streamed_transcription_of_an_encoded_file(client, speak):
    ogg = encode(wav_to_float(speak(QUESTION)), 16000, "ogg")
    stream = client.audio.transcriptions.create(model="whisper-1", file=("q.ogg", ogg), stream=True)
    events = list(stream)
    assert [e.type for e in events][-1] == "transcript.text.done"
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert deltas.strip() == events[-1].text and word_error_rate(QUESTION, deltas) <= 0.25


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "flac", "pcm"])
def test_speech_in_every_format_round_trips_through_transcription(client, fmt):
    sentence = "The root user has the user ID zero."
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="joe", input=sentence, response_format=fmt
    ) as response:
        data = b"".join(response.iter_bytes())
    if fmt == "pcm":  # raw 16-bit at 24 kHz, as the API defines it
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
        assert 1.0 < samples.size / 24000 < 6.0
        return
    samples, rate = decode(data)
    assert 1.0 < samples.size / rate < 6.0 and np.abs(samples).max() > 0.05
    if fmt in ("mp3", "opus"):  # lossy formats: speech still recognisable
        heard = client.audio.transcriptions.create(model="whisper-1", file=(f"a.{fmt}", data))
        assert word_error_rate(sentence, heard.text) <= 0.3, heard.text


def test_speed_shortens_the_speech(client):
    def seconds(speed: float) -> float:
        data = client.audio.speech.create(
            model="tts-1", voice="joe", input="One two three four five six.", response_format="wav", speed=speed
        ).read()
        samples, rate = decode(data)
        return samples.size / rate

    assert seconds(2.0) < 0.75 * seconds(1.0)


def test_streamed_grounded_chat_answer_with_citations(client):
    stream = client.chat.completions.create(
        model="voicebot",
        messages=[{"role": "user", "content": "What are file triggers in dpkg?"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=48,
    )
    chunks = list(stream)
    first = chunks[0]
    assert first.choices[0].delta.role == "assistant"
    citations = first.model_extra["citations"]
    assert citations and citations[0]["source"] == TRIGGERS_DOC.name
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1 and finishes[0] in ("stop", "length") and chunks[-2].choices[0].finish_reason
    # include_usage: a last chunk with no choices and the llm's own counts.
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens > 100 and 1 <= usage.completion_tokens <= 48  # the passages are in the prompt


def test_chat_follow_up_uses_earlier_questions_and_limits_apply(client):
    reply = client.chat.completions.create(
        model="voicebot",
        messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "What are file triggers in dpkg?"},
            {"role": "assistant", "content": "They run when files change."},
            {"role": "user", "content": "And when are they activated?"},
        ],
        max_completion_tokens=6,
        temperature=0,
    )
    assert reply.object == "chat.completion" and reply.choices[0].message.content
    assert reply.model_extra["citations"][0]["source"] == TRIGGERS_DOC.name
    # The answer ran into max_completion_tokens: OpenAI's "length", and that many tokens.
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 6
    longer = client.chat.completions.create(
        model="voicebot", messages=[{"role": "user", "content": "And when are they activated?"}], max_tokens=40
    )
    # max_completion_tokens reached the LLM: 6 tokens are a few words, 40 are more.
    assert len(reply.choices[0].message.content.split()) <= 6 < len(longer.choices[0].message.content.split())


def test_embeddings_match_in_both_encodings(client):
    floats = client.embeddings.create(model="voicebot-embed", input=["root user", "package triggers"])
    assert [len(d.embedding) for d in floats.data] == [384, 384]
    assert abs(np.linalg.norm(floats.data[0].embedding) - 1) < 1e-3
    # The SDK asks for base64 by default and decodes it itself.
    again = client.embeddings.create(model="text-embedding-3-small", input="root user")
    assert np.allclose(again.data[0].embedding, floats.data[0].embedding, atol=1e-5)


def test_requests_the_pipeline_cannot_honour_get_clear_400s(client, speak):
    messages = [{"role": "user", "content": "hi"}]
    cases = [
        (lambda: client.chat.completions.create(model="voicebot", messages=messages, n=2), "n"),
        (
            lambda: client.chat.completions.create(
                model="voicebot",
                messages=messages,
                tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            ),
            "tools",
        ),
        (lambda: client.chat.completions.create(model="voicebot", messages=[]), "messages"),
        (lambda: client.audio.speech.create(model="tts-1", voice="alloy", input="hello"), "voice"),
        (lambda: client.audio.speech.create(model="tts-1", voice="joe", input="hello", speed=4.0), "speed"),
        (lambda: client.audio.speech.create(model="tts-1", voice="joe", input="   "), "input"),
        (lambda: client.audio.speech.create(model="tts-1", voice="joe", input="x" * 5000), "input"),
        (lambda: client.embeddings.create(model="voicebot-embed", input=[[1, 2, 3]]), "input"),
        (lambda: client.embeddings.create(model="voicebot-embed", input="a", dimensions=64), "dimensions"),
        (lambda: client.audio.transcriptions.create(model="whisper-1", file=("x.wav", b"")), "file"),
        (
            lambda: client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"0"), language="de"),
            "language",
        ),
        (lambda: client.chat.completions.create(model="voicebot-piper", messages=messages), "model"),
        (
            lambda: client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"0"), prompt="x" * 1001),
            "prompt",
        ),
    ]
    for call, param in cases:
        with pytest.raises(openai.BadRequestError) as exc:
            call()
        error = exc.value.body
        assert error["type"] == "invalid_request_error" and error["message"], param
        assert (error["param"] or "").startswith(param), (param, error)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-5", messages=messages)
    assert missing.value.body["code"] == "model_not_found"
    # Not audio at all: Triton's decoder refuses it, the orchestrator says so, and goes on.
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(model="whisper-1", file=("noise.wav", b"RIFF not really audio"))
    assert client.audio.transcriptions.create(model="whisper-1", file=("q.wav", speak(QUESTION).read_bytes())).text


# ---------------------------------------------------------------- Realtime


def pcm24(wav_path) -> bytes:
    """espeak's 16 kHz speech as Realtime's input: PCM16 mono at 24 kHz."""
    from scipy.signal import resample_poly

    samples = resample_poly(wav_to_float(wav_path), 3, 2)
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def append_speech(connection, pcm: bytes, chunk: int = 9600) -> None:
    for offset in range(0, len(pcm), chunk):
        connection.input_audio_buffer.append(audio=base64.b64encode(pcm[offset : offset + chunk]).decode())


def events_until(connection, *kinds: str, limit: int = 5000) -> list:
    seen = []
    for _ in range(limit):
        event = connection.recv()
        seen.append(event)
        if event.type in kinds:
            return seen
    raise AssertionError(f"none of {kinds} in {len(seen)} events")


def test_realtime_answers_a_spoken_question_with_audio_and_its_transcript(client, speak):
    with client.realtime.connect(model="voicebot") as connection:
        created = connection.recv()
        assert created.type == "session.created" and created.session.audio.output.format.rate == 24000
        connection.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
        assert connection.recv().type == "session.updated"
        append_speech(connection, pcm24(speak(QUESTION)))
        connection.input_audio_buffer.commit()
        connection.response.create()
        events = events_until(connection, "response.done", "error")
    kinds = [e.type for e in events]
    assert kinds[-1] == "response.done" and events[-1].response.status == "completed", kinds
    heard = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
    assert word_error_rate(QUESTION, heard.transcript) <= 0.25, heard.transcript
    assert kinds.index("input_audio_buffer.committed") < kinds.index("response.created")
    audio = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta")
    assert len(audio) / 2 / 24000 > 0.5  # at least half a second of 24 kHz speech
    said = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    done = next(e for e in events if e.type == "response.output_audio_transcript.done")
    assert said.strip() and done.transcript == said
    assert events[-1].response.model_extra["citations"][0]["source"] == USERS_DOC.name
    usage = events[-1].response.usage
    assert usage.output_tokens >= 1 and usage.total_tokens == usage.input_tokens + usage.output_tokens


def ask_in_text(connection, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    connection.conversation.item.create(item=item)
    connection.response.create()


def test_realtime_text_item_and_barge_in(client, speak):
    with client.realtime.connect(model="voicebot") as connection:
        connection.recv()
        ask_in_text(connection, "Explain everything about users and groups in Debian.")
        events_until(connection, "response.output_audio_transcript.delta")
        connection.response.cancel()
        cancelled = events_until(connection, "response.done")
        assert cancelled[-1].response.status == "cancelled"
        # A new question by voice after the interruption is answered in full.
        append_speech(connection, pcm24(speak(QUESTION)))
        connection.input_audio_buffer.commit()
        connection.response.create()
        events = events_until(connection, "response.done", "error")
        assert events[-1].type == "response.done" and events[-1].response.status == "completed"
        # Speaking over an answer interrupts it, as the talk button does.
        ask_in_text(connection, "What are file triggers?")
        events_until(connection, "response.output_audio_transcript.delta")
        append_speech(connection, pcm24(speak("Stop.")))
        assert events_until(connection, "response.done")[-1].response.status == "cancelled"


def test_realtime_bad_events_get_error_events_and_the_session_goes_on(client, speak):
    with client.realtime.connect(model="voicebot") as connection:
        connection.recv()
        connection.input_audio_buffer.commit()  # nothing appended
        assert connection.recv().error.code == "input_audio_buffer_commit_empty"
        connection.input_audio_buffer.append(audio="not base64!")
        assert connection.recv().error.param == "audio"
        connection.session.update(
            session={"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad"}}}}
        )
        assert connection.recv().error.code == "unsupported"
        connection.session.update(session={"type": "realtime", "audio": {"output": {"voice": "alloy"}}})
        assert "joe" in connection.recv().error.message
        connection.send({"type": "no.such.event"})
        assert connection.recv().error.code == "unknown_event"
        connection.response.create()  # nothing to answer
        assert connection.recv().error.code == "no_input"
        connection.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is a trigger?"}]}
        )
        events_until(connection, "conversation.item.done")
        connection.response.create(response={"output_modalities": ["text"]})
        events = events_until(connection, "response.done", "error")
        assert events[-1].type == "response.done" and any(e.type == "response.output_text.delta" for e in events)
        assert not any(e.type == "response.output_audio.delta" for e in events)


def test_realtime_refuses_a_wrong_token(server):
    bad = openai.OpenAI(base_url=f"{server.base}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(Exception) as exc, bad.realtime.connect(model="voicebot") as connection:
        connection.recv()
    assert "4401" in str(exc.value) or "token" in str(exc.value)


def test_a_full_server_says_429_with_retry_after(server, client):
    slots = server.server.config.app.state.slots
    used = slots.used
    slots.used = slots.limit  # every conversation slot taken
    try:
        with pytest.raises(openai.RateLimitError) as exc:
            client.chat.completions.create(model="voicebot", messages=[{"role": "user", "content": "hi"}])
        assert exc.value.response.headers["retry-after"] == "5"
        with pytest.raises(openai.RateLimitError):
            client.audio.speech.create(model="tts-1", voice="joe", input="hello")
    finally:
        slots.used = used
    assert client.embeddings.create(model="voicebot-embed", input="hello").data
    metrics = httpx.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'voicebot_openai_requests_total{endpoint="embeddings",outcome="ok"}' in metrics
