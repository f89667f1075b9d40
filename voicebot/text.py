"""Text logic shared by the models and the orchestrator: clauses and grounded prompts."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .contract import HISTORY, PASSAGES
from .jsonsafe import JsonInputError, loads
from .sampling import SamplingParams

# Short words that end in a period without ending a sentence.
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "mr", "mrs", "ms", "dr", "st", "vs", "no", "fig", "approx"})
_SENTENCE_END = ".!?"
_SOFT_BREAK = ",;:"
MIN_SOFT_CLAUSE_WORDS = 4
# A run-on answer without punctuation would otherwise hold back all speech until it ends.
MAX_CLAUSE_WORDS = 24
FIRST_CLAUSE_WORDS = 8


class ClauseSplitter:
    """Cuts a stream of text deltas into speakable clauses as early as it safely can.

    A clause ends at a sentence end (``.!?`` followed by whitespace, not an
    abbreviation or a decimal point), at a newline, or at ``,;:`` once it holds at
    least ``min_words`` words, or, failing all of those, before a word that would make it
    longer than ``max_words``. TTS gets the first clause long before the answer ends.
    """

    def __init__(
        self,
        min_words: int = MIN_SOFT_CLAUSE_WORDS,
        max_words: int = MAX_CLAUSE_WORDS,
        first_max_words: int | None = None,
    ) -> None:
        self._buffer = ""
        self._min_words = min_words
        self._max_words = max_words
        # A shorter first clause gets speech started sooner; later clauses keep natural length.
        self._first_max_words = first_max_words or max_words
        self._emitted = False

    def feed(self, delta: str) -> list[str]:
        """Add a delta; return the clauses it completed (possibly none)."""
        self._buffer += delta
        clauses: list[str] = []
        while (cut := self._find_cut()) is not None:
            clause, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if clause:
                clauses.append(clause)
                self._emitted = True
        return clauses

    def flush(self) -> list[str]:
        """The remaining text as a final clause, if any."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _find_cut(self) -> int | None:
        text = self._buffer
        limit = self._max_words if self._emitted else self._first_max_words
        words = 0
        # A boundary needs the character after it, so the last one is never a cut yet.
        for i in range(len(text) - 1):
            if text[i].isspace() and not text[i + 1].isspace():
                words += 1
                if words >= limit and text[:i].strip():
                    return i + 1
            ch, nxt = text[i], text[i + 1]
            if ch == "\n":
                return i + 1
            if not nxt.isspace():
                continue
            if ch in _SENTENCE_END and not self._is_abbreviation(text[: i + 1]):
                return i + 1
            if ch in _SOFT_BREAK and len(text[:i].split()) >= self._min_words:
                return i + 1
        return None

    @staticmethod
    def _is_abbreviation(upto_period: str) -> bool:
        if not upto_period.endswith("."):
            return False
        words = upto_period[:-1].split()
        return bool(words) and words[-1].lower().strip("(\"'") in _ABBREVIATIONS


def split_clauses(text: str, min_words: int = MIN_SOFT_CLAUSE_WORDS) -> list[str]:
    """Split complete text into clauses, the same way a stream would be split."""
    splitter = ClauseSplitter(min_words)
    return splitter.feed(text) + splitter.flush()


@dataclass(frozen=True)
class Passage:
    """A retrieved passage as ``voice_answer`` receives it (the prompt numbers passages in order)."""

    title: str
    text: str


MAX_PASSAGES = 8
MAX_PASSAGE_CHARS = 4000
MAX_QUESTION_CHARS = 2000
MAX_HISTORY = 4
MAX_PASSAGES_JSON_BYTES = 8 * MAX_PASSAGE_CHARS * 6 + 4096  # every character escaped as \uXXXX
MAX_HISTORY_JSON_BYTES = 16 * MAX_QUESTION_CHARS * 6


class PromptInputError(ValueError):
    """Malformed question, passages or history; the message is safe to show a client."""


def parse_passages(raw: str | bytes) -> list[Passage]:
    """Parse the ``passages`` JSON list of ``{id, title, text}``."""
    try:
        items = loads(raw, PASSAGES, MAX_PASSAGES_JSON_BYTES, max_depth=3)
    except JsonInputError as exc:
        raise PromptInputError(str(exc)) from None
    if not isinstance(items, list):
        raise PromptInputError("passages must be a JSON list of {id, title, text}")
    if len(items) > MAX_PASSAGES:
        raise PromptInputError(f"at most {MAX_PASSAGES} passages, got {len(items)}")
    passages = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise PromptInputError(f"passages[{n}] must be an object with a string 'text'")
        text = item["text"].strip()
        if len(text) > MAX_PASSAGE_CHARS:
            raise PromptInputError(f"passages[{n}].text is over {MAX_PASSAGE_CHARS} characters")
        ident, title = item.get("id", n + 1), item.get("title", "")
        if not isinstance(ident, str | int) or not isinstance(title, str):
            raise PromptInputError(f"passages[{n}]: id must be a string or integer and title a string")
        passages.append(Passage(title=title.strip()[:300], text=text))
    return passages


def parse_history(raw: str | bytes | None) -> list[str]:
    """Parse the optional ``history`` JSON list of earlier questions (oldest first)."""
    if raw is None or not raw.strip():
        return []
    try:
        items = loads(raw, HISTORY, MAX_HISTORY_JSON_BYTES, max_depth=2)
    except JsonInputError as exc:
        raise PromptInputError(str(exc)) from None
    if not isinstance(items, list) or not all(isinstance(q, str) for q in items):
        raise PromptInputError("history must be a JSON list of strings")
    return [q.strip()[:MAX_QUESTION_CHARS] for q in items[-MAX_HISTORY:] if q.strip()]


# What every format says when the passages do not hold the answer; the eval counts it as an abstention.
NO_ANSWER = "I could not find that in your documents."


def _question_text(question: str) -> str:
    question = " ".join(question.split())
    if not question:
        raise PromptInputError("question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise PromptInputError(f"question is over {MAX_QUESTION_CHARS} characters")
    return question


def _passage_lines(passages: Iterable[Passage]) -> list[str]:
    lines = []
    for n, p in enumerate(passages, start=1):
        body = " ".join(p.text.split())
        lines.append(f"[{n}] {p.title}: {body}\n" if p.title else f"[{n}] {body}\n")
    return lines or ["(none)\n"]


# Every format puts what never changes first and the question last, so an engine can keep
# the KV cache of everything before the question.
# The base (not instruction-tuned) Gemma follows worked examples far better than an
# instruction (docs/runtime-notes.md), hence the examples and a newline stop.
ONESHOT_PREFIX = (
    "Answer each question in one short sentence, using only the numbered passages.\n\n"
    "Passages:\n"
    "[1] Tides: Tides are caused mainly by the gravity of the Moon pulling on the oceans.\n"
    "[2] Coffee: Coffee beans are the roasted seeds of the coffee plant.\n"
    "Question: What causes the tides?\n"
    "Answer: Tides are caused mainly by the Moon's gravity [1].\n"
    "Question: Who invented the telescope?\n"
    f"Answer: {NO_ANSWER}\n\n"
)


def _oneshot(question: str, passages: Iterable[Passage], history: Iterable[str]) -> str:
    lines = [ONESHOT_PREFIX, "Passages:\n", *_passage_lines(passages)]
    for earlier in history:
        lines.append(f"Earlier question: {earlier}\n")
    lines.append(f"Question: {_question_text(question)}\nAnswer:")
    return "".join(lines)


CHATML_SYSTEM = (
    "You are a voice assistant that answers questions from the user's own documents. "
    "The question comes from speech recognition and may have misheard words: read it for what was meant. "
    "Use only the numbered passages the user gives you, never your own knowledge. "
    "If a passage states the answer, give it in one or two short spoken sentences: plain words, no lists, "
    "no markdown, no code, exact numbers, names and settings as the passages write them. "
    f'If no passage states the answer, do not guess: reply exactly "{NO_ANSWER}"'
)


def _chatml(question: str, passages: Iterable[Passage], history: Iterable[str]) -> str:
    # ChatML, as the Qwen2.5 GGUFs' own chat template renders a system and a user turn
    # followed by the assistant's open turn (tests/unit/test_prompts.py compares the two).
    user = ["Passages:\n", *_passage_lines(passages)]
    earlier = list(history)
    if earlier:
        user.append("\nEarlier questions in this conversation:\n")
        user.extend(f"- {q}\n" for q in earlier)
    user.append(f"\nQuestion: {_question_text(question)}")
    return (
        f"<|im_start|>system\n{CHATML_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{''.join(user)}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


_QUESTION_MARK = "VOICEBOTQUESTIONGOESHERE"


@dataclass(frozen=True)
class PromptFormat:
    """How one family of models is prompted, and the sampling its answers need."""

    name: str
    render: Callable[[str, Iterable[Passage], Iterable[str]], str]
    defaults: SamplingParams

    def prefix(self, passages: Iterable[Passage], history: Iterable[str]) -> str:
        """The prompt up to its question: what a speculative prefill puts in the KV cache. It
        ends before the space that starts the question, so the question's first word is
        tokenized the same as in the whole prompt."""
        prompt = self.render(_QUESTION_MARK, passages, history)
        cut = prompt.index(_QUESTION_MARK)
        return prompt[: cut - 1] if prompt[cut - 1 : cut] == " " else prompt[:cut]


PROMPT_FORMATS: dict[str, PromptFormat] = {
    # A mild repetition penalty stops the small model's digit and phrase loops ("1000000...").
    "oneshot": PromptFormat(
        "oneshot",
        _oneshot,
        SamplingParams(temperature=0.0, max_tokens=80, stop=("\n", "Question:"), repetition_penalty=1.1),
    ),
    "chatml": PromptFormat(
        "chatml",
        _chatml,
        SamplingParams(temperature=0.0, max_tokens=96, stop=("<|im_end|>", "<|endoftext|>", "\n\n")),
    ),
}
DEFAULT_PROMPT_FORMAT = "oneshot"
ANSWER_DEFAULTS = PROMPT_FORMATS[DEFAULT_PROMPT_FORMAT].defaults


def build_prompt(
    question: str, passages: Iterable[Passage], history: Iterable[str] = (), prompt_format: str = DEFAULT_PROMPT_FORMAT
) -> str:
    """The grounded prompt in the model's format: instructions, passages, earlier questions, question."""
    return PROMPT_FORMATS[prompt_format].render(question, passages, history)


# A sentence ends at .!? before whitespace, or at a line break (PDF and list text has no periods).
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
_STOPWORD_TEXT = (
    "a an the of to in on for and or is are was were be by with as at it this that what which who how when why "
    "do does did can i you my your from about"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def match_key(word: str) -> str:
    """A crude stem for matching a question's words in a passage: no plural s, at most six
    letters ("printers"/"printer", "installed"/"install", "configures"/"configuration")."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[:6]


def _keys(text: str) -> list[str]:
    return [match_key(w) for w in iter_words(text)]


def _question_keys(question: str) -> set[str]:
    return {match_key(w) for w in iter_words(question) if w not in STOPWORDS}


def question_words_in(question: str, text: str) -> set[str]:
    """The question's words (stemmed as :func:`trim_passage` matches them) that ``text`` holds."""
    return _question_keys(question).intersection(_keys(text))


def trim_passage(question: str, text: str, max_words: int) -> str:
    """The sentences of ``text`` that share the most words with the question, in their
    original order, within ``max_words``. Prompt tokens are most of the time to first token
    on a CPU, and most of a 200-word chunk does not bear on the question. A sentence longer
    than the whole budget gives the window of it that holds the most of the question's words."""
    if max_words <= 0 or len(text.split()) <= max_words:
        return text
    wanted = _question_keys(question)
    sentences = [" ".join(s.split()) for s in _SENTENCE_SPLIT.split(text) if s.strip()]
    overlap = [len(wanted & set(_keys(s))) for s in sentences]
    ranked = sorted(range(len(sentences)), key=lambda i: (-overlap[i], i))
    keep: set[int] = set()
    budget = max_words
    for i in ranked:
        size = len(sentences[i].split())
        if size <= budget:
            keep.add(i)
            budget -= size
        if budget < 5:
            break
    best = ranked[0]
    if best not in keep:  # the best sentence alone is over the budget: its best window
        return _best_window(sentences[best].split(), wanted, max_words)
    return " ".join(sentences[i] for i in sorted(keep))


def _best_window(words: list[str], wanted: set[str], size: int) -> str:
    """The ``size`` words holding the most of ``wanted``; among equals, the one that starts a
    quarter of its length before the first of them (an answer mostly follows the words a
    question shares with it)."""
    hits = [i for i, w in enumerate(words) if wanted.intersection(_keys(w))]
    if not hits:
        return " ".join(words[:size])
    best: tuple[int, int] | None = None
    start = 0
    for first in hits:
        begin = max(0, min(first - size // 4, len(words) - size))
        inside = sum(1 for h in hits if begin <= h < begin + size)
        key = (inside, -abs(first - begin - size // 4))
        if best is None or key > best:
            best, start = key, begin
    return " ".join(words[start : start + size])


def iter_words(text: str) -> Iterator[str]:
    """Lower-case words without punctuation, for word error rate and matching."""
    yield from re.findall(r"[a-z0-9']+", text.lower())


def word_edits(reference: str, hypothesis: str) -> tuple[int, int]:
    """Word-level Levenshtein distance and the reference's length in words."""
    ref, hyp = list(iter_words(reference)), list(iter_words(hypothesis))
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1], len(ref)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edits over the reference length (0.0 is perfect)."""
    edits, words = word_edits(reference, hypothesis)
    if not words:
        return 0.0 if not list(iter_words(hypothesis)) else 1.0
    return edits / words


# Grounding: an answer may only state numbers, names and identifiers that its passages (or the
# question itself) contain. Small models invent them for questions no document answers — a
# city, a port number, a password — and a spoken answer cannot be taken back, so every clause
# is checked before anyone sees or hears it (voicebot/pipeline.py).
_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d{3})")
_EDGE_PUNCT = "\"'`“”‘’()[]{}<>,;:.!?*"
_INNER_PUNCT = frozenset("/_.@-*~$=+#")
# Capitalised words an answer may use without a passage naming them.
_FREE_WORDS = STOPWORDS | {"yes", "no", "not", "it's", "i'm", "there", "they", "we", "he", "she", "if", "so"}


def _norm_digits(text: str) -> str:
    return _DIGIT_COMMA.sub("", text.lower())


def answer_facts(clause: str) -> list[str]:
    """The words of an answer's clause that state a checkable fact: a number, a name (a
    capital past the start of a sentence), or an identifier (``/usr/lib``, ``ssh-agent``).
    A sentence's first word counts only when it is a number or an identifier."""
    facts = []
    sentence_start = True
    for raw in _CITATION.sub(" ", clause).split():
        word = raw.strip(_EDGE_PUNCT)
        if word.lower().endswith(("'s", "’s")):
            word = word[:-2]
        starts_sentence, sentence_start = sentence_start, raw.rstrip("\"')]").endswith((".", "!", "?"))
        if not word:
            continue
        has_digit = any(ch.isdigit() for ch in word)
        identifier = any(ch in _INNER_PUNCT for ch in word[1:-1]) and any(ch.isalnum() for ch in word)
        named = word[0].isupper() and not starts_sentence and word.lower() not in _FREE_WORDS
        if has_digit or identifier or named:
            facts.append(word)
    return facts


class GroundingCheck:
    """Which of a clause's facts appear nowhere in the passages, their titles or the question.

    Matching is lenient on purpose (case, thousands separators, a plural s, a number inside a
    word such as ``python3``): the check exists to stop invented facts, and a false alarm turns
    a right answer into "I could not find that"."""

    def __init__(self, question: str, passages: Iterable[Passage]) -> None:
        parts = [question]
        for p in passages:
            parts += [p.title, p.text]
        self._source = _norm_digits(" ".join(parts))
        numbers = _NUMBER.findall(self._source)
        self._numbers = set(numbers) | {n.split(".")[0] for n in numbers}  # "3.5" also holds "3"
        self._words = set(re.findall(r"[a-z0-9]+", self._source))
        self._keys = {match_key(w) for w in self._words}

    def _grounded(self, fact: str) -> bool:
        norm = _norm_digits(fact)
        if any(ch.isdigit() for ch in norm) and not all(n in self._numbers for n in _NUMBER.findall(norm)):
            return False
        if norm in self._source:
            return True
        # An identifier or name spelled a little differently ("/usr/lib/python3/" or
        # "Printers"): every word of it must still be in the sources.
        words = re.findall(r"[a-z0-9]+", norm)
        return bool(words) and all(w in self._words or match_key(w) in self._keys for w in words)

    def ungrounded(self, clause: str) -> list[str]:
        return [fact for fact in answer_facts(clause) if not self._grounded(fact)]
