"""A CSV row with more or fewer fields than the header (an unquoted comma in a note, a cut line) is refused
alone, with its line and a reason that names no value; the export's other rows are filed."""

from __future__ import annotations

import csv
import io

from curata.collect.clinical import clinical_rows
from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import CSV_COLUMNS, MAPPING, csv_row, folded_survivors


def test_rows_of_another_width_are_refused_alone(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    good = [csv_row(mrn=f"MRN-{i}", notes=f"note {i}") for i in range(4)]
    w.writerow(good[0].values())
    w.writerow(good[1].values())
    lines = out.getvalue().splitlines()
    wide = ",".join(csv_row(mrn="MRN-9").values()) + ",Jürgen Müller, DE-551207"  # line 4: two fields more
    short = ",".join(list(csv_row(mrn="MRN-8").values())[:5])  # line 5: cut
    rest = io.StringIO()
    csv.writer(rest, lineterminator="\n").writerows([good[2].values(), good[3].values()])
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "dx.csv").write_text("\n".join([*lines, wide, short]) + "\n" + rest.getvalue())
    (folder / "clinical-map.toml").write_text(MAPPING)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([folder])
    assert summary.counts["ingested"] == 1, problems
    with workspace.catalog.session() as s:
        assert len(clinical_rows(s, workspace.store, "condition_occurrence")) == 4
    reasons = " ".join(p.reason or "" for p in problems)
    assert "line 4:" in reasons and "line 5:" in reasons and "fields" in reasons, reasons
    assert folded_survivors(workspace, ["Müller", "Jürgen", "551207"]) == []
