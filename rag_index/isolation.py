"""Parse an untrusted document in a child process with bounded time and memory.

The parsers are linear, but a PDF's content streams and a 20 MB upload can still cost
seconds and hundreds of megabytes, and a parser bug must not cost the server. The child
(``python -I -m rag_index.isolation <bytes> <seconds>``) sets its own address-space and
CPU-time limits before it reads anything, gets the file on stdin and answers JSON on stdout;
it is killed at the wall-clock deadline. The caller holds no lock meanwhile.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass

from voicebot.contract import ErrorCode

from .documents import ParsedDocument, Section, UnsupportedDocument, parse_document


@dataclass(frozen=True)
class BoundedParser:
    """``parse_document`` in a child process: at most ``timeout_s`` and ``memory_mb``."""

    timeout_s: float = 60.0
    memory_mb: int = 1024

    def __call__(self, filename: str, data: bytes) -> ParsedDocument:
        header = json.dumps({"filename": filename}).encode("utf-8") + b"\n"
        memory = self.memory_mb * 1024 * 1024
        cpu = max(int(self.timeout_s), 1)
        # -I: no environment variables, user site or working directory on sys.path; and none of
        # the server's environment (its token included) beyond what Python needs to start.
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1"}
        child = subprocess.Popen(
            [sys.executable, "-I", "-m", "rag_index.isolation", str(memory), str(cpu)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            out, err = child.communicate(header + data, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise UnsupportedDocument(
                f"parsing took longer than {self.timeout_s:g} s", ErrorCode.DOCUMENT_TOO_COMPLEX
            ) from None
        return _answer(child.returncode, out, err, self)


def _answer(returncode: int, out: bytes, err: bytes, limits: BoundedParser) -> ParsedDocument:
    try:
        reply = json.loads(out)
    except ValueError:
        reply = None
    if returncode != 0 or not isinstance(reply, dict):
        if b"MemoryError" in err:
            raise UnsupportedDocument(f"parsing needed over {limits.memory_mb} MB", ErrorCode.TOO_LARGE)
        if returncode < 0:  # killed: SIGXCPU or SIGKILL at the CPU limit
            raise UnsupportedDocument(
                f"parsing took longer than {limits.timeout_s:g} s of CPU", ErrorCode.DOCUMENT_TOO_COMPLEX
            )
        raise RuntimeError(f"document parser failed (exit {returncode}): {err.decode(errors='replace')[-500:]}")
    if "error" in reply:
        try:
            code = ErrorCode(reply["error"].get("code", ""))
        except ValueError:
            code = ErrorCode.UNSUPPORTED_DOCUMENT
        raise UnsupportedDocument(str(reply["error"].get("message", "unreadable document")), code)
    return ParsedDocument(
        title=reply["title"], sections=[Section(heading, text) for heading, text in reply["sections"]]
    )


def main() -> int:
    # The limits hold before a byte of the document is read; a child that cannot set them stops.
    memory, cpu = int(sys.argv[1]), int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    header = sys.stdin.buffer.readline()
    data = sys.stdin.buffer.read()
    try:
        filename = json.loads(header)["filename"]
        doc = parse_document(filename, data)
        reply: dict[str, object] = {"title": doc.title, "sections": [[s.heading, s.text] for s in doc.sections]}
    except UnsupportedDocument as exc:
        reply = {"error": {"code": exc.code.value, "message": str(exc)}}
    except MemoryError:
        reply = {"error": {"code": ErrorCode.TOO_LARGE.value, "message": "parsing ran out of memory"}}
    except RecursionError:
        reply = {"error": {"code": ErrorCode.TOO_DEEP.value, "message": "document nested too deeply to parse"}}
    except Exception as exc:  # a parser bug this file found: still this file's problem, not the server's
        message = f"the parser failed on this file ({type(exc).__name__})"
        reply = {"error": {"code": ErrorCode.DOCUMENT_TOO_COMPLEX.value, "message": message}}
    sys.stdout.write(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
