"""The one place every network input goes through: de-identify, store, catalog, remember.

The DICOM SCP, C-MOVE/C-GET and DICOMweb pulls and the STOW-RS endpoint all hand their bytes to a
:class:`Receiver`. Work is split for throughput without giving up durability:

1. the calling thread (one per association or HTTP request) de-identifies and writes the blob
   (fsync + rename) with a de-identifier of its own, so associations run side by side; with
   ``workers > 1`` that step runs in a pool of processes instead, so de-identification uses every
   core when several associations send at once;
2. the catalog rows are filed by one thread at a time (SQLite takes one writer): whichever caller
   takes the writer lock files everything queued by then, commits once (group commit) and wakes the
   others. A lone association thus commits its own rows with no hand-over to another thread, and
   many associations share commits.

``receive`` therefore returns only after the blob and its catalog row are durable, which is when the
SCP may answer success. A keyed hash of each source SOP Instance UID is recorded in the same commit,
so a resumed pull fetches only what is missing; the original UID is never written anywhere in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from curata.catalog import Instance
from curata.collect.ingest import (
    CatalogWriter,
    Ingestor,
    IngestOutcome,
    ensure_site,
    init_worker_process,
    prepare_worker,
    process_one,
    worker_context,
)
from curata.collect.net.models import GatewayReceived
from curata.errors import CatalogError
from curata.workspace import Workspace

log = logging.getLogger("curata.gateway")

OK_STATUSES = frozenset({"ingested", "present"})
_MAX_BATCH = 256


def _ping() -> bool:
    return True


def source_key(key: bytes, source_uid: str) -> str:
    """Keyed hash of a source SOP Instance UID (never stored in clear)."""
    msg = b"gateway-source-uid\0" + source_uid.strip("\0 ").encode("ascii", "replace")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


@dataclass
class _Job:
    outcome: IngestOutcome
    source_key: str | None
    peer: str
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Receiver:
    """Ingest received instances durably, from any number of threads at once."""

    def __init__(
        self, ws: Workspace, *, deidentify: bool = True, profile: str | None = None, workers: int = 1
    ) -> None:
        self.ws = ws
        self.deidentify = deidentify
        self.ingestor = Ingestor(ws, deidentify=deidentify, profile=profile)
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._key = ws.site_key()
        self._local = threading.local()
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self._session: Session | None = None
        self._writer: CatalogWriter | None = None
        self._start_lock = threading.Lock()

    # -- public --------------------------------------------------------------------------------
    def key_for(self, source_uid: str) -> str:
        return source_key(self._key, source_uid)

    def receive(
        self, raw: bytes, *, source: str, source_uid: str | None = None, peer: str = ""
    ) -> IngestOutcome:
        """File ``raw`` (Part-10 bytes); returns once the blob and its catalog row are durable.

        A bad dataset comes back ``quarantined`` with its reason; infrastructure failures (database,
        disk) raise, so a network caller answers a failure status and the sender retries.
        """
        known = self._known(raw)
        if known is not None:  # a re-send: no second de-identification, just remember the source
            outcome = IngestOutcome(
                "present", source, input_digest=known[0], sop_instance_uid=known[1], size=len(raw)
            )
            if not source_uid:
                return outcome
        elif self.workers > 1:
            pool = self._process_pool()
            try:
                outcome = pool.submit(process_one, (source, raw)).result()
            except BrokenProcessPool:  # a worker died (killed, out of memory): fail this one, renew
                with self._start_lock:
                    if self._pool is pool:
                        self._pool = None
                raise
        else:
            outcome = process_one((source, raw), self._context())
        if outcome.status not in ("ingested", "quarantined", "present"):
            return outcome
        job = _Job(outcome, self.key_for(source_uid) if source_uid else None, peer[:64])
        self._queue.put(job)
        while not job.done.is_set():
            with self._write_lock:  # whoever holds it has filed our job, or we file it now
                if not job.done.is_set():
                    self._write_pending()
        if job.error is not None:
            raise CatalogError(f"the catalog could not file {source}: {job.error}") from job.error
        return outcome

    def missing(self, source_uids: Iterable[str]) -> list[str]:
        """The source UIDs this workspace has not received yet (order kept)."""
        uids = list(dict.fromkeys(source_uids))
        keys = {uid: self.key_for(uid) for uid in uids}
        values = list(keys.values())
        have: set[str] = set()
        with self.ws.catalog.session() as session:
            for start in range(0, len(values), 500):
                chunk = values[start : start + 500]
                rows = session.scalars(
                    select(GatewayReceived.source_key).where(GatewayReceived.source_key.in_(chunk))
                )
                have.update(rows)
        return [uid for uid in uids if keys[uid] not in have]

    def close(self) -> None:
        """File everything queued, close the catalog session and stop the worker processes."""
        with self._write_lock:
            self._write_pending()
            if self._session is not None:
                self._session.close()
                self._session = self._writer = None
        with self._start_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def warm_up(self) -> None:
        """Build the de-identifier (and start the worker processes) before the first instance arrives."""
        if self.workers > 1:
            pool = self._process_pool()
            for fut in [pool.submit(_ping) for _ in range(self.workers)]:
                fut.result()
        else:
            self._context()

    # -- internals -----------------------------------------------------------------------------
    def _context(self):  # type: ignore[no-untyped-def]
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = worker_context(self.ingestor)
            prepare_worker(ctx)
            self._local.ctx = ctx
        return ctx

    def _process_pool(self) -> ProcessPoolExecutor:
        with self._start_lock:
            if self._pool is None:
                # spawn, not fork: this process runs network threads, and a forked child would
                # inherit their locks mid-flight
                from curata.runtime import start_worker

                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=start_worker,  # dies with the gateway (PR_SET_PDEATHSIG)
                    initargs=(os.getpid(), init_worker_process, (worker_context(self.ingestor),)),
                )
            return self._pool

    def _write_pending(self) -> None:
        """File every queued job in one transaction (caller holds the write lock)."""
        jobs: list[_Job] = []
        while len(jobs) < _MAX_BATCH:
            try:
                jobs.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not jobs:
            return
        for attempt in range(5):
            try:
                if self._session is None:
                    self._session, self._writer = self._open_writer()
                assert self._writer is not None
                for job in jobs:
                    self._file(self._session, self._writer, job)
                self._session.commit()
                break
            except (IntegrityError, OperationalError) as exc:
                # another writer (a second listener process, an ingest) filed the same patient,
                # study or series a moment ago: start a fresh transaction that sees it, and file again
                self._drop_session()
                if attempt == 4:
                    log.error("catalog commit failed for %d instance(s) after retries", len(jobs))
                    for job in jobs:
                        job.error = exc
                    break
                for job in jobs:
                    if job.outcome.status == "present" and job.outcome.fields:
                        job.outcome.status = "ingested"
                time.sleep(0.05 * (attempt + 1))
            except Exception as exc:  # database trouble: nobody in this batch is acknowledged
                log.exception("catalog commit failed for %d instance(s)", len(jobs))
                self._drop_session()
                for job in jobs:
                    job.error = exc
                break
        for job in jobs:
            job.done.set()

    def _drop_session(self) -> None:
        if self._session is not None:
            self._session.rollback()
            self._session.close()
        self._session = self._writer = None

    def _open_writer(self) -> tuple[Session, CatalogWriter]:
        session = self.ws.catalog.open_session()
        ing = self.ingestor  # [site] region and country are read once, by the Ingestor
        site = ensure_site(session, ing.site_name, ing.region, ing.country)
        session.commit()
        return session, CatalogWriter(session, site)

    def _known(self, raw: bytes) -> tuple[str, str] | None:
        """(input digest, SOP Instance UID) when these exact bytes were filed before (a read only)."""
        digest = hashlib.sha256(raw).hexdigest()
        with self.ws.catalog.session() as session:
            uid = session.scalar(
                select(Instance.sop_instance_uid).where(Instance.source_digest == digest).limit(1)
            )
        return (digest, uid) if uid is not None else None

    def _file(self, session: Session, writer: CatalogWriter, job: _Job) -> None:
        outcome = job.outcome
        if outcome.status == "quarantined":
            writer.quarantine(outcome)
            return
        if outcome.status == "ingested":  # same de-identified UID already filed: "present"
            outcome.status = writer.file(outcome)
        if (
            job.source_key
            and session.scalar(select(GatewayReceived.id).where(GatewayReceived.source_key == job.source_key))
            is None
        ):
            session.add(
                GatewayReceived(
                    source_key=job.source_key, sop_instance_uid=outcome.sop_instance_uid, peer=job.peer
                )
            )
            session.flush()
