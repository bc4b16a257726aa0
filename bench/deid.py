"""De-identification benchmark: one planted corpus through Curata and the real peers, side by side.

    .venv/bin/python bench/deid.py [--files N] [--full-ct] [--tools a,b,...] [--out bench/results/deid.json]

Every tool gets the same files (real pydicom-data objects dressed by ``curata.demo.phi`` with planted
identifiers in every place they hide) and is asked to do its documented default anonymization. Per tool:
files/s and MB/s in one process, then on all cores where the tool allows; surviving planted identifiers
(every output's raw bytes and its parsed elements); new ``dciodvfy`` errors (on the output, not on its
input); broken references; lost date intervals between a patient's two studies; lost geometry and
changed pixels. Ratios are relative to Curata. ``--full-ct`` adds a 512x512x200 CT series (100 MB)
compared with a plain file copy, the disk-bound floor.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pydicom

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import console, cores, free_port, print_ratio_table, rate, timed, write_json  # noqa: E402
from curata.demo.phi import Hit, Identity, PlantedSet, make_planted_corpus, plant_identifiers  # noqa: E402

# This file is named deid.py, like the peer package `deid`: take our folder off the path so
# `import deid` finds the real one.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
warnings.filterwarnings("ignore")


class Skip(Exception):
    """A tool cannot run here; the message says why."""


@dataclass
class Item:
    index: int
    path: Path
    planted: PlantedSet
    size: int


@dataclass
class RunResult:
    seconds: float
    outputs: dict[int, Path] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


# ----- tools ------------------------------------------------------------------------------------


class Tool:
    name = ""
    asked = ""
    parallel = True  # whether an all-cores run makes sense

    def setup(self, work: Path) -> None:
        """Raise Skip with the reason when the tool cannot run."""

    def run(self, items: list[Item], out_dir: Path, workers: int) -> RunResult:
        raise NotImplementedError

    def teardown(self) -> None:
        pass


class PyTool(Tool):
    """A Python library called file by file; all cores = a process pool, one tool instance per process."""

    def processor(self) -> Callable[[Path, Path], None]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {}

    def run(self, items: list[Item], out_dir: Path, workers: int) -> RunResult:
        out_dir.mkdir(parents=True, exist_ok=True)
        jobs = [(it.index, str(it.path), str(out_dir / f"{it.index:05d}.dcm")) for it in items]
        if workers <= 1:
            _worker_init(type(self).__name__, self.config())
            with timed() as t:
                errors = _worker_run(jobs)
        else:
            chunks = [jobs[k::workers] for k in range(workers)]
            with ProcessPoolExecutor(
                workers, initializer=_worker_init, initargs=(type(self).__name__, self.config())
            ) as pool:
                list(pool.map(_noop, range(workers)))  # start the workers before the clock
                with timed() as t:
                    errors = {}
                    for part in pool.map(_worker_run, chunks):
                        errors.update(part)
        outputs = {i: Path(o) for i, _, o in jobs if i not in errors and Path(o).exists()}
        return RunResult(t["seconds"], outputs, errors)


_PROCESSOR: Callable[[Path, Path], None] | None = None


def _noop(_: int) -> None:
    time.sleep(0.05)


def _worker_init(tool_class: str, config: dict[str, Any]) -> None:
    global _PROCESSOR
    tool = TOOL_CLASSES[tool_class]()
    for key, value in config.items():
        setattr(tool, key, value)
    _PROCESSOR = tool.processor()


def _worker_run(jobs: list[tuple[int, str, str]]) -> dict[int, str]:
    assert _PROCESSOR is not None
    errors = {}
    for index, src, dst in jobs:
        try:
            _PROCESSOR(Path(src), Path(dst))
        except Exception as exc:
            errors[index] = f"{type(exc).__name__}: {exc}"[:300]
    return errors


class Copy(PyTool):
    name = "file copy"
    asked = "shutil.copyfile: the disk-bound floor"

    def processor(self) -> Callable[[Path, Path], None]:
        return lambda src, dst: shutil.copyfile(src, dst)


class PydicomRoundTrip(PyTool):
    name = "pydicom read+write"
    asked = "dcmread + save_as, no change: the parse/serialise floor"

    def processor(self) -> Callable[[Path, Path], None]:
        def run(src: Path, dst: Path) -> None:
            pydicom.dcmread(src).save_as(dst)

        return run


class CurataApi(PyTool):
    name = "curata"
    asked = 'Deidentifier(key, load_profile("research")).deidentify_bytes(raw) per file'
    key_hex = ""

    def setup(self, work: Path) -> None:
        try:
            from curata.collect.deid import Deidentifier, load_profile  # noqa: F401
        except Exception as exc:
            raise Skip(f"the engine is not importable yet: {type(exc).__name__}: {exc}") from exc
        self.key_hex = hashlib.sha256(b"curata-bench-site-key").hexdigest()

    def config(self) -> dict[str, Any]:
        return {"key_hex": self.key_hex}

    def processor(self) -> Callable[[Path, Path], None]:
        from curata.collect.deid import Deidentifier, load_profile

        engine = Deidentifier(key=bytes.fromhex(self.key_hex), profile=load_profile("research"))

        def run(src: Path, dst: Path) -> None:
            result = engine.deidentify_bytes(src.read_bytes())
            data = getattr(result, "output_bytes", None)
            if not data:
                reason = getattr(result, "reason", None) or getattr(result, "quarantine_reason", None)
                raise RuntimeError(f"quarantined: {reason}")
            dst.write_bytes(data)

        return run


class Dicognito(PyTool):
    name = "dicognito"
    asked = "Anonymizer().anonymize(ds) defaults (as its CLI), one fixed seed so workers agree"

    def setup(self, work: Path) -> None:
        try:
            import dicognito  # noqa: F401
        except ImportError as exc:
            raise Skip(f"dicognito not installed: {exc}") from exc

    def processor(self) -> Callable[[Path, Path], None]:
        from dicognito.anonymizer import Anonymizer

        anonymizer = Anonymizer(seed="curata-bench")

        def run(src: Path, dst: Path) -> None:
            ds = pydicom.dcmread(src)
            anonymizer.anonymize(ds)
            ds.save_as(dst)

        return run


class Deid(PyTool):
    name = "deid"
    asked = "deid.dicom.replace_identifiers(files) with its default 'dicom' recipe"

    def setup(self, work: Path) -> None:
        try:
            import deid.dicom  # noqa: F401
        except ImportError as exc:
            raise Skip(f"deid not installed: {exc}") from exc

    def processor(self) -> Callable[[Path, Path], None]:
        import logging

        from deid.dicom import replace_identifiers
        from deid.logger import bot

        bot.level = 0  # its warnings go to stdout per file
        logging.getLogger("deid").setLevel(logging.ERROR)

        def run(src: Path, dst: Path) -> None:
            with open(os.devnull, "w") as devnull:
                saved, sys.stdout = sys.stdout, devnull
                try:
                    (ds,) = replace_identifiers(dicom_files=[str(src)], save=False)
                finally:
                    sys.stdout = saved
            ds.save_as(dst)

        return run


class DicomAnonymizer(PyTool):
    name = "dicom-anonymizer"
    asked = "anonymize_dicom_file(in, out): its default PS3.15 rules, private tags deleted"

    def setup(self, work: Path) -> None:
        try:
            import dicomanonymizer  # noqa: F401
        except ImportError as exc:
            raise Skip(f"dicom-anonymizer not installed: {exc}") from exc

    def processor(self) -> Callable[[Path, Path], None]:
        from dicomanonymizer.simpledicomanonymizer import anonymize_dicom_file

        return lambda src, dst: anonymize_dicom_file(str(src), str(dst))


class Gdcmanon(Tool):
    name = "gdcmanon"
    asked = (
        "gdcmanon -e -c CERT --continue -r -i IN -o OUT over the corpus folder, one process (its default: "
        "PS3.15 E.1 Basic Profile, originals encrypted to a certificate); a file it leaves without an "
        "output is tried again on its own, and that time counts too"
    )

    def setup(self, work: Path) -> None:
        exe = shutil.which("gdcmanon")
        if not exe:
            raise Skip("gdcmanon not found (Debian libgdcm-tools)")
        self.exe = exe
        self.cert = work / "gdcm-cert.pem"
        key = work / "gdcm-key.pem"
        proc = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(self.cert),
             "-days", "2", "-nodes", "-subj", "/CN=curata-bench"],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode:
            raise Skip(f"cannot make a certificate for gdcmanon -e: {proc.stderr[-200:]}")

    def _call(self, src: Path, dst: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.exe, "-e", "-c", str(self.cert), *extra, "-i", str(src), "-o", str(dst)],
            capture_output=True, text=True, errors="replace",
        )  # fmt: skip

    def run(self, items: list[Item], out_dir: Path, workers: int) -> RunResult:
        """Its directory mode, one process per core (the corpus split in as many folders); a file left
        without an output is tried again on its own."""
        parts = max(1, workers)
        staging = out_dir.with_name(out_dir.name + "-in")
        where: dict[int, tuple[Path, Path]] = {}
        for k, it in enumerate(items):
            src, dst = staging / f"part{k % parts}", out_dir / f"part{k % parts}"
            src.mkdir(parents=True, exist_ok=True)
            dst.mkdir(parents=True, exist_ok=True)
            os.link(it.path, src / f"{it.index:05d}.dcm")
            where[it.index] = (src / f"{it.index:05d}.dcm", dst / f"{it.index:05d}.dcm")
        result = RunResult(0.0)

        def one(it: Item) -> None:
            src, out = where[it.index]
            proc = self._call(src, out)
            if proc.returncode == 0 and out.exists():
                result.outputs[it.index] = out
            else:
                said = (proc.stdout + proc.stderr).strip().replace(str(staging), "<input>")
                result.errors[it.index] = f"exit {proc.returncode}: {said[-200:]}"

        with timed() as t, ThreadPoolExecutor(parts) as pool:
            folders = sorted({(src.parent, out.parent) for src, out in where.values()})
            list(pool.map(lambda f: self._call(f[0], f[1], "--continue", "-r"), folders))
            result.outputs.update({i: out for i, (_, out) in where.items() if out.is_file()})
            list(pool.map(one, [it for it in items if it.index not in result.outputs]))
        result.seconds = t["seconds"]
        return result


class Orthanc(Tool):
    name = "orthanc"
    asked = "POST /instances/{id}/anonymize with {} (its default Basic Profile), timed anonymize+download"

    def setup(self, work: Path) -> None:
        exe = shutil.which("Orthanc")
        if not exe:
            raise Skip("Orthanc not found (Debian orthanc)")
        import httpx

        self.port = free_port()
        root = work / "orthanc"
        (root / "db").mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "curata-bench",
            "StorageDirectory": str(root / "db"),
            "IndexDirectory": str(root / "db"),
            "HttpPort": self.port,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpServerEnabled": True,
            "DicomServerEnabled": False,
            "Plugins": [],
            "StorageCompression": False,
            "HttpThreadsCount": 16,
        }
        (root / "orthanc.json").write_text(json.dumps(config))
        self.log = open(root / "orthanc.log", "wb")  # noqa: SIM115 - closed in teardown
        self.proc = subprocess.Popen(
            [exe, str(root / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=120)
        for _ in range(200):
            try:
                if self.client.get("/system").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise Skip(f"Orthanc exited with {self.proc.returncode}; see {root / 'orthanc.log'}")
            time.sleep(0.05)
        else:
            raise Skip("Orthanc did not answer within 10 s")
        self.ids: dict[int, str] = {}
        self.upload_errors: dict[int, str] = {}

    def upload(self, items: list[Item]) -> None:
        for it in items:
            if it.index in self.ids:
                continue
            r = self.client.post("/instances", content=it.path.read_bytes())
            if r.status_code != 200:
                self.upload_errors[it.index] = f"upload HTTP {r.status_code}: {r.text[:200]}"
            else:
                self.ids[it.index] = r.json()["ID"]

    def run(self, items: list[Item], out_dir: Path, workers: int) -> RunResult:
        self.upload(items)  # not timed: only anonymize + download is
        out_dir.mkdir(parents=True, exist_ok=True)
        result = RunResult(
            0.0, errors={i: e for i, e in self.upload_errors.items() if i in {x.index for x in items}}
        )
        todo = [it for it in items if it.index in self.ids]
        lock = threading.Lock()
        import httpx

        def one(it: Item, client: httpx.Client) -> None:
            r = client.post(f"/instances/{self.ids[it.index]}/anonymize", json={})
            with lock:
                if r.status_code != 200:
                    result.errors[it.index] = f"anonymize HTTP {r.status_code}: {r.text[:200]}"
                    return
            out = out_dir / f"{it.index:05d}.dcm"
            out.write_bytes(r.content)
            with lock:
                result.outputs[it.index] = out

        with timed() as t:
            if workers <= 1:
                for it in todo:
                    one(it, self.client)
            else:
                clients = [httpx.Client(base_url=self.url, timeout=120) for _ in range(workers)]
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(lambda pair: one(pair[1], clients[pair[0] % workers]), enumerate(todo)))
        result.seconds = t["seconds"]
        return result

    def teardown(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if getattr(self, "log", None):
            self.log.close()


class CurataCli(Tool):
    name = "curata deid (CLI)"
    asked = "curata deid INPUT OUTPUT --key-file K (default profile research), whole command timed"
    parallel = False  # the command chooses its own parallelism
    cpu = 0.0  # CPU seconds of the last command (its processes)
    source: Path | None = None  # run curata from this src folder (PYTHONPATH) instead of the installed one

    def env(self) -> dict[str, str] | None:
        return None if self.source is None else {**os.environ, "PYTHONPATH": str(self.source)}

    def setup(self, work: Path) -> None:
        exe = VENV_BIN / "curata"
        if not exe.exists():
            raise Skip("the curata command is not installed in this environment")
        help_text = subprocess.run(
            [str(exe), "deid", "--help"], capture_output=True, text=True, env=self.env()
        )
        if help_text.returncode:
            raise Skip(
                f"`curata deid` not available yet: {(help_text.stderr or help_text.stdout)[-200:].strip()}"
            )
        from curata.collect.keys import generate_key_file

        self.exe = exe
        self.key = generate_key_file(work / "cli-site.key", overwrite=True)

    def run(self, items: list[Item], out_dir: Path, workers: int) -> RunResult:
        staging = out_dir.with_name(out_dir.name + "-in")
        for it in items:  # the corpus folders, patient names and IDs in the paths as exported
            dst = staging / it.path.relative_to(it.path.parents[2])
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(it.path, dst)
        with timed() as t:
            proc = subprocess.run(
                [str(self.exe), "deid", str(staging), str(out_dir), "--key-file", str(self.key)],
                capture_output=True, text=True, env=self.env(),
            )  # fmt: skip
        result = RunResult(t["seconds"])
        self.cpu = t["cpu"]  # the command's own CPU (it is the child waited for), not this mapping's
        by_sha = {hashlib.sha256(it.path.read_bytes()).hexdigest(): it.index for it in items}
        outputs = [p for p in out_dir.rglob("*") if p.is_file() and not p.name.endswith((".json", ".jsonl"))]
        mapped = _map_cli_outputs(out_dir, by_sha, outputs)
        result.outputs = mapped
        self.all_outputs = outputs
        self.exit_code = proc.returncode
        self.tail = (proc.stdout + proc.stderr)[-600:]
        for it in items:
            if it.index not in mapped:
                result.errors[it.index] = f"no output mapped (exit {proc.returncode})"
        shutil.rmtree(staging, ignore_errors=True)
        return result


class CurataCliBaseline(CurataCli):
    """The same command from another checkout's ``src`` (``--cli-baseline``): before and after in one run."""

    name = "curata deid (CLI, baseline)"

    def setup(self, work: Path) -> None:
        if self.source is None:
            raise Skip("give --cli-baseline SRC (another checkout's src folder)")
        super().setup(work)


def _map_cli_outputs(out_dir: Path, by_sha: dict[str, int], outputs: list[Path]) -> dict[int, Path]:
    """Input -> output through the report: any record naming an input sha256 and an output sha256/path."""
    out_by_sha = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in outputs}
    mapped: dict[int, Path] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ins = [v for k, v in node.items() if "input" in k and "sha" in k and isinstance(v, str)]
            outs = [v for k, v in node.items() if "output" in k and isinstance(v, str)]
            for i in ins:
                for o in outs:
                    target = out_by_sha.get(o) or next((p for p in outputs if str(p).endswith(o)), None)
                    if i in by_sha and target is not None:
                        mapped[by_sha[i]] = target
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    for report in list(out_dir.rglob("*.json")) + list(out_dir.rglob("*.jsonl")):
        try:
            text = report.read_text(encoding="utf-8")
            docs = (
                [json.loads(line) for line in text.splitlines() if line.strip()]
                if report.suffix == ".jsonl"
                else [json.loads(text)]
            )
        except (OSError, ValueError):
            continue
        for doc in docs:
            visit(doc)
    return mapped


TOOL_CLASSES: dict[str, type[Tool]] = {
    cls.__name__: cls
    for cls in (
        Copy,
        PydicomRoundTrip,
        CurataApi,
        CurataCli,
        Dicognito,
        Deid,
        DicomAnonymizer,
        Gdcmanon,
        Orthanc,
    )
}
TOOL_KEYS = {
    "copy": Copy, "pydicom": PydicomRoundTrip, "curata": CurataApi, "curata-cli": CurataCli,
    "curata-cli-baseline": CurataCliBaseline, "dicognito": Dicognito,
    "deid": Deid, "dicom-anonymizer": DicomAnonymizer, "gdcmanon": Gdcmanon, "orthanc": Orthanc,
}  # fmt: skip


# ----- evaluation -------------------------------------------------------------------------------


_DCIODVFY_CACHE: dict[str, list[str]] = {}
#: Station name and device serial number: Curata's research profile keeps them on purpose (Retain
#: Device Identity); they are counted apart (device_ids_kept), not as leaks, for every tool alike.
KEPT_BY_DESIGN = {"device"}


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's Error lines, with values and numbers blanked so the same fault compares equal."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        return []
    key = hashlib.sha256(path.read_bytes()).hexdigest()
    if key not in _DCIODVFY_CACHE:
        proc = subprocess.run([exe, str(path)], capture_output=True, text=True, errors="replace", timeout=120)
        lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("Error")]
        _DCIODVFY_CACHE[key] = [_normalise_error(ln) for ln in lines]
    return _DCIODVFY_CACHE[key]


def _normalise_error(line: str) -> str:
    line = re.sub(r'"[^"]*"', '"…"', line)
    line = re.sub(r"(value[s]? )<[^>]*>", r"\1<…>", line)
    return re.sub(r"\d+", "#", line)


def _read(path: Path) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(path, force=True)
    except Exception:
        return None


def _get(ds: pydicom.Dataset, keyword: str) -> Any:
    try:
        return ds.get(keyword)
    except Exception:
        return None


def evaluate(items: list[Item], result: RunResult, *, validate: bool) -> dict[str, Any]:
    """Leaks, validation, references, intervals, geometry and pixels of one tool's outputs."""
    by_index = {it.index: it for it in items}
    leaks_by_kind: Counter[str] = Counter()
    places: Counter[str] = Counter()
    leak_list: list[dict[str, Any]] = []
    tried = leaked = leaked_files = unreadable = device_kept = 0
    new_errors = files_new_errors = geometry_lost = pixels_changed = characteristics_lost = 0
    new_error_kinds: Counter[str] = Counter()
    out_ds: dict[int, pydicom.Dataset] = {}
    for index, item in by_index.items():
        tried += sum(1 for _, kind in item.planted.distinct() if kind not in KEPT_BY_DESIGN)
        out = result.outputs.get(index)
        if out is None:
            continue
        raw = out.read_bytes()
        ds = _read(out)
        if ds is None:
            unreadable += 1
        else:
            out_ds[index] = ds
        raw_hits = item.planted.scan(raw)
        parsed_hits = item.planted.scan_dataset(ds) if ds is not None else []
        found: dict[tuple[str, str], list[str]] = {}
        for hit in parsed_hits:
            found.setdefault((hit.value, hit.kind), []).append(hit.where)
        for hit in raw_hits:
            found.setdefault((hit.value, hit.kind), [])
            if not found[(hit.value, hit.kind)]:
                found[(hit.value, hit.kind)].append(f"raw {hit.where} as {hit.form}")
        if any(kind not in KEPT_BY_DESIGN for _, kind in found):
            leaked_files += 1
        for (value, kind), wheres in found.items():
            if kind in KEPT_BY_DESIGN:
                device_kept += 1
                continue
            leaked += 1
            leaks_by_kind[kind] += 1
            tags = sorted(set(wheres))
            for where in tags:
                places[
                    re.sub(r"\[\d+\]", "[*]", where) if not where.startswith("raw") else "raw bytes only"
                ] += 1
            leak_list.append({"file": item.path.name, "kind": kind, "value": value, "found_at": tags[:6]})
        if ds is not None:
            src = pydicom.dcmread(item.path, force=True)
            for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
                if _get(src, kw) is not None and _get(ds, kw) != _get(src, kw):
                    geometry_lost += 1
                    break
            for kw in ("PatientSex", "PatientAge"):
                if _get(src, kw) and _get(ds, kw) != _get(src, kw):
                    characteristics_lost += 1
                    break
            if "PixelData" in src and ("PixelData" not in ds or ds.PixelData != src.PixelData):
                pixels_changed += 1
        if validate and ds is not None:
            before = Counter(dciodvfy_errors(item.path))
            after = Counter(dciodvfy_errors(out))
            extra = after - before
            if extra:
                files_new_errors += 1
                new_errors += sum(extra.values())
                new_error_kinds.update(extra)
    refs_total, refs_broken = _references(items, out_ds)
    intervals_total, intervals_lost = _intervals(items, out_ds)
    return {
        "planted_tried": tried,
        "leaked": leaked,
        "leaked_files": leaked_files,
        "device_ids_kept": device_kept,
        "leaks_by_kind": dict(leaks_by_kind),
        "leak_places": dict(places.most_common(40)),
        "leak_examples": leak_list[:400],
        "unreadable": unreadable,
        "dciodvfy_new_errors": new_errors if validate else None,
        "dciodvfy_files_with_new_errors": files_new_errors if validate else None,
        "dciodvfy_new_error_kinds": dict(new_error_kinds.most_common(15)) if validate else None,
        "references_total": refs_total,
        "references_broken": refs_broken,
        "date_intervals_total": intervals_total,
        "date_intervals_lost": intervals_lost,
        "geometry_lost": geometry_lost,
        "characteristics_lost": characteristics_lost,
        "pixels_changed": pixels_changed,
    }


def _references(items: list[Item], out_ds: dict[int, pydicom.Dataset]) -> tuple[int, int]:
    """A planted ReferencedSOPInstanceUID must still name its target's (new) SOP Instance UID."""
    by_uid = {it.planted.sop_instance_uid: it.index for it in items}
    total = broken = 0
    for it in items:
        for ref in it.planted.references:
            target = by_uid.get(ref.target_uid)
            if target is None:
                continue
            total += 1
            src, dst = out_ds.get(it.index), out_ds.get(target)
            if src is None or dst is None:
                broken += 1
                continue
            uids = {
                str(x.get("ReferencedSOPInstanceUID", ""))
                for x in (_get(src, "ReferencedImageSequence") or [])
            }
            if str(_get(dst, "SOPInstanceUID")) not in uids:
                broken += 1
    return total, broken


def _as_date(value: Any) -> date | None:
    try:
        text = str(value)
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except (TypeError, ValueError):
        return None


def _intervals(items: list[Item], out_ds: dict[int, pydicom.Dataset]) -> tuple[int, int]:
    """Days between a patient's two studies must be the same after de-identification."""
    patients: dict[str, dict[int, list[int]]] = {}
    for it in items:
        patients.setdefault(it.planted.identity.patient_id, {}).setdefault(it.planted.study, []).append(
            it.index
        )
    total = lost = 0
    for studies in patients.values():
        if len(studies) < 2:
            continue
        identity = next(it.planted.identity for it in items if it.index == studies[0][0])
        total += 1
        want = (identity.study_dates[1] - identity.study_dates[0]).days
        got = []
        for s in (0, 1):
            dates = [_as_date(_get(out_ds[i], "StudyDate")) for i in studies[s] if i in out_ds]
            got.append(next((d for d in dates if d), None))
        if got[0] is None or got[1] is None or (got[1] - got[0]).days != want:
            lost += 1
    return total, lost


# ----- the full-size CT case ----------------------------------------------------------------------


def make_small_ct_mr(out_dir: Path, n_files: int, seed: int) -> list[Item]:
    """Small CT and MR files as scanners send them: pydicom-data's CT_small and MR_small, with one
    patient's name, ID, birth date, accession number and fresh UIDs per four files, nothing planted
    elsewhere. The set the per-core speed goal is about; leaks are still counted."""
    import random

    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    from curata.demo.phi import Identity, PlantedSet

    rng = random.Random(seed)
    sources = [pydicom.dcmread(get_testdata_file(n)) for n in ("CT_small.dcm", "MR_small.dcm")]
    items: list[Item] = []
    identity = None
    study_uids: list[str] = []
    for i in range(n_files):
        if i % 4 == 0:
            identity = Identity.random(rng)
            study_uids = [generate_uid(), generate_uid()]
        assert identity is not None
        ds = sources[i % 2].copy()
        study = i % 4 // 2
        ds.SpecificCharacterSet = identity.charset
        ds.PatientName = identity.patient_name
        ds.PatientID = identity.patient_id
        ds.PatientBirthDate = identity.birth_date.strftime("%Y%m%d")
        ds.AccessionNumber = identity.accessions[study]
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            setattr(ds, keyword, identity.study_dates[study].strftime("%Y%m%d"))
        ds.StudyInstanceUID = study_uids[study]
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        planted = PlantedSet(identity=identity, study=study, sop_instance_uid=ds.SOPInstanceUID,
                             sop_class_uid=str(ds.SOPClassUID))  # fmt: skip
        planted.add(str(ds.PatientName), "name", "PatientName")
        planted.add(ds.PatientID, "id", "PatientID")
        planted.add(ds.PatientBirthDate, "date", "PatientBirthDate")
        planted.add(ds.AccessionNumber, "id", "AccessionNumber")
        planted.add(ds.StudyDate, "date", "StudyDate")
        planted.add(ds.SOPInstanceUID, "uid", "SOPInstanceUID")
        path = out_dir / f"{i:05d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        items.append(Item(i, path, planted, path.stat().st_size))
    return items


def make_ct_series(out_dir: Path, slices: int, seed: int) -> list[Item]:
    """A 512x512xN int16 CT series of one planted patient (about 0.5 MB per slice)."""
    import random

    import numpy as np
    from pydicom.data import get_testdata_file

    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    identity = Identity.random(rng)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    uid_map: dict[str, str] = {}
    items = []
    base = (nprng.normal(0, 40, (512, 512)) + 40).astype(np.int16)
    for k in range(slices):
        # a deep copy: Dataset.copy() shares the template's sequences, so each slice's planted items
        # were added to every later slice's (slice 200 carried 9,146 elements against slice 1's 390)
        ds = copy.deepcopy(template)
        ds.Rows = ds.Columns = 512
        ds.PixelData = (base + np.int16(k % 50)).tobytes()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-250.0, -250.0, float(k)]
        ds.SOPInstanceUID = f"1.2.3.4.{k + 1}"  # replaced by the planter with a fresh UID
        planted = plant_identifiers(ds, rng, identity=identity, study=0, uid_map=uid_map)
        # A scanner's CT series carries no overlays: drop the planted 60xx groups (and what they held)
        # so this case measures header work and pixel copying, not overlay OCR.
        for tag in [e.tag for e in ds if 0x6000 <= e.tag.group <= 0x601E]:
            del ds[tag]
        planted.values = [v for v in planted.values if not v.path.startswith("(60")]
        path = out_dir / f"{k:05d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        items.append(Item(k, path, planted, path.stat().st_size))
    return items


# ----- driver -----------------------------------------------------------------------------------


def bench_tool(tool: Tool, items: list[Item], work: Path, workers: int, *, validate: bool) -> dict[str, Any]:
    mb = sum(it.size for it in items) / 1e6
    row: dict[str, Any] = {
        "tool": tool.name,
        "asked": tool.asked,
        "files": len(items),
        "input_mb": round(mb, 2),
    }
    try:
        tool.setup(work)
    except Skip as exc:
        tool.teardown()
        return {**row, "status": "skipped", "reason": str(exc)}
    except Exception as exc:
        tool.teardown()
        return {**row, "status": "skipped", "reason": f"setup failed: {type(exc).__name__}: {exc}"}
    slug = re.sub(r"\W+", "-", tool.name)
    try:
        with timed() as whole:
            single = tool.run(items, work / f"{slug}-1", 1)
        row.update(
            # CPU of the whole one-process call (setup in it too; Orthanc's server not counted)
            cpu_seconds_1=round(whole["cpu"], 3),
            files_per_cpu_s_1=rate(len(single.outputs), whole["cpu"]),
            status="ok",
            done=len(single.outputs),
            failed=len(single.errors),
            failures=dict(list(single.errors.items())[:8]),
            seconds_1=round(single.seconds, 3),
            files_per_s_1=rate(len(single.outputs), single.seconds),
            mb_per_s_1=rate(sum(by.size for by in items if by.index in single.outputs) / 1e6, single.seconds),
        )
        if isinstance(tool, CurataCli):
            row.update(
                # the whole command, startup included; the bench's own mapping of outputs to inputs
                # (hashing 2 x 24 MB, reading the report) afterwards is not the tool's work
                cpu_seconds_1=round(tool.cpu, 3),
                files_per_cpu_s_1=rate(len(single.outputs), tool.cpu),
                cpu_seconds_1_with_mapping=round(whole["cpu"], 3),
                exit_code=tool.exit_code,
                output_tail=tool.tail,
                path_leaks=_path_leaks(items, tool.all_outputs),
                report_leaks=_report_leaks(items, work / f"{slug}-1"),
            )
        if workers > 1 and tool.parallel:
            multi = tool.run(items, work / f"{slug}-{workers}", workers)
            row.update(
                workers=workers,
                seconds_n=round(multi.seconds, 3),
                files_per_s_n=rate(len(multi.outputs), multi.seconds),
                mb_per_s_n=rate(
                    sum(by.size for by in items if by.index in multi.outputs) / 1e6, multi.seconds
                ),
            )
        row.update(
            evaluate(items, single, validate=validate)
        )  # baselines too: they show what "all leaked" is
    except Exception as exc:
        row.update(
            status="failed", reason=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-2000:]
        )
    finally:
        tool.teardown()
    return row


# a UUID-derived UID (PS3.5 B.2: "2.25." and the UUID's 128 bits as one decimal number, at most 39
# digits), as de-identifiers name what they remap: its digits are a hash's, so any 8 of them spell a
# date by chance (about one 960-file run in eight found one in an output path)
_UUID_UID = re.compile(rb"(?<![0-9.])2\.25\.[0-9]{1,39}(?![0-9])")


def _scan_outside_uuid_uids(items: list[Item], raw: bytes) -> list[Hit]:
    """Planted identifiers in ``raw``, the digits of remapped UUID UIDs aside (a planted UID of that
    form is still looked for as it is)."""
    planted = {v.value.encode() for it in items for v in it.planted.values if v.kind == "uid"}
    masked = _UUID_UID.sub(lambda m: m[0] if m[0] in planted else b"2.25.uid", raw)
    return [h for it in items for h in it.planted.scan(masked)]


def _path_leaks(items: list[Item], outputs: list[Path]) -> int:
    """Output paths that carry any planted identifier (names, IDs, accession numbers in folder names)."""
    return sum(1 for out in outputs if _scan_outside_uuid_uids(items, str(out).encode()))


def _report_leaks(items: list[Item], out_dir: Path) -> dict[str, list[str]]:
    """Planted identifiers in what the tool writes into OUTPUT besides images (reports, logs)."""
    found: dict[str, list[str]] = {}
    for path in out_dir.rglob("*"):
        if path.is_file() and path.suffix.lower() != ".dcm":
            hits = {f"{h.kind}:{h.value}" for h in _scan_outside_uuid_uids(items, path.read_bytes())}
            if hits:
                found[str(path.relative_to(out_dir))] = sorted(hits)[:20]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=200, help="planted corpus size (default 200)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--set", choices=("planted", "small-ct-mr"), default="planted",
        help="planted: every pydicom-data class, identifiers planted everywhere; small-ct-mr: CT_small and "
        "MR_small with a patient per four files (the per-core speed goal)",
    )  # fmt: skip
    parser.add_argument("--tools", default=",".join(TOOL_KEYS), help=f"comma list of {', '.join(TOOL_KEYS)}")
    parser.add_argument("--workers", type=int, default=cores(), help="processes for the all-cores run")
    parser.add_argument("--full-ct", action="store_true", help="also a 512x512x200 CT series (100 MB)")
    parser.add_argument("--ct-slices", type=int, default=200)
    parser.add_argument("--no-validate", action="store_true", help="skip dciodvfy")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "deid.json")
    parser.add_argument(
        "--cli-baseline", type=Path, default=None,
        help="src folder of another checkout: the curata-cli-baseline tool runs the command from it",
    )  # fmt: skip
    parser.add_argument("--keep", type=Path, default=None, help="keep the corpus and outputs in this folder")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.tools.split(",") if k.strip()]
    unknown = [k for k in keys if k not in TOOL_KEYS]
    if unknown:
        parser.error(f"unknown tools {unknown}; choose from {', '.join(TOOL_KEYS)}")

    CurataCliBaseline.source = args.cli_baseline.resolve() if args.cli_baseline else None
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="curata-bench-deid-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        with timed() as t:
            if args.set == "small-ct-mr":
                items = make_small_ct_mr(work / "corpus", args.files, args.seed)
            else:
                corpus = make_planted_corpus(work / "corpus", args.files, args.seed)
                items = [Item(i, p, s, p.stat().st_size) for i, (p, s) in enumerate(corpus)]
        n_planted = sum(len(it.planted.distinct()) for it in items)
        console.print(
            f"corpus: {len(items)} files, {sum(it.size for it in items) / 1e6:.1f} MB, "
            f"{n_planted} distinct planted identifiers ({t['seconds']:.1f} s to build); workers={args.workers}"
        )
        results: dict[str, Any] = {
            "corpus": {"set": args.set, "files": len(items), "mb": sum(it.size for it in items) / 1e6, "planted": n_planted,
                       "seed": args.seed, "patients": len({it.planted.identity.patient_id for it in items}),
                       "references": sum(len(it.planted.references) for it in items)},
            "machine": {"cores": cores(), "python": sys.version.split()[0], "pydicom": pydicom.__version__},
            "tools": [],
        }  # fmt: skip
        for key in keys:
            tool = TOOL_KEYS[key]()
            console.print(f"[bold]{tool.name}[/bold]: {tool.asked}")
            with timed() as tt:
                row = bench_tool(tool, items, work / "small", args.workers, validate=not args.no_validate)
            row["bench_seconds"] = round(tt["seconds"], 1)
            console.print(f"  {row['status']} in {tt['seconds']:.1f} s")
            if row["status"] != "ok":
                console.print(f"  [yellow]{row['status']}[/yellow]: {row.get('reason')}")
            results["tools"].append(row)
        if args.full_ct:
            results["full_ct"] = run_full_ct(args, keys, work)
        _report(results)
        write_json(args.out, results)
        console.print(f"results written to {args.out}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def run_full_ct(args: argparse.Namespace, keys: list[str], work: Path) -> dict[str, Any]:
    with timed() as t:
        items = make_ct_series(work / "ct", args.ct_slices, args.seed)
    mb = sum(it.size for it in items) / 1e6
    console.print(f"full-size CT: {len(items)} slices, {mb:.0f} MB ({t['seconds']:.1f} s to build)")
    rows = []
    for key in keys:
        if key in ("curata-cli", "curata-cli-baseline"):
            continue
        tool = TOOL_KEYS[key]()
        row = bench_tool(tool, items, work / "ct-out", args.workers, validate=False)
        row.pop("leak_examples", None)
        rows.append(row)
    return {"slices": len(items), "mb": mb, "tools": rows}


def _report(results: dict[str, Any]) -> None:
    rows = results["tools"]
    columns = [
        ("tool", "tool"), ("status", "status"), ("files_per_s_1", "files/s 1p"),
        ("files_per_cpu_s_1", "files/CPU-s 1p"), ("mb_per_s_1", "MB/s 1p"),
        ("files_per_s_n", "files/s all"), ("mb_per_s_n", "MB/s all"), ("failed", "failed"),
        ("leaked", "leaked ids"), ("leaked_files", "files w/ leak"), ("device_ids_kept", "device ids kept"),
        ("dciodvfy_new_errors", "new dciodvfy err"),
        ("references_broken", "refs broken"), ("date_intervals_lost", "intervals lost"),
        ("geometry_lost", "geom lost"), ("pixels_changed", "pixels chg"),
    ]  # fmt: skip
    c = results["corpus"]
    print_ratio_table(
        rows, title=f"De-identification, {c['files']} planted files, {c['planted']} planted identifiers",
        reference="curata", columns=columns, ratio_of=("files_per_s_1", "files_per_cpu_s_1", "files_per_s_n"),
    )  # fmt: skip
    console.print(
        "  files/CPU-s 1p: CPU seconds of the one-process call, this process and the children it waited "
        "for (gdcmanon's processes, the CLI's command with its workers: not the bench's mapping of its "
        "outputs afterwards); Orthanc's server is another process and is not counted"
    )
    for row in rows:
        if row.get("status") == "ok" and row.get("leaked"):
            console.print(f"  {row['tool']}: leaks by kind {row['leaks_by_kind']}")
    if "full_ct" in results:
        ct = results["full_ct"]
        print_ratio_table(
            ct["tools"], title=f"Full-size CT, {ct['slices']} slices, {ct['mb']:.0f} MB", reference="file copy",
            columns=[("tool", "tool"), ("status", "status"), ("mb_per_s_1", "MB/s 1p"), ("mb_per_s_n", "MB/s all"),
                     ("leaked", "leaked ids"), ("pixels_changed", "pixels chg")],
            ratio_of=("mb_per_s_1", "mb_per_s_n"),
        )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
