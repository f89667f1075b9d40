"""Voice assistant over your documents, served by NVIDIA Triton.

Importable code lives here, never in a package named ``triton``: CUDA builds of torch
and vLLM import the GPU kernel compiler of that name (RUNTIME.md §4).
"""
