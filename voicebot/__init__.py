"""Voice assistant over your documents, served by NVIDIA Triton.

Importable code lives here, never in a package named ``triton``: CUDA builds of torch
and vLLM import the GPU kernel compiler of that name (RUNTIME.md §4).
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _drop_project_root_from_sys_path() -> None:
    # `python -m rag_index` from the checkout puts its root on sys.path, where the
    # top-level triton/ folder (launcher and configs, no __init__.py) passes for a
    # namespace package called `triton`; torch then takes it for the GPU compiler and
    # fails on import. The project's packages are installed (editable), so the root
    # is not needed on the path.
    if not os.path.isdir(os.path.join(_ROOT, "triton")) or os.path.exists(os.path.join(_ROOT, "triton", "__init__.py")):
        return
    for entry in list(sys.path):
        if os.path.abspath(entry or os.curdir) == _ROOT:
            sys.path.remove(entry)


_drop_project_root_from_sys_path()
