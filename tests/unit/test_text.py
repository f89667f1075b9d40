import json

import pytest

from voicebot.text import (
    CHATML_SYSTEM,
    NO_ANSWER,
    ONESHOT_PREFIX,
    PROMPT_FORMATS,
    ClauseSplitter,
    GroundingCheck,
    Passage,
    PromptInputError,
    answer_facts,
    build_prompt,
    parse_history,
    parse_passages,
    split_clauses,
    word_error_rate,
)


def test_sentence_ends_cut_and_keep_punctuation():
    assert split_clauses("Paris is the capital. It has the Eiffel Tower! Why? Because.") == [
        "Paris is the capital.",
        "It has the Eiffel Tower!",
        "Why?",
        "Because.",
    ]


def test_soft_break_needs_four_words():
    assert split_clauses("Yes, it is. In the north of the country, near the sea, it rains.") == [
        "Yes, it is.",
        "In the north of the country,",
        "near the sea, it rains.",
    ]


def test_decimals_and_abbreviations_do_not_cut():
    assert split_clauses("It costs 3.5 euros e.g. at Dr. Smith's shop. Done.") == [
        "It costs 3.5 euros e.g. at Dr. Smith's shop.",
        "Done.",
    ]


def test_streaming_matches_whole_text_for_any_delta_split():
    text = "The tower is 330 metres tall, and it was built in 1889. Visitors climb it daily; many take the lift."
    expected = split_clauses(text)
    for size in (1, 2, 3, 7):
        splitter = ClauseSplitter()
        got = []
        for i in range(0, len(text), size):
            got += splitter.feed(text[i : i + size])
        got += splitter.flush()
        assert got == expected, size


def test_clause_is_emitted_before_the_stream_ends():
    splitter = ClauseSplitter()
    assert splitter.feed("Paris is the capital of France.") == []  # needs the next character
    assert splitter.feed(" It") == ["Paris is the capital of France."]
    assert splitter.flush() == ["It"]


def test_newline_cuts():
    assert split_clauses("one two\nthree") == ["one two", "three"]


def test_prompt_prefix_first_then_passages_history_question():
    passages = [Passage("Manual", "Press  the\nred button."), Passage("", "Second.")]
    prompt = build_prompt("  How do I   start? ", passages, ["What is it?"])
    assert prompt.startswith(ONESHOT_PREFIX)
    tail = prompt[len(ONESHOT_PREFIX) :]
    assert tail == (
        "Passages:\n[1] Manual: Press the red button.\n[2] Second.\n"
        "Earlier question: What is it?\nQuestion: How do I start?\nAnswer:"
    )


def test_prompt_rejects_empty_and_huge_questions():
    with pytest.raises(PromptInputError, match="empty"):
        build_prompt("   ", [])
    with pytest.raises(PromptInputError, match="over"):
        build_prompt("x" * 5000, [])


@pytest.mark.parametrize(
    "raw, message",
    [
        ("not json", "not valid JSON"),
        ('{"id": 1}', "JSON list"),
        ('[{"id": 1}]', "string 'text'"),
        (json.dumps([{"text": "x"}] * 9), "at most"),
        (json.dumps([{"text": "x" * 5000}]), "over"),
    ],
)
def test_bad_passages(raw, message):
    with pytest.raises(PromptInputError, match=message):
        parse_passages(raw)


def test_passages_parse():
    got = parse_passages(json.dumps([{"id": 7, "title": "T", "text": " body "}, {"text": "b"}]))
    assert got == [Passage("T", "body"), Passage("", "b")]


def test_history_is_bounded_and_validated():
    assert parse_history(None) == []
    assert parse_history(json.dumps([f"q{i}" for i in range(10)])) == ["q6", "q7", "q8", "q9"]
    with pytest.raises(PromptInputError):
        parse_history("[1, 2]")


def test_word_error_rate():
    assert word_error_rate("the cat sat", "The cat, sat!") == 0.0
    assert word_error_rate("the cat sat on the mat", "the cat sat on mat") == pytest.approx(1 / 6)
    assert word_error_rate("a b", "x y z") == pytest.approx(3 / 2)


def test_run_on_text_is_cut_at_the_word_limit():
    text = " ".join(f"w{i}" for i in range(60))
    clauses = ClauseSplitter(max_words=24).feed(text + " ")
    assert [len(c.split()) for c in clauses] == [24, 24]


def test_trim_passage_keeps_the_sentences_that_bear_on_the_question():
    from voicebot.text import trim_passage

    text = (
        "The daemon user runs services. Root has user ID zero and owns the system. "
        "The games group plays games. Backups are made by the backup user every night. "
        "Nobody owns nothing at all."
    )
    got = trim_passage("What is the user ID of root?", text, max_words=12)
    assert got == "Root has user ID zero and owns the system."
    assert trim_passage("anything", "short text", max_words=50) == "short text"
    assert trim_passage("anything", text, max_words=0) == text  # 0 turns trimming off
    assert len(trim_passage("root", "word " * 100, max_words=10).split()) == 10


def test_first_clause_can_be_shorter_than_the_rest():
    splitter = ClauseSplitter(max_words=24, first_max_words=8)
    text = " ".join(f"w{i}" for i in range(40)) + " "
    assert [len(c.split()) for c in splitter.feed(text)] == [8, 24]


def test_chatml_prompt_has_system_user_and_an_open_assistant_turn():
    passages = [Passage("Lamp", "Hold the button for 3 s."), Passage("", "Other.")]
    prompt = build_prompt(" How do I  reset it? ", passages, ["What is the lamp?"], "chatml")
    system, user, assistant = prompt.split("<|im_end|>\n")
    assert system == f"<|im_start|>system\n{CHATML_SYSTEM}" and NO_ANSWER in CHATML_SYSTEM
    assert user == (
        "<|im_start|>user\nPassages:\n[1] Lamp: Hold the button for 3 s.\n[2] Other.\n"
        "\nEarlier questions in this conversation:\n- What is the lamp?\n"
        "\nQuestion: How do I reset it?"
    )
    assert assistant == "<|im_start|>assistant\n"


def test_every_format_puts_the_question_last_and_shares_the_prefix():
    # What comes before the question is the same for two questions over the same passages,
    # so an engine's KV cache of it can be reused.
    passages = [Passage("Lamp", "Hold the button for 3 s.")]
    for name in PROMPT_FORMATS:
        a = build_prompt("first question?", passages, [], name)
        b = build_prompt("another one?", passages, [], name)
        shared = a[: a.index("first question?")]
        assert b.startswith(shared), name
        assert build_prompt("q", [], [], name).count("(none)") == 1  # no passages is said, not silent


def test_formats_stop_where_their_models_end_a_turn():
    assert "\n" in PROMPT_FORMATS["oneshot"].defaults.stop
    assert "<|im_end|>" in PROMPT_FORMATS["chatml"].defaults.stop


def test_trim_passage_matches_plurals_and_word_forms():
    from voicebot.text import trim_passage

    text = "The lobby has plants. " * 6 + "Each printer prints double-sided by default. " + "Coffee is free. " * 6
    got = trim_passage("Do the printers print on both sides?", text, max_words=8)
    assert got == "Each printer prints double-sided by default."


def test_trim_passage_splits_lines_and_windows_one_long_sentence():
    from voicebot.text import trim_passage

    # PDF text: lines without periods are sentences of their own
    lines = "\n".join(["Header line of the page with words"] * 5 + ["The default weight value is 50"] + ["more"] * 5)
    assert "default weight value is 50" in trim_passage("What is the default weight?", lines, max_words=10)
    # One sentence longer than the budget: the window with the question's words, not its first words
    long = " ".join(["filler"] * 80 + ["the", "operator", "uid", "was", "37"] + ["filler"] * 80)
    got = trim_passage("What uid did the operator have?", long, max_words=12)
    assert "operator uid was 37" in got and len(got.split()) == 12


GROUNDS = [
    Passage("Lamp manual — Battery", "The lamp has a 4,000 mAh battery and charges over USB-C with a 10 W adapter."),
    Passage("Python policy", "Public modules go in /usr/lib/python3/dist-packages. The python3 package provides it."),
]


@pytest.mark.parametrize(
    ("answer", "facts"),
    [
        ("The capital of Australia is Canberra.", ["Australia", "Canberra"]),
        ("Canberra is the capital.", []),  # a sentence's first word may be any word
        ("Yes, it holds 4000 mAh [1].", ["4000"]),  # citation markers are not facts
        ("Install it in /usr/lib/python3/. Ask the licensor's Help Desk.", ["/usr/lib/python3/", "Help", "Desk"]),
        ("I could not find that in your documents.", []),
    ],
)
def test_answer_facts_are_numbers_names_and_identifiers(answer, facts):
    assert answer_facts(answer) == facts


@pytest.mark.parametrize(
    ("answer", "missing"),
    [
        ("The battery holds 4000 mAh and charges over USB-C [1].", []),  # thousands separator, case
        ("Modules go in /usr/lib/python3/dist-packages/, from Python 3.", []),  # trailing slash, python3
        ("The Batteries are in the Lamp Manual.", []),  # plural and title words
        ("The lamp listens on port 4410.", ["4410"]),
        ("The capital of Australia is Canberra.", ["Canberra"]),  # Australia is the question's own word
        ("It takes 40 W and 10.5 hours.", ["40", "10.5"]),  # 10 alone is not 10.5, 4 in 4,000 is not 40
    ],
)
def test_grounding_check_finds_facts_no_passage_holds(answer, missing):
    check = GroundingCheck("What is the capital of Australia?", GROUNDS)
    assert check.ungrounded(answer) == missing
