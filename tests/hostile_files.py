"""Small hostile files, built here: a PDF whose page inflates to any size, HTML nested to any depth."""

from __future__ import annotations

import zlib


def one_page_pdf(content: bytes) -> bytes:
    """A valid one-page PDF whose page content stream is ``content``, Flate-compressed."""
    stream = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for n, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(
        b"%010d 00000 n \n" % o for o in offsets
    )
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def pdf_bomb(inflated_bytes: int) -> bytes:
    """A page of text followed by ``inflated_bytes`` of spaces: tiny on disk, huge once inflated."""
    return one_page_pdf(b"BT /F1 12 Tf 72 720 Td (bomb) Tj ET\n" + b" " * inflated_bytes)


def html_nested(tag: str, depth: int) -> bytes:
    inner = "<p>Deep inside the nesting the lamp charges in three hours.</p>"
    return f"<html><body>{f'<{tag}>' * depth}{inner}{f'</{tag}>' * depth}</body></html>".encode()
