"""A CSV's double quotes checked before it is read: one left open takes every line after it into one cell.

Readers (pyarrow, pandas, Python's ``csv`` unless strict) close an open quote at the next quote they meet,
which in an export is the one that opens a later row's quoted note: the rows between are read into one
patient's cell, and the rest of that later row lands in this one's columns, every width still matching
the header. So an export whose quoting is broken is refused whole, by the line the bad cell starts on.

The check follows the readers' own rules, over the runs of quote characters only (numpy, no loop): a run
at a cell's start (after the delimiter, a line break or the file's start) outside a quoted cell opens one
(an even run opens and closes an empty or quoted-quote cell); inside a quoted cell an even run is escaped
quotes and an odd run closes it; elsewhere a quote is a letter of an unquoted cell (``a 5" lesion``). A
closing quote must be followed by the delimiter, a line break or the end; and no cell may be open at
the end of the file.
"""

from __future__ import annotations

import csv as _csv
import io

import numpy as np

_QUOTE = ord('"')
_BOM = b"\xef\xbb\xbf"


def quote_fault(raw: bytes, sep: str) -> tuple[int, bool] | None:
    """(byte offset of the first quote that breaks the quoting, whether a cell is left open to the end),
    or None where every quote is where a reader expects it. ``raw``: ASCII-compatible bytes (UTF-8,
    Windows-1252), ``sep`` one ASCII character."""
    if b'"' not in raw:
        return None
    a = np.frombuffer(raw, dtype=np.uint8)
    q = np.flatnonzero(a == _QUOTE)
    cut = np.flatnonzero(np.diff(q) != 1) + 1
    starts = q[np.concatenate(([0], cut))]
    ends = q[np.concatenate((cut - 1, [len(q) - 1]))] + 1  # one past each run
    odd = (ends - starts) % 2 == 1
    ends_cell = np.zeros(256, dtype=bool)  # the bytes a cell ends at
    ends_cell[[ord("\n"), ord("\r"), ord(sep)]] = True
    first = len(_BOM) if raw.startswith(_BOM) else 0
    at_start = (starts == first) | ends_cell[a[np.maximum(starts - 1, 0)]]
    at_start[starts < first] = False
    # each run maps the state (1: inside a quoted cell) before it to the state after it: a run opening
    # at a cell's start toggles it (odd) or keeps it (even); an odd run elsewhere ends any quoted cell
    toggle = at_start & odd
    reset = ~at_start & odd
    toggles = np.cumsum(toggle)
    before_toggles = toggles - toggle
    index = np.arange(len(starts))
    last_reset = np.maximum.accumulate(np.where(reset, index, -1))
    prior = np.concatenate(([-1], last_reset[:-1]))  # the last reset before each run
    base = np.where(prior >= 0, toggles[np.maximum(prior, 0)], 0)
    inside = (before_toggles - base) % 2 == 1
    closes = (inside & odd) | (~inside & at_start & ~odd)
    after = a[np.minimum(ends, len(a) - 1)]
    bad = closes & (ends < len(a)) & ~ends_cell[after]
    if bad.any():
        return int(starts[np.argmax(bad)]), False
    last = len(starts) - 1
    open_at_end = (inside[last] and not odd[last]) or (not inside[last] and bool(toggle[last]))
    if open_at_end:
        opened = np.flatnonzero(~inside & toggle)  # the cell left open is the last one opened
        return int(starts[opened[-1]] if len(opened) else starts[last]), True
    return None


def quote_error(raw: bytes, sep: str) -> str | None:
    """A reason naming the line where broken quoting starts (never a value), or None where it is sound."""
    fault = quote_fault(raw, sep)
    if fault is None:
        return None
    offset, open_at_end = fault
    line = _record_line(raw, sep)
    if line is None:  # the strict reader agrees on none: name the quote's own line
        line = raw.count(b"\n", 0, offset) + 1
    if open_at_end:
        return f"line {line}: a quoted cell is never closed (a double quote left open takes in every line after it)"
    return (
        f"line {line}: a double quote does not close where its cell ends (a quote left open, or a stray one: "
        "the lines after it would be read into one cell)"
    )


def _record_line(raw: bytes, sep: str) -> int | None:
    """The line the record Python's strict reader refuses starts on."""
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")
    reader = _csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    start = 1
    try:
        for _ in reader:
            start = reader.line_num + 1
    except _csv.Error:
        return start
    return None
