"""Terminal output shared by every command: progress bars, summary tables, JSON for scripts."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

# What may enclose a value, opening and closing: a value may hold the mark itself (O'BRIEN, a repr's
# \', a bracket), so each mark's span runs from its first opening to its last closing, whole.
_MARKS = (
    ("'", "'"),
    ('"', '"'),
    ("`", "`"),
    ("<", ">"),
    ("[", "]"),
    ("\u2018", "\u2019"),
    ("\u201c", "\u201d"),
    ("\u00ab", "\u00bb"),
)
_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/][^\s,;:()]+|~[^\s,;:()]*")
_LONG_NUMBER = re.compile(r"\d[\d.\-/]{4,}")


def redact(text: str) -> str:
    """Quoted text, paths and long numbers (dates, IDs, UIDs) out; words and tags like (0010,0010) stay.

    Parsers quote the value they choke on and name the file they read: both may be the patient's.
    Quoted text goes from the first quote mark of a kind to its last: a value that holds the mark
    (``'O'BRIEN'``, ``'x\\'DOE"'``) would otherwise leave its tail out of a pairwise match. Text
    between two marks of our own wording (``the file's ... 'value'``) goes too: more is lost, never less."""
    text = _unquoted(text)
    text = _PATH.sub("<path>", text)
    return _LONG_NUMBER.sub("#", text)


def _unquoted(text: str) -> str:
    """Each mark's span (first opening to last closing) out, the spans found on the whole text and
    joined where they overlap: one span taken first could cut the closing mark of another."""
    spans = []
    for opening, closing in _MARKS:
        first, last = text.find(opening), text.rfind(closing)
        if first != -1 and last > first:
            spans.append((first, last + 1))
    if not spans:
        return text
    spans.sort()
    out, at = [], 0
    start, end = spans[0]
    for lo, hi in spans[1:]:
        if lo < end:  # overlapping (or nested): one span
            end = max(end, hi)
            continue
        out += [text[at:start], "'…'"]
        at, (start, end) = end, (lo, hi)
    out += [text[at:start], "'…'", text[end:]]
    return "".join(out)


_GUARDED = False


def guard_library_output() -> None:
    """Pass every warning shown and every library's log record through :func:`redact` (idempotent).

    pydicom, tifffile, openpyxl and their kind warn (and log) with the offending input value quoted,
    e.g. ``Invalid value for VR UI: 'DOE^JANE'``: on a console or in a site's log that is a leak. Our
    own loggers (``curata.*``) write messages made to be safe and are left as they are."""
    global _GUARDED
    if _GUARDED:
        return
    _GUARDED = True
    show = warnings.showwarning

    def _show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        show(redact(str(message)), category, filename, lineno, file, line)

    warnings.showwarning = _show
    make = logging.getLogRecordFactory()

    def _record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if record.name != "curata" and not record.name.startswith("curata."):
            record.msg, record.args = redact(record.getMessage()), None
            if record.exc_info:  # a traceback's message lines quote the input; its frames name our code
                trace = logging.Formatter().formatException(record.exc_info).splitlines()
                record.exc_text = "\n".join(
                    line if line.startswith(("  File ", "    ")) else redact(line) for line in trace
                )
                record.exc_info = None
        return record

    logging.setLogRecordFactory(_record)


T = TypeVar("T")


def make_progress(*, quiet: bool = False) -> Progress:
    """A progress bar on stderr, so ``--json`` output on stdout stays clean."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
        transient=False,
    )


def track(
    items: Iterable[T], description: str, *, total: int | None = None, quiet: bool = False
) -> Iterator[T]:
    with make_progress(quiet=quiet) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


@dataclass
class RunSummary:
    """Counts every long command reports at its end; ``failed`` decides the exit code."""

    title: str
    counts: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    failure_keys: tuple[str, ...] = ("quarantined", "failed")

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def failed(self) -> bool:
        return any(self.counts.get(k, 0) for k in self.failure_keys)

    def as_dict(self) -> dict[str, Any]:
        return {**self.counts, **self.extra, "seconds": round(self.seconds, 3)}

    def render(self, *, as_json: bool = False) -> None:
        if as_json:
            print_json(self.as_dict())
            return
        table = Table(title=self.title, show_header=True)
        table.add_column("what")
        table.add_column("count", justify="right")
        for key, value in {**self.counts, **self.extra}.items():
            style = "red" if key in self.failure_keys and value else ""
            table.add_row(key.replace("_", " "), f"[{style}]{value}[/{style}]" if style else str(value))
        table.add_row("seconds", f"{self.seconds:.2f}")
        console.print(table)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")


def print_table(
    rows: Sequence[Mapping[str, Any]], *, title: str | None = None, columns: list[str] | None = None
) -> None:
    table = Table(title=title)
    cols = columns or (list(rows[0].keys()) if rows else [])
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in cols))
    console.print(table)


@contextmanager
def status(message: str) -> Iterator[None]:
    with err_console.status(message):
        yield
