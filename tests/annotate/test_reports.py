"""Reading reports: template, the free-text de-identification check, sign-off by the second reader,
the DICOM SR (read back with pydicom) and the HTML / PDF renderings."""

from __future__ import annotations

import io

import pydicom
import pytest

from curata import annotate
from curata.errors import AnnotationError

PLANTED = [
    "Seen by Dr. Amaka Okafor, call +234 803 555 0199",
    "Compared with the scan of 2024-03-05",
    "Patient: Joao Silva, MRN 88231907",
    "Contact jane.doe@hospital.org",
]


def test_report_written_checked_signed_and_rendered(project) -> None:  # type: ignore[no-untyped-def]
    ws = project
    annotate.assign(ws, "livers")
    t = annotate.list_tasks(ws, "livers")[0]
    author, second = t.readers
    for text in PLANTED:  # every identifier shape is refused, and the message does not echo it
        with pytest.raises(AnnotationError, match="free-text de-identification") as err:
            annotate.write_report(
                ws, "livers", t.id, author, {"finding": "lesion present", "impression": text}
            )
        assert text not in str(err.value)
    with pytest.raises(AnnotationError, match="must be one of"):
        annotate.write_report(ws, "livers", t.id, author, {"finding": "maybe", "impression": "x"})
    impression = "Solitary hypodense liver lesion, 12 mm, likely benign cyst. Follow-up advised."
    rid = annotate.write_report(ws, "livers", t.id, author,
                                {"finding": "lesion present", "largest lesion": 12.5, "impression": impression})  # fmt: skip
    with pytest.raises(AnnotationError, match="second reader"):
        annotate.sign_report(ws, "livers", rid, author)
    signed = annotate.sign_report(ws, "livers", rid, second)
    sr = pydicom.dcmread(io.BytesIO(ws.store.get_bytes(signed["sr_digest"])))
    assert sr.Modality == "SR" and sr.VerificationFlag == "VERIFIED"
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == annotate.reader_code(ws, second)
    assert str(sr.ContentCreatorName) == annotate.reader_code(ws, author)  # a code, never the staff name
    items = {str(i.ConceptNameCodeSequence[0].CodeMeaning): i for i in sr.ContentSequence}
    assert items["Impression"].TextValue == impression
    assert float(items["Distance"].MeasuredValueSequence[0].NumericValue) == 12.5
    assert items["Finding"].ConceptCodeSequence[0].CodeMeaning == "lesion present"
    assert sr.PatientIdentityRemoved == "YES"
    files = annotate.render_report(ws, "livers", rid)
    assert files["report.pdf"].startswith(b"%PDF") and len(files["report.pdf"]) > 1000
    page = files["report.html"].decode()
    assert "likely benign cyst" in page and second in page and "12.5 mm" in page
    with pytest.raises(AnnotationError, match="already signed"):
        annotate.sign_report(ws, "livers", rid, second)
    # a correction is a new version naming the old one
    rid2 = annotate.write_report(
        ws, "livers", t.id, author, {"finding": "no lesion", "impression": "Normal liver."}
    )
    assert rid2 != rid


# Identifiers a reader may write, of a patient or anyone else (no identity is known to match them
# against: only the cleaner's generic shapes stand between them and the stored SR and its PDF).
PLANTED_OTHER_SCRIPTS = [
    "Discussed with Dr. Müller-Lüdenscheidt", "Prof. Łukasiewicz agrees", "seen by Dr. Ólafsdóttir",
    "Mr. Ñúñez, follow-up", "Dr. Nguyễn Văn An reviewed", "Ms. de la Cruz, left lung", "Dr van der Berg",
    "Herr Müller, Kontrolle", "Frau Dr. Schmidt", "Sra. da Conceição", "Dra. da Silva", "Mme Dubois",
    "Dott. Rossi", "MÜLLER^HANS", "Ólafsdóttir^Guðrún", "Nguyễn^Văn An", "山田^太郎", "Çelik^Gökhan",
    "compared with 14.Jun.2023", "since 14th of June 2023", "scan of June 2023", "scan of 14.VI.2023",
    "born 14 juin 1948", "exame de 14 de junho de 2023", "Aufnahme vom 14. Juni 2023",
    "ngày 14 tháng 6 năm 2023", "2023年6月14日の検査", "2023년 6월 14일 검사",
]  # fmt: skip
IMPRESSIONS_KEPT = [
    "Solitary hypodense liver lesion, 12 mm, likely benign cyst. Follow-up advised.",
    "MR brain: no acute infarct. MS plaques unchanged.", "Lung-RADS 4A; PI-RADS v2.1 score 3",
    "Matrix 5 x 512, slice 3 x 10 mm", "Segment VI lesion, 2 x 3 cm", "Dr visit not needed",
]  # fmt: skip


def test_identifiers_in_other_scripts_and_date_forms_are_refused(project) -> None:  # type: ignore[no-untyped-def]
    ws = project
    annotate.assign(ws, "livers")
    t = annotate.list_tasks(ws, "livers")[0]
    author = t.readers[0]
    stored = []
    for text in PLANTED_OTHER_SCRIPTS:
        try:
            annotate.write_report(
                ws, "livers", t.id, author, {"finding": "lesion present", "impression": text}
            )
        except AnnotationError as err:
            assert text not in str(err)
            continue
        stored.append(text)
    assert stored == []
    for text in IMPRESSIONS_KEPT:  # clinical text with sizes, scores and modalities is not refused
        annotate.write_report(ws, "livers", t.id, author, {"finding": "lesion present", "impression": text})
