"""Sentences spoken by espeak-ng (en-us, 130 words/min) for the STT tests."""

QUESTIONS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please turn off the water before you open the valve.",
    "The train to London leaves at nine in the morning.",
    "What is the capital of France and why is it famous?",
    "How do I reset the router to its factory settings?",
    "Which document explains how to install the package?",
]

# A name Whisper tiny.en has never heard: without context espeak's en-gb (135 words/min) "Gannet"
# comes out as "gunnet"; with the library's titles as its prompt it is heard right.
GANNET_QUESTION = "Which group owns the Gannet printer?"
GANNET_PROMPT = "Questions about the Gannet printer, office network."
