"""A CSV cell whose double quote is never closed (a note typed as ``"pain since the fall``): a reader takes
every line after it into that one cell, up to the next quote, which may open a later row's note; the
rows between vanish into one patient's note, and that row's other cells land in this one's columns.
Such an export is refused whole, named by the line the quote opens on and never by a value, and
quarantined with that reason; the other exports of the batch are filed."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from curata.collect.clinical import clinical_rows
from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import CSV_COLUMNS, MAPPING, csv_row, folded_survivors

BAD_CELL = '"pain since the fall, said Jürgen Müller'
SECRETS = ["Jürgen", "Müller", "pain since"]
# (row index the quote opens on, delimiter, column, cell): line = row index + 2
CASES = [
    (1, ",", "notes", BAD_CELL),  # closed by the quote that opens row 3's note: every width still fits
    (4, ",", "notes", BAD_CELL),
    (5, ",", "notes", BAD_CELL),  # the last row: open up to the end of the file
    (2, "\t", "notes", BAD_CELL),
    (1, ",", "unmapped_comment", BAD_CELL),  # a column the mapping does not read
    (3, ",", "diagnosis", '"lung adenocarcinoma" said Jürgen Müller'),  # a quote closed inside a cell
]


def _line(row: dict[str, str], sep: str, column: str | None = None, cell: str = "") -> str:
    """``row`` written as a CSV line, with ``column``'s cell as typed (unescaped) when given."""
    values = list(row.values())
    if column is not None:
        values[CSV_COLUMNS.index(column)] = "\0"
    out = io.StringIO()
    csv.writer(out, delimiter=sep, lineterminator="").writerow(values)
    return out.getvalue().replace("\0", cell)


def _export(
    folder: Path, *, open_at: int | None, sep: str = ",", column: str = "notes", cell: str = ""
) -> None:
    """An export of 6 rows whose notes hold a comma (so they are quoted); with ``open_at``, that row's
    ``column`` is ``cell`` as typed, unescaped."""
    lines = [sep.join(CSV_COLUMNS)]
    for i in range(6):
        row = csv_row(mrn=f"MRN-{100 + i}", notes=f"note {i}, Adaeze reports cough")
        lines.append(_line(row, sep, column, cell) if i == open_at else _line(row, sep))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ("dx.tsv" if sep == "\t" else "dx.csv")).write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = MAPPING if sep == "," else MAPPING.replace("[csv]\n", '[csv]\ndelimiter = "\\t"\n', 1)
    (folder / "clinical-map.toml").write_text(mapping)


def test_an_unclosed_quote_refuses_the_export_by_its_line(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for k, (at, sep, column, cell) in enumerate(CASES):
        _export(tmp_path / f"bad{k}", open_at=at, sep=sep, column=column, cell=cell)
    _export(tmp_path / "good", open_at=None)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths(
        [tmp_path / f"bad{k}" for k in range(len(CASES))] + [tmp_path / "good"]
    )
    by_source = {p.source.rsplit("/", 2)[-2]: p for p in problems}
    # before: 6 of 6 exports were filed, their quote swallowing rows or refusing one row by its width
    missed = [
        f"bad{k}"
        for k, (at, *_) in enumerate(CASES)
        if not (
            (p := by_source.get(f"bad{k}")) is not None
            and p.status == "quarantined"
            and f"line {at + 2}:" in (p.reason or "")
            and "quote" in (p.reason or "")
        )
    ]
    assert missed == [], [(p.source, p.status, p.reason) for p in problems]
    assert summary.counts["ingested"] == 1 and summary.counts["quarantined"] == len(CASES)
    for p in problems:  # the reason names a line, never a value
        assert not any(s.lower() in (p.reason or "").lower() for s in [*SECRETS, "Adaeze", "cough"]), p.reason
    with workspace.catalog.session() as s:
        assert len(clinical_rows(s, workspace.store, "condition_occurrence")) == 6  # the good export
    assert folded_survivors(workspace, SECRETS) == []


def test_quotes_that_are_well_formed_are_read_as_before(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Escaped quotes, a quote inside an unquoted cell, a note over several lines: read, not refused."""
    folder = tmp_path / "export"
    rows = [
        csv_row(mrn="MRN-1", notes='a 5" lesion, "stable"'),
        csv_row(mrn="MRN-2", notes="first line\nsecond line, with a comma"),
        csv_row(mrn="MRN-3", diagnosis='"quoted" diagnosis'),
    ]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    w.writerows(r.values() for r in rows)
    text = out.getvalue() + _line(csv_row(mrn="MRN-4"), ",", "notes", 'say 5" here') + "\r\n"
    folder.mkdir()
    (folder / "dx.csv").write_text(text, encoding="utf-8")
    (folder / "clinical-map.toml").write_text(MAPPING)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([folder])
    assert summary.counts["ingested"] == 1 and not problems, problems
    with workspace.catalog.session() as s:
        assert len(clinical_rows(s, workspace.store, "condition_occurrence")) == 4


def test_the_quote_check_agrees_with_the_strict_reader() -> None:
    """``quote_fault`` finds a fault exactly where Python's strict reader refuses a text, on random texts of
    letters, spaces, quotes, delimiters and line breaks (CR, LF), for three delimiters."""
    import random

    from curata.collect.clinical._quotes import quote_fault

    rng = random.Random(7)
    disagree = []
    for sep in (",", "\t", ";"):
        for _ in range(20_000):
            text = "".join(rng.choice('ab" \n\r' + sep) for _ in range(rng.randint(1, 16)))
            try:
                list(csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True))
                strict_ok = True
            except csv.Error:
                strict_ok = False
            if strict_ok != (quote_fault(text.encode(), sep) is None):
                disagree.append((sep, text))
    assert disagree == []
