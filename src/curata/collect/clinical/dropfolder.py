"""The gateway's drop folder: clinical exports, FHIR bulk files, VCFs (and DICOM) left by the site's
systems are de-identified at the edge with the site key and filed, exactly like received images.

``curata gateway watch DIR`` polls ``DIR`` (recursively). A file is taken once it has stood still for one
poll (same size and modification time twice in a row), so a half-copied export is never read; hidden
files and ``*.part`` / ``*.tmp`` / ``*.partial`` are left alone. Each batch goes through ``curata
ingest`` (``collect.ingest.Ingestor``): the type decides the collector, a ``clinical-map.toml`` in the
file's folder (or above) maps CSV and Excel columns, a patient's rows share the pseudonym and date shift
of their images, bad rows and files are quarantined with their line and reason. Inputs are known by their
sha256, so a restarted watcher (or a file dropped twice) files nothing twice. A changed mapping file
makes the files of its folder eligible again (a CSV refused for want of a mapping is filed once the
mapping arrives). The site's files are never modified or removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curata.collect.clinical.mapping import MAP_NAMES
from curata.console import RunSummary
from curata.errors import ConfigError
from curata.workspace import Workspace

IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".swp")
Signature = tuple[int, int]  # size, mtime in ns


@dataclass
class DropBatch:
    """What one poll filed: the ingest summary and the outcomes with problems (their reasons hold no
    PHI; their ``source`` is the site's own file name, which may: report them by ``input_digest``)."""

    files: list[Path]
    summary: RunSummary
    problems: list[Any] = field(default_factory=list)


class DropFolder:
    def __init__(self, ws: Workspace, folder: Path | str) -> None:
        self.ws = ws
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise ConfigError(f"{self.folder} is not a folder", hint="create the drop folder first")
        self._seen: dict[Path, Signature] = {}
        self._done: dict[Path, Signature] = {}
        self.total = RunSummary("gateway watch", failure_keys=("quarantined", "failed", "rows refused"))

    def _listing(self) -> dict[Path, Signature]:
        out: dict[Path, Signature] = {}
        for path in sorted(self.folder.rglob("*")):
            rel = path.relative_to(self.folder).parts
            if any(p.startswith(".") for p in rel) or path.name.lower().endswith(IGNORED_SUFFIXES):
                continue
            try:
                if not path.is_file():
                    continue
                st = path.stat()
            except OSError:  # removed while listed
                continue
            out[path] = (st.st_size, st.st_mtime_ns)
        return out

    def ready(self) -> list[Path]:
        """Files unchanged since the previous call and not filed in this state yet."""
        now = self._listing()
        ready = [p for p, sig in now.items() if self._seen.get(p) == sig and self._done.get(p) != sig]
        self._seen = now
        for changed in [p for p in ready if p.name in MAP_NAMES]:  # a new mapping: its folder again
            for p in list(self._done):
                if p.is_relative_to(changed.parent):
                    del self._done[p]
                    if p not in ready and now.get(p) is not None:
                        ready.append(p)
        return sorted(ready)

    def poll(self) -> DropBatch | None:
        """File what is ready; None when nothing is."""
        from curata.collect.ingest import Ingestor

        files = self.ready()
        if not files:
            return None
        summary, problems = Ingestor(self.ws, workers=1).ingest_paths(files)
        for p in files:
            self._done[p] = self._seen[p]
        return DropBatch(files, summary, problems)

    def watch(
        self,
        *,
        interval: float = 2.0,
        once: bool = False,
        on_batch: Callable[[DropBatch], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> RunSummary:
        """Poll every ``interval`` seconds until ``stop()`` (or Ctrl-C); ``once``: settle, file, return."""
        total = self.total
        self.ready()  # the first listing: nothing has stood still yet
        while True:
            time.sleep(interval)
            batch = self.poll()
            if batch is not None:
                for key, n in batch.summary.counts.items():
                    total.add(key, n)
                if on_batch:
                    on_batch(batch)
            if once or (stop is not None and stop()):
                return total


__all__ = ["DropBatch", "DropFolder"]
