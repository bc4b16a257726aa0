"""Free text written in another character set than the one the file declares, found by an outside
reviewer (fourth pass): a report pasted from a Windows, DOS or Unix system into a description, so the
patient's name sits there in cp1251, KOI8-R, cp1250, cp1256, Big5, EUC-JP, ISO-2022-JP or UTF-8 bytes
while the file declares ISO_IR 144, 101, 127, 126, GB18030, IR 87 or UTF-8 (or nothing, and the name
itself in cp1251). The name was released in every profile. Now each such value is read in its other
plausible character sets too (``text.other_readings``) and the byte gate looks for the name in the
bytes of the code pages sites write in: the object is refused, or the name cleaned."""

from __future__ import annotations

import pytest

from curata.collect.deid import Deidentifier, load_profile
from curata.errors import CurataError

from .conftest import ct_small_with_bytes

KEY = b"k" * 32
# (declared character set, PatientName's bytes, the name as the text writes it, the text's codec)
CASES = {
    "iso2022jp-in-utf8": ("ISO_IR 192", "Yamada^Tarou=山田^太郎".encode(), "山田太郎", "iso2022_jp"),
    "eucjp-in-ir87": (
        "\\ISO 2022 IR 87",
        b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B",
        "山田太郎",
        "euc_jp",
    ),
    "big5-in-gb18030": ("GB18030", "Chen^Meiling=陳^美玲".encode("gb18030"), "陳美玲", "big5"),
    "cp1251-in-ir144": ("ISO_IR 144", "ВОРОБЬЁВА^НАТАЛЬЯ".encode("iso8859_5"), "Воробьёва Наталья", "cp1251"),
    "koi8r-in-ir144": ("ISO_IR 144", "ВОРОБЬЁВА^НАТАЛЬЯ".encode("iso8859_5"), "Воробьёва", "koi8_r"),
    "utf8-none-declared": ("", "ВОРОБЬЁВА^НАТАЛЬЯ".encode("cp1251"), "Воробьёва Наталья", "utf-8"),
    "cp1250-in-ir101": ("ISO_IR 101", "ŚWIĄTEK^ŻANETA".encode("iso8859_2"), "Świątek", "cp1250"),
    "cp1256-in-ir127": ("ISO_IR 127", "الشمري^فاطمة".encode("iso8859_6"), "الشمري", "cp1256"),
    "utf8-in-ir126": ("ISO_IR 126", "ΠΑΠΑΔΟΠΟΥΛΟΣ^ΝΙΚΟΣ".encode("iso8859_7"), "Παπαδόπουλος", "utf-8"),
}
ELEMENTS = ((0x0008103E, "LO"), (0x00204000, "LT"), (0x00081090, "LO"), (0x00181020, "LO"))


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
@pytest.mark.parametrize("profile", ["basic", "research", "research-strict"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_name_in_another_character_set_never_survives(case: str, profile: str, whole: bool) -> None:
    charset, name, text, codec = CASES[case]
    written = text.encode(codec)
    core = written[3:-3] if codec == "iso2022_jp" else written  # JIS bytes without their escapes
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    deid.raw_lane = deid.native_lane = not whole
    try:
        out = deid.deidentify_bytes(
            ct_small_with_bytes(
                charset, written, ELEMENTS, patient_id="RV4007731", born="19630417", name=name
            )
        ).output_bytes
    except CurataError:
        return  # refused: nothing released
    assert core not in out


@pytest.mark.parametrize("whole", [False, True], ids=["lanes", "whole-engine"])
def test_text_in_the_declared_character_set_is_still_released(whole: bool) -> None:
    """The other readings add no refusal where nothing identifies: Latin-1 and UTF-8 text as declared."""
    for charset, text in (("ISO_IR 100", "Größe 5 mm, Müller-Klinik".encode("latin-1")),
                          ("ISO_IR 192", "Größe 5 mm, Μέγεθος, Размер".encode()),
                          ("ISO_IR 144", "Размер 5 мм".encode("iso8859_5"))):  # fmt: skip
        deid = Deidentifier(KEY, load_profile("research"), ocr=False)
        deid.raw_lane = deid.native_lane = not whole
        out = deid.deidentify_bytes(
            ct_small_with_bytes(
                charset, text, ELEMENTS, patient_id="RV4007731", born="19630417", name=b"DOE^JANE"
            )
        ).output_bytes
        assert out
