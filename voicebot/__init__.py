"""Voice assistant over your documents, served by NVIDIA Triton.

Importable code lives here, never in a package named ``triton``: CUDA builds of torch
and vLLM import the GPU kernel compiler of that name (docs/runtime-notes.md). For the same
reason nothing here runs with the project root on ``sys.path``: the console scripts
(``rag-index``, ``voicebot-triton``, ``voicebot-orchestrator``) never put it there, Triton's
stubs run in ``.run/``, and the one code path that loads torch in a CLI says so when the
checkout's ``triton/`` folder would shadow the real package (``rag_index.embedders``).
"""
