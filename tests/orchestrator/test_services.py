"""What TritonServices tells Whisper the questions are about: the library's titles."""

import asyncio

import numpy as np

from orchestrator import services as services_module
from orchestrator.services import LIBRARY_PROMPT_TTL_S, TritonServices, library_prompt
from rag_index.store import DocumentInfo
from voicebot import contract as c


def test_library_prompt_reads_titles_and_file_stems_as_words():
    prompt = library_prompt(["Lumen desk lamp: owner's manual", "apache-license-2.0", "office_network"])
    assert prompt == "Questions about Lumen desk lamp: owner's manual, apache license 2.0, office network."


def test_library_prompt_is_empty_for_an_empty_library_and_skips_blank_and_repeated_titles():
    assert library_prompt([]) == ""
    assert library_prompt(["  ", ""]) == ""
    assert library_prompt(["Notes", "  Notes ", ""]) == "Questions about Notes."


def test_library_prompt_stays_within_its_budget_and_leaves_titles_out_whole():
    titles = [f"Document number {n} about printers" for n in range(100)]
    prompt = library_prompt(titles, max_chars=200)
    assert len(prompt) <= 200
    assert prompt.startswith("Questions about Document number 0 about printers, Document number 1")
    assert prompt.endswith("about printers.")  # the last title that fits is whole
    assert library_prompt(["x" * 300], max_chars=200) == ""


class FakeIndex:
    def __init__(self, titles):
        self.infos = [DocumentInfo(f"d{n}", t, t, 1, 10, created=float(n)) for n, t in enumerate(titles)]
        self.reads = 0
        self.fail = False

    def documents(self):
        self.reads += 1
        if self.fail:
            raise RuntimeError("store is down")
        return list(self.infos)


def _services(index, **kwargs):
    async def make():
        return TritonServices("127.0.0.1:1", index, **kwargs)

    return asyncio.run(make())


def test_recognition_prompt_lists_the_newest_documents_first_and_is_read_again_after_its_ttl(monkeypatch):
    index = FakeIndex(["Old guide", "New manual"])
    services = _services(index)
    clock = [1000.0]
    monkeypatch.setattr(services_module.time, "monotonic", lambda: clock[0])
    assert asyncio.run(services.recognition_prompt()) == "Questions about New manual, Old guide."
    index.infos.append(DocumentInfo("d9", "Newest notes", "n", 1, 1, created=9.0))
    clock[0] += LIBRARY_PROMPT_TTL_S / 2
    assert asyncio.run(services.recognition_prompt()) == "Questions about New manual, Old guide."
    assert index.reads == 1
    clock[0] += LIBRARY_PROMPT_TTL_S
    assert asyncio.run(services.recognition_prompt()).startswith("Questions about Newest notes, New manual")
    index.infos.pop()  # deleted here: read again at once
    services.library_changed()
    assert asyncio.run(services.recognition_prompt()) == "Questions about New manual, Old guide."
    assert index.reads == 3


def test_recognition_prompt_is_empty_when_the_store_fails_or_the_setting_is_off():
    index = FakeIndex(["Manual"])
    index.fail = True
    assert asyncio.run(_services(index).recognition_prompt()) == ""
    index.fail = False
    assert asyncio.run(_services(index, prompt_with_titles=False).recognition_prompt()) == ""
    assert index.reads == 1  # off: the store is not even read


def test_pcm_transcription_sends_the_prompt_and_an_empty_library_sends_none(monkeypatch):
    sent = []

    class Result:
        def as_numpy(self, name):
            return np.array([b" heard "], dtype=np.object_)

    async def fake_infer(client, model, values, outputs, request_id, timeout):
        sent.append((model, dict(values)))
        return Result()

    monkeypatch.setattr(services_module.wire, "infer", fake_infer)
    pcm = np.zeros(1600, "<i2").tobytes()
    assert asyncio.run(_services(FakeIndex(["Lamp manual"])).transcribe(pcm, "pcm_s16le", "r1")) == "heard"
    assert asyncio.run(_services(FakeIndex([])).transcribe(pcm, "pcm_s16le", "r2")) == "heard"
    (model, with_titles), (_, without) = sent
    assert model is c.WHISPER_STT
    assert with_titles[c.PROMPT] == "Questions about Lamp manual." and c.PROMPT not in without
