"""Refresh the vendored copy of ``curata/rfc6962.py`` inside ``curata/ledger/verify_standalone.py``.

The standalone verifier ships inside every export and must not import Curata, so it carries the
hashing code verbatim between VENDOR-START / VENDOR-END markers; tests/ledger/test_vendored.py checks
the copy. Run: ``python scripts/vendor_rfc6962.py``.
"""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "curata"
START, END = "# ---- VENDOR-START", "# ---- VENDOR-END"


def shared_block(text: str) -> str:
    """Everything from the VENDOR-START line to the end of rfc6962.py."""
    return text[text.index(START) :].rstrip() + "\n"


def vendored_block(text: str) -> str:
    """The copy in verify_standalone.py, from its VENDOR-START line up to its VENDOR-END line."""
    return text[text.index(START) : text.index(END)].rstrip() + "\n"


def main() -> None:
    target = SRC / "ledger" / "verify_standalone.py"
    text = target.read_text()
    block = shared_block((SRC / "rfc6962.py").read_text())
    start, end = text.index(START), text.index(END)
    target.write_text(text[:start] + block + "\n\n" + text[end:])


if __name__ == "__main__":
    main()
