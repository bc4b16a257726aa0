"""The gateway with dcmtk as its DICOM front end: a durable spool drained by de-identification workers.

Why (issue 10, item 10): one Python process cannot carry the DICOM network layer at a PACS's rate:
pynetdicom alone (answering success and keeping nothing) ran below Orthanc, before any
de-identification. ``curata-spool-scp`` (``spoolscp/spoolscp.cc``, built on dcmtk's association and
DIMSE layers, one process per association) receives each instance, writes it with its Part-10 header
into ``.curata/spool/ready`` (mode 0600, inside the site-private folder that also holds the key),
fsyncs the file, its new name and the folder, and only then answers success. The network thus runs
at C speed on every core, and the sender's success still means "durable at the site", as with the
Python front end and Orthanc.

This process reads the front end's event lines and hands each spooled file to
:class:`~curata.collect.net.receive.Receiver` (the same de-identification, blob store, catalog and
source-UID record as every other network input; several threads, de-identifying in a process pool).
A spooled file is removed only once its outcome is filed. A refused instance is quarantined with its
reason (its bytes kept in the workspace's quarantine, as for a folder ingest), since the sender was
already answered. Files left by a gateway that stopped or crashed are drained at the next start, in
arrival order; one filed already is recognised as present, never filed twice.

The front end takes the same ``[gateway]`` settings: AE title, called-AE check, allow list (AE and
host), allowed networks (checked at accept, before anything is read), connection and association
limits (the per-peer limit counts per host address), request and DIMSE timeouts, largest association
request and data set. dcmtk receives PDUs of at most 128 KiB, so a larger ``max_pdu`` is clamped.
DICOM TLS is served by the Python front end only.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from curata.collect.ingest import DISK_FULL_REASON, IngestOutcome
from curata.collect.net.config import GatewayConfig
from curata.collect.net.receive import OK_STATUSES, Receiver, ScratchFiles
from curata.collect.net.scp import TRANSFER_SYNTAXES, Serving, StoreCounts
from curata.collect.reasons import safe_reason
from curata.errors import ConfigError, NetworkError
from curata.workspace import Workspace

log = logging.getLogger("curata.gateway")

BINARY = "curata-spool-scp"
SOURCE = Path(__file__).with_name("spoolscp") / "spoolscp.cc"
_RETRY_SECONDS = 2.0
_RESCAN_SECONDS = 30.0
_BATCH = 16  # spooled instances a drain thread de-identifies before one commit files them all
_LINGER_SECONDS = 0.05  # how long a drain thread waits for more of them


def find_binary() -> Path | None:
    """The front end: ``$CURATA_SPOOL_SCP``, else beside this Python (the venv's bin, where
    ``scripts/build-native.sh`` puts it), else on PATH."""
    explicit = os.environ.get("CURATA_SPOOL_SCP")
    if explicit:
        return Path(explicit) if os.access(explicit, os.X_OK) else None
    beside = Path(sys.executable).parent / BINARY
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which(BINARY)
    return Path(found) if found else None


def build_binary(target: Path) -> Path:
    """Compile the front end from its source (needs g++ and dcmtk's headers: Debian libdcmtk-dev)."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise NetworkError("no C++ compiler to build the dcmtk gateway front end", hint="apt install g++")
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    cmd = [compiler, "-O2", "-std=c++17", "-o", str(tmp), str(SOURCE)]
    cmd += ["-ldcmnet", "-ldcmdata", "-loflog", "-lofstd"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise NetworkError(
            "the dcmtk gateway front end did not build: " + done.stderr.strip()[-300:],
            hint="install dcmtk's headers (apt install libdcmtk-dev)",
        )
    os.replace(tmp, target)
    return target


def ensure_binary() -> Path:
    """The front end beside this Python, built from its source when missing or older than it
    (``scripts/bootstrap.sh`` runs this once per install)."""
    target = Path(sys.executable).parent / BINARY
    if not target.exists() or target.stat().st_mtime < SOURCE.stat().st_mtime:
        build_binary(target)
    return target


def front_end_config(cfg: GatewayConfig) -> str:
    """The settings file ``curata-spool-scp`` reads (see the top of spoolscp.cc)."""
    from pynetdicom.presentation import AllStoragePresentationContexts

    lines = [
        f"ae {cfg.ae_title}",
        f"check_called {int(cfg.check_called_ae)}",
        f"max_pdu {cfg.max_pdu}",
        f"request_timeout {max(1, round(cfg.request_timeout))}",
        f"dimse_timeout {max(1, round(cfg.dimse_timeout))}",
        f"max_request_bytes {cfg.max_request_bytes}",
        f"max_connections {cfg.max_connections}",
        f"max_connections_per_host {cfg.max_connections_per_host}",
        f"max_associations {cfg.max_associations}",
        f"max_associations_per_peer {cfg.max_associations_per_peer}",
        f"max_object_bytes {cfg.max_object_bytes}",
    ]
    lines += [f"allow {r.ae_title}\t{r.host}" if r.host else f"allow {r.ae_title}" for r in cfg.allow]
    lines += [f"net {net}" for net in cfg.host_networks()]
    lines += [f"ts {ts}" for ts in TRANSFER_SYNTAXES]
    lines += [f"sop {cx.abstract_syntax}" for cx in AllStoragePresentationContexts]
    return "\n".join(lines) + "\n"


def _peer_from_name(name: str) -> str:
    """The calling AE title kept, in hex, in a spooled file's name."""
    parts = name.split(".")
    try:
        return bytes.fromhex(parts[1]).decode("ascii", "replace") if len(parts) == 3 else ""
    except ValueError:
        return ""


class _Drain:
    """Files spooled instances through a :class:`Receiver` (in the gateway, or in a drain process)."""

    def __init__(self, receiver: Receiver, spool: Path, stopping: threading.Event):
        self.receiver = receiver
        self.spool = spool
        self.stopping = stopping
        # a filed instance's spool file is kept for the next blob to be written over
        free = spool / "free"
        free.mkdir(mode=0o700, exist_ok=True)
        self.scratch = ScratchFiles(free) if ScratchFiles.usable(free, receiver.store) else None

    def file(self, path: Path, peer: str, source_uid: str | None) -> list[str]:
        """File one spooled instance; returns the counts to add (``stored``, ``present``, ``refused``,
        ``dropped``, ``errors``). The file is removed once its outcome is filed; it stays spooled while
        the disk or the catalog fails (retried; left for the next start once stopping)."""
        counts: list[str] = []
        while True:
            try:
                uid = source_uid or _source_uid(path)
                outcome = self.receiver.receive_file(
                    path, source=f"c-store from {peer}", source_uid=uid, peer=peer
                )
            except FileNotFoundError:
                return counts  # filed and removed already
            except Exception as exc:  # disk, database or a bug: the file stays spooled; try again
                counts.append("errors")
                log.error("a spooled instance could not be filed yet: %s", safe_reason(exc))
                if self.stopping.is_set():
                    return counts  # drained at the next start
                time.sleep(_RETRY_SECONDS)
                continue
            if outcome.status == "failed" and outcome.reason == DISK_FULL_REASON:
                counts.append("errors")
                log.error("no space left to file a spooled instance; retrying")
                if self.stopping.is_set():
                    return counts
                time.sleep(_RETRY_SECONDS)
                continue
            return counts + self._settle(path, peer, outcome)

    def file_batch(self, items: list[tuple[Path, str, str | None]]) -> list[list[str]]:
        """:meth:`file` for several instances, de-identified one after the other and filed in one
        commit; one that fails goes through :meth:`file` on its own (with its retries)."""
        try:
            batch = [
                (path, f"c-store from {peer}", uid or _source_uid(path), peer) for path, peer, uid in items
            ]
        except FileNotFoundError:
            return [self.file(*item) for item in items]
        results = self.receiver.receive_files(batch, self.scratch)
        out: list[list[str]] = []
        for (path, peer, uid), result in zip(items, results, strict=True):
            if isinstance(result, FileNotFoundError):
                out.append([])
            elif isinstance(result, BaseException) or (
                result.status == "failed" and result.reason == DISK_FULL_REASON
            ):
                out.append(self.file(path, peer, uid))
            else:
                out.append(self._settle(path, peer, result))
        return out

    def _settle(self, path: Path, peer: str, outcome: IngestOutcome) -> list[str]:
        """What becomes of a spooled file once its outcome is known."""
        if outcome.status in OK_STATUSES:
            counts = ["stored" if outcome.status == "ingested" else "present"]
        elif outcome.status == "skipped" and outcome.input_digest:
            counts = ["dropped"]
        elif outcome.status == "failed":  # neither filed nor quarantined: keep it aside, never lose it
            kept = self.spool / "failed"
            kept.mkdir(mode=0o700, exist_ok=True)
            log.error("spooled instance from %s kept in %s: %s", peer, kept, outcome.reason)
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, kept / path.name)
            return ["errors"]
        else:
            counts = ["refused"]
            log.warning("spooled instance from %s refused: %s", peer, outcome.reason)
        if self.scratch is not None:
            self.scratch.give(path)  # out of the spool either way
        else:
            path.unlink(missing_ok=True)
        return counts

    def close(self) -> None:
        """Remove the kept spool files (they hold instances as received)."""
        if self.scratch is not None:
            self.scratch.clear()


def _take(first: Any, get: Any, limit: int, linger: float = _LINGER_SECONDS) -> tuple[list[Any], bool]:
    """``first`` and up to ``limit - 1`` more items, waiting at most ``linger`` seconds in all for them
    (``get(timeout=...)`` raises queue.Empty when none came): the sender was answered when its instance
    reached the spool, so a drain thread may wait a moment to file many instances in one commit.
    ``(items, ended)``: ended when an end mark (None) was among them."""
    items, ended = [first], False
    deadline = time.monotonic() + linger
    while len(items) < limit:
        try:
            item = get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if item is None:
            ended = True
            break
        items.append(item)
    return items, ended


def _warm_thread(receiver: Receiver) -> None:
    """This drain thread's de-identifier, built before the first instance rather than at it."""
    try:
        receiver.warm_thread()
    except Exception as exc:  # built again at its first instance, where a failure is counted
        log.error("a drain thread could not prepare its de-identifier: %s", safe_reason(exc))


def _drain_process(root: str, deidentify: bool, threads: int, inbox: Any, outbox: Any) -> None:
    """A drain process: ``threads`` threads filing what ``inbox`` names, each de-identifying in this
    process (no pickling of instances), rows group-committed per process; results go to ``outbox``."""
    from curata.console import guard_library_output
    from curata.runtime import die_with_parent

    die_with_parent()
    guard_library_output()  # this process reads the instances: the parsers' warnings quote them
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the gateway decides
    ws = Workspace.open(Path(root))
    receiver = Receiver(ws, deidentify=deidentify, workers=1)
    receiver.warm_up()
    drain = _Drain(receiver, ws.root / ".curata" / "spool", threading.Event())
    warm = threading.Barrier(threads + 1)

    def work() -> None:
        _warm_thread(receiver)
        warm.wait()
        ended = False
        while not ended and (first := inbox.get()) is not None:
            items, ended = _take(first, inbox.get, _BATCH)
            for name, counts in _file_items(drain, items):
                outbox.put((name, counts, ""))
        drain.stopping.set()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    warm.wait()
    # what is built by now (modules, the data dictionary, the de-identifiers: ~137,000 objects) lives
    # as long as the process: out of the collector's sight, a full collection no longer walks it
    # (71 to 90 ms each, about once per 400 CT slices, measured with gc.callbacks)
    gc.collect()
    gc.freeze()
    outbox.put(("ready", [], ""))
    for t in pool:
        t.join()
    drain.close()
    receiver.close()


def _file_items(drain: _Drain, items: list[tuple[str, str, str | None]]) -> list[tuple[str, list[str]]]:
    """File a batch taken from the queue; ``(spool name, counts)`` for each."""
    paths = [(Path(path), peer, uid) for path, peer, uid in items]
    try:
        results = drain.file_batch(paths)
    except Exception as exc:  # a bug: counted, the files stay spooled for the next start
        log.error("spooled instances could not be filed: %s", safe_reason(exc))
        results = [["errors"] for _ in paths]
    return [(path.name, counts) for (path, _, _), counts in zip(paths, results, strict=True)]


class SpoolGateway(Serving):
    """``curata gateway serve`` with the dcmtk front end; the same surface as :class:`GatewayServer`
    where the CLI needs it: ``start``/``stop``/``serve_forever``, ``port``, ``counts``.

    With one worker (``workers = 1``) the drain runs in this process; with more, it runs in that many
    drain processes, each de-identifying in its own threads and committing its own rows (like
    ``--processes`` for the Python front end: cheaper than a pool that pickles every instance)."""

    def __init__(
        self,
        ws: Workspace,
        config: GatewayConfig | None = None,
        *,
        deidentify: bool = True,
        drainers: int = 2,
    ) -> None:
        self.ws = ws
        self.config = config or GatewayConfig.from_workspace(ws)
        if self.config.dicom_tls:
            raise ConfigError(
                "[gateway] dicom_tls needs the Python front end",
                hint='set [gateway] front_end = "python", or turn dicom_tls off',
            )
        self.deidentify = deidentify
        self.processes = self.config.worker_count()
        self.receiver = Receiver(ws, deidentify=deidentify, workers=1) if self.processes == 1 else None
        self.counts = StoreCounts()
        self.spool = ws.root / ".curata" / "spool"
        self._drainers = max(1, drainers)  # threads per drain process (their fsyncs overlap)
        self._queue: queue.Queue[tuple[str, str, str | None] | None] = queue.Queue()
        self._mp: Any = None
        self._inbox: Any = None
        self._outbox: Any = None
        self._children: list[Any] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._drain: _Drain | None = None  # the drain in this process (workers = 1)
        self._threads: list[threading.Thread] = []  # the drain's (or the drain processes' results)
        self._io_threads: list[threading.Thread] = []  # the front end's events, the rescan
        self._port: int | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._pending: set[str] = set()  # spool names queued or being filed
        self.rescan_seconds = _RESCAN_SECONDS
        self.stop_timeout = 120.0  # seconds stop() waits for the spool to drain

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port if self._port is not None else self.config.port

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self) -> SpoolGateway:
        if self._proc is not None:
            return self
        binary = find_binary()
        if binary is None:
            raise NetworkError(
                f"the dcmtk gateway front end ({BINARY}) is not installed",
                hint='run scripts/bootstrap.sh, or set [gateway] front_end = "python"',
            )
        ready = self.spool / "ready"
        for folder in (self.spool, self.spool / "tmp", ready):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for partial in (self.spool / "tmp").iterdir():  # never acknowledged: the sender still has it
            partial.unlink(missing_ok=True)
        ScratchFiles.clear_folder(self.spool / "free")  # filed already, kept by a drain that was killed
        self._stopping.clear()
        self._start_drain()
        leftovers = sorted(p for p in ready.iterdir() if p.suffix == ".dcm")
        if leftovers:
            log.info("draining %d instance(s) spooled before the last stop", len(leftovers))
        for path in leftovers:
            self._enqueue(path, _peer_from_name(path.name), None)
        conf = self.spool / "scp.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(front_end_config(self.config))
        cmd = [str(binary), "--config", str(conf), "--spool", str(self.spool)]
        cmd += ["--bind", self.config.bind, "--port", str(self.config.port)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        assert proc.stdout is not None
        first = proc.stdout.readline().decode("ascii", "replace").rstrip("\n").split("\t")
        if first[0] != "listening" or len(first) != 2:
            proc.wait(10)
            err = (proc.stderr.read() if proc.stderr else b"").decode("utf-8", "replace").strip()
            self._stop_drain()
            raise NetworkError(
                f"cannot listen on {self.config.bind}:{self.config.port}: {err[-200:] or 'front end failed'}",
                hint="pick another --port, or stop what is using it",
            )
        self._port = int(first[1])
        self._proc = proc
        self._io_threads = [
            threading.Thread(
                target=self._read_events, args=(proc.stdout,), name="gateway-events", daemon=True
            ),
            threading.Thread(target=self._rescan, name="gateway-rescan", daemon=True),
        ]
        for thread in self._io_threads:
            thread.start()
        log.info(
            "gateway %s (dcmtk front end) listening on %s:%s",
            self.config.ae_title,
            self.config.bind,
            self.port,
        )
        return self

    def stop(self) -> None:
        """Stop accepting, let associations in flight end, file everything spooled, stop the drain."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:  # an association that would not end: the whole group goes
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._stop_drain()

    def wait_idle(self, timeout: float = 60) -> bool:
        """Block until every instance spooled so far is filed (tests, benchmarks): nothing queued or
        being filed, and nothing left in the spool (a file leaves it once filed)."""
        ready = self.spool / "ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = bool(self._pending)
            if not busy and not any(p.suffix == ".dcm" for p in ready.iterdir()):
                return True
            time.sleep(0.01)
        return False

    # -- the drain -----------------------------------------------------------------------------
    def _start_drain(self) -> None:
        if self.receiver is not None:
            self.receiver.warm_up()
            self._drain = drain = _Drain(self.receiver, self.spool, self._stopping)
            self._threads = [
                threading.Thread(
                    target=self._drain_here, args=(drain,), name=f"gateway-drain-{i}", daemon=True
                )
                for i in range(self._drainers)
            ]
        else:
            import multiprocessing

            self._mp = multiprocessing.get_context("spawn")  # this process runs threads: never fork
            self._inbox, self._outbox = self._mp.Queue(), self._mp.Queue()
            args = (str(self.ws.root), self.deidentify, self._drainers, self._inbox, self._outbox)
            self._children = [
                self._mp.Process(target=_drain_process, args=args) for _ in range(self.processes)
            ]
            for child in self._children:
                child.start()
            for _ in self._children:  # each has built its de-identifier: the first instance does not wait
                self._outbox.get(timeout=300)
            self._threads = [threading.Thread(target=self._collect, name="gateway-results", daemon=True)]
        for thread in self._threads:
            thread.start()

    def _stop_drain(self) -> None:
        if self._io_threads:
            self._io_threads[0].join(10)  # the event reader ends with the front end's stdout
        if not self.wait_idle(self.stop_timeout):
            log.error("stopping with spooled instances not filed yet: they are filed at the next start")
        self._stopping.set()
        if self._children:
            for _ in range(len(self._children) * self._drainers):  # one end mark per drain thread
                self._inbox.put(None)
            for child in self._children:
                child.join(60)
                if child.is_alive():
                    child.kill()
            self._outbox.put(None)
            self._children = []
        else:
            for _ in range(self._drainers):
                self._queue.put(None)
        for thread in [*self._threads, *self._io_threads]:
            thread.join(60)
        self._threads, self._io_threads = [], []
        if self._drain is not None:
            self._drain.close()
            self._drain = None
        if self.receiver is not None:
            self.receiver.close()
        ScratchFiles.clear_folder(self.spool / "free")

    def _drain_here(self, drain: _Drain) -> None:
        _warm_thread(drain.receiver)
        ended = False
        while not ended and (first := self._queue.get()) is not None:
            items, ended = _take(first, self._queue.get, _BATCH)
            for name, counts in _file_items(drain, items):
                self._done(name, counts)

    def _collect(self) -> None:
        while (result := self._outbox.get()) is not None:
            name, counts, _ = result
            self._done(name, counts)

    def _done(self, name: str, counts: list[str]) -> None:
        for key in counts:
            self.counts.add(key)
        with self._lock:
            self._pending.discard(name)

    # -- events --------------------------------------------------------------------------------
    def _read_events(self, stream: IO[bytes]) -> None:
        ready = self.spool / "ready"
        for line in stream:
            # stored FILE AE UID | refused REASON AE HOST | dropped REASON HOST | failed REASON
            kind, a, b, c = [*line.decode("ascii", "replace").rstrip("\n").split("\t"), "", "", ""][:4]
            if kind == "stored":
                if not a or "/" in a or a.startswith("."):  # never a path outside the spool
                    continue
                self._enqueue(ready / a, b, c or None)
            elif kind == "refused":
                self.counts.add("rejected_associations")
                log.warning("rejected association from %s@%s: %s", b, c, a)
            elif kind == "dropped":
                self.counts.add("dropped_connections")
                log.warning("dropped a connection from %s: %s", b, a)
            elif kind == "failed":
                self.counts.add("errors")
                log.error("the front end could not keep an instance: %s", a)

    def _enqueue(self, path: Path, peer: str, source_uid: str | None) -> None:
        with self._lock:
            if path.name in self._pending:
                return
            self._pending.add(path.name)
        item = (str(path), peer, source_uid)
        if self._children:
            self._inbox.put(item)
        else:
            self._queue.put(item)

    def _rescan(self) -> None:
        """Queue spooled files whose event line never came (an association's process killed between
        its answer and its line): answered, so they must be filed now, not at the next start."""
        ready = self.spool / "ready"
        while not self._stopping.wait(self.rescan_seconds):
            cutoff = time.time() - self.rescan_seconds
            try:
                names = [p for p in ready.iterdir() if p.suffix == ".dcm" and p.stat().st_mtime < cutoff]
            except OSError:
                continue
            for path in sorted(names):
                self._enqueue(path, _peer_from_name(path.name), None)


def _source_uid(path: Path) -> str | None:
    """The SOP Instance UID in a spooled file's meta header (files drained after a restart)."""
    from pydicom import dcmread

    try:
        meta = dcmread(path, stop_before_pixels=True, specific_tags=[(0x0002, 0x0003)]).file_meta
        return str(meta.get("MediaStorageSOPInstanceUID", "")) or None
    except FileNotFoundError:
        raise
    except Exception:
        return None
