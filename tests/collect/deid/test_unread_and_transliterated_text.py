"""The patient's Latin-script name in free text with letters a decoder could not read (MÜLLER's
Latin-1 bytes read as UTF-8: M\ufffdLLER), or written in Cyrillic or Greek (IVANOV as Иванов,
PAPADOPOULOS as Παπαδόπουλος): removed by ``curata deid``, only the name's word, and the decoded gate
refuses it where cleaning did not run."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from curata.collect.deid.text import Identifiers, clean_text, identity_spans
from tests.conftest import make_ct

CASES = [  # (header name, free text, what cleaning leaves)
    ("MÜLLER^HANS", "Patient M\ufffdLLER seen, follow up", "Patient * seen, follow up"),
    ("MÜLLER^HANS", "Pat. M\ufffd\ufffdLLER, H\ufffdns", "Pat. *, *"),
    ("MUELLER^HANS", "re: m\ufffdller", "re: *"),
    ("IVANOV^IVAN", "Пациент Иванов, контроль", "Пациент *, контроль"),
    ("IVANOV^IVAN", "ИВАНОВ ИВАН", "* *"),
    ("PAPADOPOULOS^GEORGIOS", "Ασθενής Παπαδόπουλος, έλεγχος", "Ασθενής *, έλεγχος"),
    ("PAPADOPOULOS^GEORGIOS", "ΠΑΠΑΔΟΠΟΥΛΟΣ", "*"),
]


def _ids(name: str) -> Identifiers:
    ids = Identifiers()
    ids.add_name(name)
    ids.add_strong(name)
    return ids


@pytest.mark.parametrize(("name", "text", "left"), CASES)
def test_cleaning_removes_only_the_name(name: str, text: str, left: str) -> None:
    assert clean_text(text, _ids(name), generic=False) == left


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("MÜLLER^HANS", "Patient \ufffd\ufffd\ufffd seen"),  # nothing left to read: not a name
        ("MÜLLER^HANS", "M\ufffdLLERSTRASSE clinic"),  # a longer word
        ("MÜLLER^HANS", "K\ufffdLLER"),  # another name
        ("IVANOV^IVAN", "Пациент Петров, контроль"),
        ("PAPADOPOULOS^GEORGIOS", "Ασθενής Παπαδάκης"),
    ],
)
def test_other_words_stay(name: str, text: str) -> None:
    assert clean_text(text, _ids(name), generic=False) == text
    assert identity_spans(_ids(name).matcher(), text) == []


def test_curata_deid_removes_them_from_every_free_text_element(tmp_path: Path) -> None:
    from curata.cli import app
    from curata.collect.keys import generate_key_file

    src = tmp_path / "in"
    for i, (name, text, _left) in enumerate(CASES):
        ds = make_ct(patient_name=name, index=i, seed=i)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageComments = ds.StudyDescription = ds.SeriesDescription = text
        src.mkdir(exist_ok=True)
        ds.save_as(src / f"{i}.dcm", enforce_file_format=True)
    key = tmp_path / "site.key"
    generate_key_file(key)
    out = tmp_path / "out"
    CliRunner().invoke(app, ["deid", str(src), str(out), "--key-file", str(key), "-j", "1", "--json"])
    report = json.loads((out / "deid-report.json").read_text())
    assert report["counts"].get("deidentified") == len(CASES), report
    left = set()
    for f in out.rglob("*.dcm"):
        ds = pydicom.dcmread(f)
        assert ds.ImageComments == ds.StudyDescription == ds.SeriesDescription
        left.add(ds.ImageComments)
    assert left == {c[2] for c in CASES}, left


@pytest.mark.parametrize(
    ("name", "text"),
    [
        # the header's Σ before a separator lowers to σ (a separator is case-ignorable), the text's to ς
        ("aaàς^AAAA", "AAÀΣ^AAAA"),  # the case hypothesis found in test_plant_everywhere
        ("Ζαχαριας^Νικος", "ΖΑΧΑΡΙΑΣ^ΝΙΚΟΣ"),
        ("ΖΑΧΑΡΙΑΣ^ΝΙΚΟΣ", "ο Ζαχαριας ηρθε"),
    ],
)
def test_greek_final_sigma_is_the_same_letter(name: str, text: str) -> None:
    from curata.collect.deid.text import find_identifier

    ids = _ids(name)
    cleaned = clean_text(text, ids, generic=False)
    family = name.split("^")[0]
    assert family.lower().replace("ς", "σ") not in cleaned.lower().replace("ς", "σ"), cleaned
    assert find_identifier(text.encode("utf-8"), ids.gate_needles()) is not None
