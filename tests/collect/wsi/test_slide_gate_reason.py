"""The slide gate's refusal names the place an identifier survived (the TIFF page, its role, the tag
and the vendor property's key), never the value; it said ``near byte N`` (outside review)."""

from __future__ import annotations

from pathlib import Path

import pytest

from curata.collect.wsi._tiff import TiffEditor
from curata.collect.wsi.deid import _gate
from curata.errors import DeidError

NAME = "Okonkwo"


def _planted(shared_wsi: Path) -> tuple[bytes, list[tuple[int, int]]]:
    raw = bytearray((shared_wsi / "small.svs").read_bytes())
    ed = TiffEditor(bytes(raw))
    e = ed.ifds[0].get(270)
    assert e is not None and not e.inline
    plant = f"|Patient = {NAME}".encode()
    end = e.value_pos + e.size - 1  # before the NUL
    raw[end - len(plant) : end] = plant
    kept = sorted(r for ifd in ed.ifds + ed.sub_ifds for r in ed.data_ranges(ifd))
    return bytes(raw), kept


def test_gate_names_page_tag_and_property(shared_wsi: Path) -> None:
    out, kept = _planted(shared_wsi)
    with pytest.raises(DeidError, match="final gate") as exc:
        _gate(out, kept, {NAME}, [])
    reason = str(exc.value)
    assert "TIFF page 0 (level)" in reason
    assert "ImageDescription (270)" in reason and "property 'Patient'" in reason
    assert NAME.lower() not in reason.lower() and "near byte" not in reason


def test_identity_gate_names_the_place(shared_wsi: Path) -> None:
    from curata.collect.deid.text import Identifiers

    out, kept = _planted(shared_wsi)
    ids = Identifiers()
    ids.add_word(NAME, min_len=2)
    with pytest.raises(DeidError, match="patient identity") as exc:
        _gate(out, kept, set(), [], ids=ids)
    reason = str(exc.value)
    assert "TIFF page 0 (level), tag ImageDescription (270)" in reason
    assert NAME.lower() not in reason.lower() and "near byte" not in reason
