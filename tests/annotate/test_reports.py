"""Reading reports: template, the free-text de-identification check, sign-off by the second reader,
the DICOM SR (read back with pydicom) and the HTML / PDF renderings."""

from __future__ import annotations

import io

import pydicom
import pytest

from curata import annotate
from curata.annotate._seg import reader_code
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
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == reader_code(second)
    assert str(sr.ContentCreatorName) == reader_code(author)  # a code, never the staff name
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
