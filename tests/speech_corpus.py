"""Sentences spoken by espeak-ng (en-us, 130 words/min) for the STT tests."""

QUESTIONS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please turn off the water before you open the valve.",
    "The train to London leaves at nine in the morning.",
    "What is the capital of France and why is it famous?",
    "How do I reset the router to its factory settings?",
    "Which document explains how to install the package?",
]
