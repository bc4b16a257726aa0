"""What an outside reviewer's fifth pass found where the clinical, VCF and slide paths share the DICOM
engine's matcher: the birth date in six digits (610203) and in other calendars read as a number
(25040203, 13391114, 1961034, 0500203) was stored in VCF records, kept slide fields and measurement
values; Japanese-era forms with kanji units, the era's short kanji or its romaji name, and Persian
month names survived in notes; a CSV line saved in cp1251 or Shift-JIS was stored as Windows-1252
mojibake of the name; a VCF header with Latin-1 bytes stopped the whole ingest."""

from __future__ import annotations

import pytest

from curata.collect.clinical._records import as_utf8
from curata.collect.clinical.deid import identifying_numbers
from curata.collect.deid.text import Identifiers, find_identifier
from curata.errors import InputError


def _born() -> Identifiers:
    ids = Identifiers()
    ids.add_name("QUIXWORTH^ZELDA")
    ids.add_birth_date("19610203")
    return ids


@pytest.mark.parametrize("written", ["BD=610203", "0/1:030261", "rs020361", "Rack = 610203"])
def test_the_birth_date_in_six_digits_is_found_wherever_it_is_added(written: str) -> None:
    """``add_birth_date`` (clinical, FHIR, VCF, slide sidecars) adds the forms ``add_strong`` adds
    for DICOM's PatientBirthDate: found in text and by the byte gate."""
    ids = _born()
    assert ids.matcher().spans(written)
    assert find_identifier(written.encode(), ids.gate_needles()) is not None


def test_a_study_date_gets_no_six_digit_form() -> None:
    ids = Identifiers()
    ids.add_date("20081130")
    assert not ids.matcher().spans("ContentTime 113008")


@pytest.mark.parametrize("number", [25040203, 3022504, 13391114, 1961034, 500203])
def test_the_birth_date_in_another_calendar_is_an_identifying_number(number: int) -> None:
    assert number in identifying_numbers(_born())


@pytest.mark.parametrize(
    "written",
    ["S36年2月3日", "昭36.2.3", "昭36年2月3日", "Showa 36.2.3", "S360203", "3360203", "14 Bahman 1339"],
)
def test_more_written_forms_of_other_calendars(written: str) -> None:
    ids = _born()
    assert ids.matcher().spans(f"note {written} seen"), written


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        ("1,note Чернова Анна seen", "cp1251"),
        ("1,note 山田太郎 seen", "shift_jis"),
        ("1,やまだはなこ", "shift_jis"),
    ],
)
def test_a_line_in_another_scripts_code_page_is_refused_not_read_as_cp1252(text: str, codec: str) -> None:
    raw = b"id,note\n" + text.encode(codec) + b"\n"
    with pytest.raises(InputError, match="line 2 is not UTF-8"):
        as_utf8(raw)


def test_windows_1252_lines_are_still_read() -> None:
    text = "id,name\n1,Müller Gonçalves\n2,François Œuvre Ødegård\n3,Größe Ölçü (Ø 5 mm) 37°C ±2\n"
    assert as_utf8(text.encode("cp1252")).decode("utf-8") == text


def test_a_vcf_header_that_is_not_utf8_is_refused_with_its_reason() -> None:
    from curata.collect.clinical.mapping import VcfMap
    from curata.collect.genomics.vcf import deidentify_vcf

    vcf = (
        "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=1000>\n"
        '##SAMPLE=<ID=MRN7734521,Description="Müller">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tMRN7734521\n"
        "chr1\t100\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\n"
    ).encode("latin-1")
    with pytest.raises(InputError, match="not UTF-8"):
        deidentify_vcf(vcf, "in.vcf", VcfMap(), bytes(range(32)))
