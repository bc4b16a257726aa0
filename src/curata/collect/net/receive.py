"""The one place every network input goes through: de-identify, store, catalog, remember.

The DICOM SCP, C-MOVE/C-GET and DICOMweb pulls and the STOW-RS endpoint all hand their bytes to a
:class:`Receiver`. Work is split for throughput without giving up durability:

1. the calling thread (one per association or HTTP request) de-identifies and *stages* the blob
   (written and fsynced in the store's temp folder, no final name yet) with a de-identifier of its own, so
   associations run side by side; with ``workers > 1`` that step runs in a pool of processes instead,
   so de-identification uses every core when several associations send at once. The calling thread
   then renames the blob into place and fsyncs its folder (blobs land in distinct shard folders, so
   these flushes gain nothing from a batch, and run side by side here);
2. one thread at a time (SQLite takes one writer) files the rows: whichever caller takes the writer
   lock drains everything queued by then, files all rows with a few multi-row statements, commits once
   (group commit) and wakes the others. A lone association thus commits its own rows with no hand-over
   to another thread, and many associations share one commit.

``receive`` therefore returns only after the blob and its catalog row are durable, which is when the
SCP may answer success. A keyed hash of each source SOP Instance UID is recorded in the same commit,
so a resumed pull fetches only what is missing; the original UID is never written anywhere in clear.
"""

from __future__ import annotations

import functools
import hmac
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from curata import faults
from curata.catalog import Blob, Instance, Provenance, Series, cache_key, code_version
from curata.collect.ingest import (
    DUPLICATE_UID_REASON,
    CatalogWriter,
    Ingestor,
    IngestOutcome,
    conflicts_with,
    current_worker_context,
    drop_refused_blobs,
    ensure_site,
    init_worker_process,
    keep_refused,
    prepare_worker,
    process_one,
    worker_context,
)
from curata.collect.net.models import GatewayReceived
from curata.collect.reasons import safe_reason
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
    return hmac.digest(key, msg, "sha256").hex()  # one call into OpenSSL, no HMAC object


Staged = list[tuple[str, Path]]  # (digest, temp file) written (fsynced unless sync=False), not named yet


class _StagingStore:
    """The store as the de-identifier sees it: ``put_bytes`` writes the blob in the store's temp folder
    (in a pool worker, or the receiving thread), fsynced unless ``sync`` is false (the spool's drain
    flushes its batch at once), and remembers it; the receiving thread
    names it (:meth:`LocalStore.commit_staged`) only once the outcome is to be filed, so a refused input
    leaves no blob behind. Anything else goes through."""

    def __init__(self, store: Any, sync: bool = True, scratch: ScratchFiles | None = None) -> None:
        self._store = store
        self.sync = sync
        self.scratch = scratch
        self.staged: Staged = []

    def put_bytes(self, data: bytes, *, digest: str | None = None) -> str:
        over = self.scratch.take() if self.scratch is not None else None
        if over is None:
            digest, tmp = self._store.stage_bytes(data, digest=digest, sync=self.sync)
        else:
            digest, tmp = self._store.stage_bytes(data, digest=digest, sync=self.sync, over=over)
            if tmp is None:  # stored already: the file was not used
                cast(ScratchFiles, self.scratch).keep(over)
        if tmp is not None:
            self.staged.append((digest, tmp))
        return str(digest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def process_staged(
    item: tuple[str, bytes], ctx: Any = None, *, sync: bool = True, scratch: ScratchFiles | None = None
) -> tuple[IngestOutcome, Staged]:
    """:func:`process_one` with blob writes staged (not yet named) when the store can stage them.
    Runs in the receiving thread or in a pool worker (``ctx`` None: the worker's own context).
    ``sync=False``: the blobs are not flushed either; the batch's ``commit_staged(synced=False)`` does.
    ``scratch``: files the blobs may be written over (see :class:`ScratchFiles`)."""
    ctx = ctx if ctx is not None else current_worker_context()
    store = ctx.store
    if not hasattr(store, "stage_bytes"):  # a remote store: every put is durable on its own
        return process_one(item, ctx), []
    staging = _StagingStore(store, sync, scratch)
    ctx.store = staging
    try:
        outcome = process_one(item, ctx)
    finally:
        ctx.store = store
    return outcome, staging.staged


def process_staged_file(
    item: tuple[str, str], ctx: Any = None, *, sync: bool = True, scratch: ScratchFiles | None = None
) -> tuple[IngestOutcome, Staged]:
    """:func:`process_staged` for ``(source, path)``: the bytes are read here, in the worker."""
    source, path = item
    return process_staged((source, Path(path).read_bytes()), ctx, sync=sync, scratch=scratch)


# the spool's drain files a batch at once: its blobs are flushed together, by commit_staged
_process_batch_file = functools.partial(process_staged_file, sync=False)


class ScratchFiles:
    """Files whose content may be overwritten, kept for the next blobs (the spool's drain).

    Once a spooled instance is filed, its file is not removed: it is moved into ``folder`` (inside
    the spool: private to the site, like the spool itself) and the next blob is written over it
    (``LocalStore.stage_bytes(over=...)``), then cut to the blob's length and named. Removing a
    512 KB file and allocating a new one cost more system time than the rest of filing it: the
    blocks are freed and allocated again, new pages are filled, and on an ext4 without a journal
    every new inode is searched for past each inode freed in the last half-minute, which a drain
    that removes what it files keeps full. At most ``limit`` files are kept; the rest are removed.
    The folder must be on the store's file system (the blob is renamed from it); :meth:`clear`
    removes what is left (the files still hold the instances as they were received)."""

    def __init__(self, folder: Path, limit: int = 64) -> None:
        self.folder = folder
        self.limit = limit
        self._free: list[Path] = []
        self._lock = threading.Lock()

    @staticmethod
    def usable(folder: Path, store: Any) -> bool:
        """Whether blobs of ``store`` may be written over files of ``folder``: a local store that
        stages, on the same file system."""
        root = getattr(store, "root", None)
        if root is None or not hasattr(store, "stage_bytes") or not hasattr(store, "commit_staged"):
            return False
        try:
            return os.stat(folder).st_dev == os.stat(root).st_dev
        except OSError:
            return False

    def give(self, path: Path) -> None:
        """Keep ``path`` (moved into the folder), or remove it when enough are kept."""
        with self._lock:
            keep = len(self._free) < self.limit
        if not keep:
            path.unlink(missing_ok=True)
            return
        target = self.folder / path.name
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return
        except OSError:
            path.unlink(missing_ok=True)
            return
        with self._lock:
            self._free.append(target)

    def keep(self, path: Path) -> None:
        """Keep a file taken from the folder and not used after all."""
        with self._lock:
            self._free.append(path)

    def take(self) -> Path | None:
        """A kept file (the last given: its pages are the likeliest in the cache), or None."""
        with self._lock:
            return self._free.pop() if self._free else None

    def clear(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for path in free:
            path.unlink(missing_ok=True)

    @staticmethod
    def clear_folder(folder: Path) -> None:
        """Remove every file left in ``folder`` (a drain that was stopped or killed)."""
        if folder.is_dir():
            for path in folder.iterdir():
                path.unlink(missing_ok=True)


def _discard(staged: Staged) -> None:
    for _digest, tmp in staged:
        tmp.unlink(missing_ok=True)


@dataclass
class _Job:
    outcome: IngestOutcome
    source_key: str | None
    peer: str
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


_FILED = ("ingested", "quarantined", "present")  # outcomes the batch writer files


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
        self._blob_store: Any = None
        self._refuse_ctx: Any = None

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
        return self._receive(process_staged, (source, raw), source, source_uid, peer)

    def receive_file(
        self, path: Path, *, source: str, source_uid: str | None = None, peer: str = ""
    ) -> IngestOutcome:
        """:meth:`receive` for a Part-10 file (a spooled instance): the de-identification worker reads
        it itself, so its bytes never cross a process boundary. An unreadable file raises ``OSError``."""
        return self._receive(process_staged_file, (source, str(path)), source, source_uid, peer)

    def receive_files(
        self, items: list[tuple[Path, str, str | None, str]], scratch: ScratchFiles | None = None
    ) -> list[IngestOutcome | BaseException]:
        """:meth:`receive_file` for several ``(path, source, source_uid, peer)`` at once, filed in one
        commit: for a caller that need not answer each instance as soon as it is durable (the spool's
        drain, whose sender was answered when the instance reached the spool). Each item comes back
        as its outcome, or as the exception that kept it from being filed (the others go on).
        ``scratch``: files the blobs may be written over (de-identifying in this process only)."""
        results: list[IngestOutcome | BaseException] = []
        made: list[tuple[int, IngestOutcome, Staged, str | None, str]] = []
        work: Any = _process_batch_file
        if scratch is not None and self.workers == 1:
            work = functools.partial(process_staged_file, sync=False, scratch=scratch)
        for path, source, source_uid, peer in items:
            try:
                done = self._deidentify(work, (source, str(path)))
            except Exception as exc:
                results.append(exc)
                continue
            results.append(done[0])
            if done[0].status in _FILED:
                made.append((len(results) - 1, *done, source_uid, peer))
        # one round of renames and folder flushes for the batch: its blobs share the store's upper
        # shard folders, flushed once instead of once per blob
        ingested = [(outcome, staged) for _, outcome, staged, _, _ in made if outcome.status == "ingested"]
        try:
            self._make_durable(ingested, synced=False)
        except Exception as exc:  # the staged blobs are discarded; these instances stay unfiled
            for index, outcome, _, _, _ in made:
                if outcome.status == "ingested":
                    results[index] = exc
            made = [m for m in made if m[1].status != "ingested"]
        jobs = [(index, self._queue_job(outcome, uid, peer)) for index, outcome, _, uid, peer in made]
        for index, job in jobs:
            self._wait(job)
            if job.error is not None:
                results[index] = CatalogError(f"the catalog could not file {items[index][1]}: {job.error}")
            else:
                self._keep_refused((items[index][1], str(items[index][0])), job.outcome)
        return results

    def _receive(
        self, work: Any, item: tuple[str, Any], source: str, source_uid: str | None, peer: str
    ) -> IngestOutcome:
        prepared = self._prepare(work, item, source_uid, peer)
        if not isinstance(prepared, _Job):
            return prepared
        self._wait(prepared)
        if prepared.error is not None:
            raise CatalogError(f"the catalog could not file {source}: {prepared.error}") from prepared.error
        self._keep_refused(item, prepared.outcome)
        return prepared.outcome

    def _keep_refused(self, item: tuple[str, Any], outcome: IngestOutcome) -> None:
        """An input refused when filed (another instance under its SOP Instance UID is stored): its
        bytes go to the quarantine, as those of an input the de-identifier refused (a site keeps them,
        the platform keeps none). ``item``: ``(source, bytes)`` or ``(source, path)``, read here."""
        if outcome.status != "quarantined" or outcome.reason != DUPLICATE_UID_REASON:
            return
        if not self.deidentify:
            return
        source, data = item
        try:
            raw = data if isinstance(data, bytes) else Path(data).read_bytes()
        except OSError:
            return  # the catalog's quarantine row (digest, size, reason) stays alone
        if self._refuse_ctx is None:
            self._refuse_ctx = worker_context(self.ingestor)  # not set up: only its folder is used
        keep_refused(self._refuse_ctx, (source, raw), outcome)

    def _prepare(
        self, work: Any, item: tuple[str, Any], source_uid: str | None, peer: str
    ) -> _Job | IngestOutcome:
        """De-identify and make the blob durable; a job queued for the batch writer, or an outcome
        that is not filed (skipped, failed)."""
        outcome, staged = self._deidentify(work, item)
        if outcome.status not in _FILED:
            return outcome
        if outcome.status == "ingested":
            # name the blob and fsync its folder here, in the receiving thread, before queueing: blobs
            # land in distinct shard folders, so a batch writer saved no flush by grouping them and
            # held every other sender behind its folder flushes (a row may still only point at a
            # durable name: the rows are committed after this, by the batch writer)
            self._make_durable([(outcome, staged)])
        return self._queue_job(outcome, source_uid, peer)

    def _deidentify(self, work: Any, item: tuple[str, Any]) -> tuple[IngestOutcome, Staged]:
        """The outcome of one input, and its blobs staged (written and fsynced, not yet named) when
        it is to be ingested."""
        # a re-send (same input bytes, or the same de-identified instance) is recognised by the batch
        # writer, in the statement that looks up the batch's SOP Instance UIDs: no query per instance
        staged: Staged = []
        if self.workers > 1:
            pool = self._process_pool()
            try:
                outcome, staged = pool.submit(work, item).result()
            except BrokenProcessPool:  # a worker died (killed, out of memory): fail this one, renew
                with self._start_lock:
                    if self._pool is pool:
                        self._pool = None
                raise
        else:
            outcome, staged = work(item, self._context())
        if outcome.status != "ingested":  # nothing of it is kept in the store
            _discard(staged)
            staged = []
        return outcome, staged

    def _queue_job(self, outcome: IngestOutcome, source_uid: str | None, peer: str) -> _Job:
        job = _Job(outcome, self.key_for(source_uid) if source_uid else None, peer[:64])
        self._queue.put(job)
        return job

    def _wait(self, job: _Job) -> None:
        while not job.done.is_set():
            with self._write_lock:  # whoever holds it has filed our job, or we file it now
                if not job.done.is_set():
                    self._write_pending()

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
        """Build the de-identifier (and start the worker processes) before the first instance arrives,
        and remove blobs staged by a gateway that was killed before their batch was durable (an hour
        old at least: another listener on the same store may be staging right now)."""
        sweep = getattr(self._store(), "sweep_temp", None)
        if sweep is not None:
            swept = sweep(older_than=3600)
            if swept:
                log.info("removed %d staged blob(s) left by an interrupted gateway", swept)
        if self.workers > 1:
            pool = self._process_pool()
            for fut in [pool.submit(_ping) for _ in range(self.workers)]:
                fut.result()
        else:
            self._context()
        self._warm_catalog()

    def _warm_catalog(self) -> None:
        """Open the batch writer (the ORM configured, the site's row read) and prepare the look-up of
        filed instances before the first batch, which otherwise paid ~50 ms for them. A catalog that
        does not answer now is retried at the first batch, as before."""
        with self._write_lock:
            try:
                if self._session is None:
                    self._session, self._writer = self._open_writer()
                self._session.execute(_filed_look_up([""], [""])).all()
                self._session.commit()
            except Exception as exc:
                log.warning("the catalog could not be prepared yet: %s", safe_reason(exc))
                self._drop_session()

    def warm_thread(self) -> None:
        """Build this thread's de-identifier and store (each receiving thread has its own) before
        its first instance; nothing to do where worker processes de-identify."""
        if self.workers <= 1:
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
        faults.point("gateway.before_commit")  # blobs durable (named by their receivers), rows not
        for attempt in range(5):
            try:
                if self._session is None:
                    self._session, self._writer = self._open_writer()
                assert self._writer is not None
                self._file_batch(self._session, self._writer, jobs)
                self._session.commit()
                faults.point("gateway.after_commit")
                # the blobs of instances refused as duplicates were named before the batch could
                # tell: removed now that the refusal is durable (never raises)
                drop_refused_blobs(self._session, self._store(), [job.outcome for job in jobs])
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
                    o = job.outcome
                    if o.fields and (o.status == "present" or o.reason == DUPLICATE_UID_REASON):
                        o.status, o.reason = "ingested", None  # decided again against what is filed now
                time.sleep(0.05 * (attempt + 1))
            except Exception as exc:  # database trouble: nobody in this batch is acknowledged
                log.exception("catalog commit failed for %d instance(s)", len(jobs))
                self._drop_session()
                for job in jobs:
                    job.error = exc
                break
        for job in jobs:
            job.done.set()

    def _make_durable(self, made: list[tuple[IngestOutcome, Staged]], *, synced: bool = True) -> None:
        """Rename the staged blobs of these outcomes into place and fsync their folders (``synced=False``:
        flush the unflushed batch first, see ``LocalStore.commit_staged``),
        each folder once; a blob that was stored already has its folder fsynced too (another thread
        or listener may have named it a moment ago, its folder not flushed yet). Remote stores wrote
        durably on ``put``. On failure every staged blob is discarded and the error raised."""
        if not made:
            return
        faults.point("gateway.before_durable")
        store = self._store()
        if not hasattr(store, "commit_staged"):
            return
        staged = [blob for _, blobs in made for blob in blobs]
        named = {digest for digest, _tmp in staged}
        stored = [
            d
            for outcome, _ in made
            for d in [outcome.blob_digest, *(c.blob_digest for c in outcome.children)]
            if d and d not in named
        ]
        try:
            if synced:
                store.commit_staged(staged, also=stored)
            else:  # staged without their flush: the batch is flushed at once
                store.commit_staged(staged, also=stored, synced=False)
        except Exception:
            _discard(staged)
            log.error("a received blob could not be made durable")
            raise

    @property
    def store(self) -> Any:
        """The workspace's blob store, as this receiver writes to it."""
        return self._store()

    def _store(self) -> Any:
        if self._blob_store is None:
            self._blob_store = self.ws.store
        return self._blob_store

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

    def _file_batch(self, session: Session, writer: CatalogWriter, jobs: list[_Job]) -> None:
        """File a batch in the caller's transaction with a handful of statements, not a few per
        instance: one look-up of the SOP Instance UIDs, blobs, provenance keys and source keys already
        filed, then one multi-row INSERT each. Series, studies and patients come from the writer's
        cache (a look-up per new series only); slides and quarantined inputs take the writer's path."""
        plain: list[_Job] = []
        for job in jobs:
            outcome = job.outcome
            if outcome.status == "quarantined":
                writer.quarantine(outcome)
            elif outcome.status == "ingested" and outcome.children:
                outcome.status = writer.file(outcome)
            elif outcome.status == "ingested":
                plain.append(job)
        if plain:
            self._file_plain(session, writer, plain)
        rows: dict[str, dict[str, Any]] = {}
        for job in jobs:
            if job.source_key and job.source_key not in rows:
                rows[job.source_key] = {
                    "source_key": job.source_key,
                    "sop_instance_uid": job.outcome.sop_instance_uid,
                    "peer": job.peer,
                }
        _insert_new(session, _table(GatewayReceived), "source_key", rows)

    @staticmethod
    def _file_plain(session: Session, writer: CatalogWriter, jobs: list[_Job]) -> None:
        """Core statements (no ORM unit of work per row): one look-up of what is filed already (by
        de-identified SOP Instance UID, or by the sha256 of the input: a re-send), one for the blobs,
        then one multi-row INSERT per table."""
        uids = [j.outcome.fields["instance"]["sop_instance_uid"] for j in jobs]
        inputs = [j.outcome.input_digest for j in jobs if j.outcome.input_digest]
        filed: dict[str, tuple[str, str | None]] = {}  # SOP Instance UID -> its blob, transfer syntax
        by_input: dict[str, str] = {}
        for uid, source, blob, syntax in session.execute(_filed_look_up(uids, inputs)):
            filed[uid] = (blob, syntax)
            if source:
                by_input[source] = uid
        fresh: list[tuple[_Job, Series]] = []
        for job in jobs:
            o = job.outcome
            uid = o.fields["instance"]["sop_instance_uid"]
            known = by_input.get(o.input_digest or "")
            if known is not None:  # these exact bytes were filed before (a re-send)
                o.status, o.sop_instance_uid = "present", known
                continue
            if uid in filed:
                if conflicts_with(*filed[uid], o):  # another instance under a filed UID: refused
                    o.status, o.reason = "quarantined", DUPLICATE_UID_REASON
                    writer.quarantine(o)
                else:  # the same de-identified instance filed already (or twice in this batch)
                    o.status = "present"
                continue
            filed[uid] = (str(o.blob_digest), o.fields["instance"].get("transfer_syntax"))
            if o.input_digest:
                by_input[o.input_digest] = uid
            fresh.append((job, writer.series_for(o.fields)))
        if not fresh:
            return
        if session.new or session.dirty:
            session.flush()  # new series (and their study, patient) get their ids
        blob_rows: dict[str, dict[str, Any]] = {}
        instance_rows: list[dict[str, Any]] = []
        prov_rows: dict[str, dict[str, Any]] = {}
        per_series: Counter[int] = Counter()
        for job, series in fresh:
            o = job.outcome
            digest = str(o.blob_digest)
            if digest not in blob_rows:
                blob_rows[digest] = {"digest": digest, "size": o.size}
            instance_rows.append(
                {
                    "series_id": series.id,
                    "blob_digest": digest,
                    "source_digest": o.input_digest,
                    **o.fields["instance"],
                }
            )
            per_series[series.id] += 1
            rec = o.deid_record
            if rec is not None:
                params: dict[str, Any] = {k: rec.get(k) for k in ("profile", "options") if k in rec}
                version = str(rec.get("code_version") or "") or code_version()
                key = cache_key("deid", [o.input_digest or ""], params, version)
                prov_rows[key] = {
                    "key": key,
                    "step": "deid",
                    "inputs": [o.input_digest or ""],
                    "parameters": params,
                    "code_version": version,
                    "output": {"blob": digest, "record": rec},
                }
        _insert_new(session, _table(Blob), "digest", blob_rows)  # a blob may be filed already
        columns = {k for row in instance_rows for k in row}
        session.execute(insert(_table(Instance)), [{k: row.get(k) for k in columns} for row in instance_rows])
        for _job, series in fresh:  # counted in SQL (other listeners count too): reload when read
            session.expire(series, ["instance_count"])
        table = _table(Series)
        for series_id, n in per_series.items():
            session.execute(
                update(table).where(table.c.id == series_id).values(instance_count=table.c.instance_count + n)
            )
        _insert_new(session, _table(Provenance), "key", prov_rows)


def _filed_look_up(uids: list[str], inputs: list[str]) -> Any:
    """The instances filed already among these de-identified SOP Instance UIDs or input digests (one
    statement per batch; the warm-up runs it once so the first batch finds it compiled)."""
    cond: ColumnElement[bool] = Instance.sop_instance_uid.in_(uids)
    if inputs:
        cond = or_(cond, Instance.source_digest.in_(inputs))
    return select(
        Instance.sop_instance_uid, Instance.source_digest, Instance.blob_digest, Instance.transfer_syntax
    ).where(cond)


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


def _insert_new(session: Session, table: Table, key: str, rows: dict[str, dict[str, Any]]) -> None:
    """INSERT ``rows`` (keyed by their unique ``key`` column) in one statement, skipping those filed
    already: ``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL, a look-up first elsewhere."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        session.execute(
            sqlite.insert(table).on_conflict_do_nothing(index_elements=[key]), list(rows.values())
        )
    elif dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        session.execute(
            postgresql.insert(table).on_conflict_do_nothing(index_elements=[key]), list(rows.values())
        )
    else:
        column = table.c[key]
        have = set(session.scalars(select(column).where(column.in_(list(rows)))))
        fresh = [row for k, row in rows.items() if k not in have]
        if fresh:
            session.execute(insert(table), fresh)
