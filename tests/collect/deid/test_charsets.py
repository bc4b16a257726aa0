"""Names in the character sets of Japan, Taiwan, the Arab world and Israel, written otherwise elsewhere.

- The same letters in another form: kana in the other script or width (the header's phonetic group
  has やまだ or ﾔﾏﾓﾄ, a report ヤマダ or やまもと), Arabic with harakat or tatweel (مُحَمَّد, محـمد for
  محمد), Hebrew with niqqud (כֹּהֵן for כהן). Before ``_readings.fold`` all of them survived.
- A CJK name sent in Shift-JIS or Big5 with no character set declared: read as Latin-1, its second
  bytes 5C and 5E split it into pieces too short to match (許 is B3 5C, ソ 83 5C), and the whole engine
  read PatientName only after converting it. Before ``_readings.legacy_readings`` it survived in every
  kept text element.

Planted in every text element of every pydicom-data object (``planting.plant_everywhere``).
"""

from __future__ import annotations

import io
import unicodedata
import warnings

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from curata.collect.deid import Deidentifier, load_profile
from curata.collect.deid.text import Identifiers, clean_text
from curata.errors import CurataError

from .conftest import KEY
from .planting import TEXT_VRS, corpus_files, plant_everywhere
from .test_other_spellings import OtherSpellings, planted_in_the_corpus

FOLDED = [
    OtherSpellings("やまだ", "たろう", "JP440121", "ACJ10231", "19560310", charset="ISO 2022 IR 6\\ISO 2022 IR 87",
                   other=("ヤマダ", "ヤマダ タロウ", "ヤマダタロウ")),
    OtherSpellings("ﾔﾏﾓﾄ", "ﾊﾅｺ", "JP550932", "ACJ20912", "19610722", charset="ISO_IR 192",
                   other=("ヤマモト", "やまもと はなこ", "ヤマモトハナコ")),
    OtherSpellings("محمد", "عبدالله", "SA120934", "ACS33012", "19700214", charset="ISO_IR 192",
                   other=("مُحَمَّد", "محـــمد", "عَبْدُالله")),
    OtherSpellings("כהן", "דוד", "IL330912", "ACI41201", "19651123", charset="ISO_IR 192",
                   other=("כֹּהֵן", "דָּוִד", "כֹּהֵן דָּוִד")),
    OtherSpellings("홍", "길동", "KR220931", "ACK31022", "19580403", charset="ISO_IR 192",
                   other=(unicodedata.normalize("NFD", "홍길동"), unicodedata.normalize("NFD", "길동 님"))),
]  # fmt: skip


@pytest.mark.parametrize("profile", ["research", "basic"])
def test_kana_in_the_other_script_or_width_and_marks_never_survive(profile: str) -> None:
    assert planted_in_the_corpus(profile, FOLDED) == []


@pytest.mark.parametrize(
    ("name", "text", "cleaned"),
    [
        ("やまだ^たろう", "患者ヤマダの経過", "患者*の経過"),  # only the name goes, not the CJK run
        ("ﾔﾏﾀﾞ^ﾀﾛｳ", "やまだ様 CT", "*様 CT"),
        ("ヤマダ^タロウ", "ﾔﾏﾀﾞ ﾀﾛｳ 様", "* 様"),
        ("محمد^علي", "المريض مُحَمَّد للمتابعة", "المريض * للمتابعة"),
        ("محمد^علي", "المريض محـــمد", "المريض *"),
        ("כהן^דוד", "המטופל כֹּהֵן לביקורת", "המטופל * לביקורת"),
        # decomposed (NFD), as macOS writes: Hangul jamo, a voiced kana, Vietnamese and Greek marks
        (
            "홍^길동",
            unicodedata.normalize("NFD", "환자 홍길동 검사"),
            unicodedata.normalize("NFD", "환자 * 검사"),
        ),
        ("ヤマダ^ジロウ", unicodedata.normalize("NFD", "ジロウ様"), "*様"),
        (
            "Nguyễn^Văn",
            unicodedata.normalize("NFD", "bn Nguyễn đến"),
            unicodedata.normalize("NFD", "bn * đến"),
        ),
        (
            "Παπαδόπουλος^Γιώργος",
            unicodedata.normalize("NFD", "ασθενής Παπαδόπουλος"),
            unicodedata.normalize("NFD", "ασθενής *"),
        ),
        ("P0012345", "ＩＤ：Ｐ００１２３４５", "ＩＤ：*"),  # an ID at full width
        # Arabic-script letters written one for the other: ta marbuta and ha, alif maqsura and ya,
        # hamza on alif or not, Persian ya and kaf and the Arabic ones (header one way, text the other)
        ("فاطمة^الزهراء", "المريضة فاطمه للمتابعة", "المريضة * للمتابعة"),
        ("فاطمه^الزهراء", "المريضة فاطمة للمتابعة", "المريضة * للمتابعة"),
        ("مصطفى^أحمد", "المريض مصطفي احمد", "المريض *"),
        ("علی^کریمی", "بیمار علي كريمي", "بیمار *"),
    ],
)
def test_a_folded_match_removes_the_name_as_written(name: str, text: str, cleaned: str) -> None:
    ids = Identifiers()
    ids.add_name(name)
    ids.add_strong(name)
    assert clean_text(text, ids, generic=False) == cleaned


@pytest.mark.parametrize(
    "text",
    ["ヤマモト", "やまもと", "محمود", "כהנא ", "タロ", "Yamada", "فاطمي", "مصطفاه"],
)
def test_folding_finds_no_other_name(text: str) -> None:
    ids = Identifiers()
    for name in ("やまだ^たろう", "محمد^علي", "כהן^דוד", "فاطمة^مصطفى"):
        ids.add_name(name)
    assert clean_text(text, ids, generic=False) == text


LEGACY = [
    (OtherSpellings("許", "功蓋", "TW120034", "ACT20011", "19590505", charset="ISO_IR 192",
                    other=("許功蓋", "功蓋", "許功蓋先生", "許")), "big5"),
    (OtherSpellings("能登", "ソラ", "JP330021", "ACJ44012", "19630918", charset="ISO_IR 192",
                    other=("能登ソラ", "能登", "ソラ", "能登様")), "shift_jis"),
]  # fmt: skip


def _recode(ds: Dataset, codec: str) -> None:
    """Every text value at any depth as ``codec`` bytes; no character set declared anywhere."""
    for elem in list(ds):
        if elem.tag == 0x00080005:
            del ds[elem.tag]
        elif elem.VR == "SQ":
            for item in elem.value:
                _recode(item, codec)
        elif elem.VR in TEXT_VRS and elem.VR != "CS" and elem.value not in (None, ""):
            value = elem.value
            text = "\\".join(map(str, value)) if isinstance(value, MultiValue) else str(value)
            data = text.encode(codec, "replace")
            ds[elem.tag] = DataElement(elem.tag, elem.VR, data + b" " * (len(data) % 2))


def _legacy_survivors(output: bytes, forms: tuple[str, ...], codec: str) -> list[str]:
    """Planted forms in any text element of ``output`` read in ``codec``, or in its bytes."""
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(output), force=True)
        for elem in ds.iterall():
            if elem.VR in TEXT_VRS and elem.value:
                value = elem.value
                text = "\\".join(map(str, value)) if isinstance(value, MultiValue) else str(value)
                reading = text.encode("latin-1", "replace").decode(codec, "replace").replace("\\", "")
                found += [f"{f!r} in {elem.keyword or elem.tag}" for f in forms if f in reading]
        pixels = ds.get("PixelData") or b""
    head = output.replace(pixels, b"") if len(pixels) > 256 else output
    found += [f"{f!r} in the bytes" for f in forms if len(f) > 1 and f.encode(codec) in head]
    return found


@pytest.mark.parametrize("profile", ["research", "basic"])
def test_an_undeclared_shift_jis_or_big5_name_never_survives(profile: str) -> None:
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    planted = released = 0
    leaks: list[str] = []
    for i, path in enumerate(corpus_files()):
        patient, codec = LEGACY[i % len(LEGACY)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            planted += plant_everywhere(ds, patient).elements
            _recode(ds, codec)
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
        try:
            res = deid.deidentify_bytes(buf.getvalue())
        except CurataError:
            continue
        released += 1
        name = path.rsplit("/", 1)[-1]
        leaks += [f"{name}: {f}" for f in _legacy_survivors(res.output_bytes, patient.other, codec)]
    assert planted > 1000 and released >= 100, (planted, released)
    assert leaks == []
