"""Gateway benchmark: the same batch pushed with dcmtk's storescu to storescp, Orthanc and the Curata gateway.

    .venv/bin/python bench/gateway.py [--instances 200] [--size 512] [--associations 1,4]
                                      [--out bench/results/gateway.json]

One batch of CT instances carrying planted identifiers (``--size`` x ``--size`` pixels, 16 bit) is sent,
in one run, to three receivers on loopback, each started fresh:

* ``storescp`` (dcmtk): writes each file and answers; no fsync, no database: the floor.
* Orthanc (Debian package, default SQLite index and file storage, no plugins).
* ``curata gateway serve`` (the real CLI, de-identification ON with the site key): answers success only
  after the de-identified blob is fsynced and its catalog row committed.
* ``curata gateway serve --front-end dcmtk``: dcmtk's network layer (``curata-spool-scp``) answers once the
  instance is fsynced into the site's spool; de-identification drains it behind. Timed to *filed* (the
  clock runs until the spool is empty: every instance de-identified, its blob durable, its row
  committed); the senders' own time is reported as ``answered_per_s``.
* a pynetdicom SCP that answers success and keeps nothing: the ceiling of the Python network layer the
  gateway is built on, so the table shows how much of the gap is the network stack and how much is
  de-identification + durable filing.

For every association count in ``--associations`` the batch is split over that many concurrent storescu
processes (a modality or PACS sending several studies at once). Reported per receiver: instances/s,
MB/s, the ratio to storescp and to Orthanc, the count each receiver actually holds afterwards, and
the CPU seconds (user + system, read from /proc) the receiver's process tree spent while the batch was
sent, per instance: on a loaded machine the CPU figure is the steadier one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import console, cores, free_port, print_ratio_table, rate, write_json  # noqa: E402

VENV_BIN = Path(sys.executable).parent
# dcmtk (storescu, storescp, and Orthanc, which embeds it) leaves Nagle on unless told otherwise; with
# it on, every instance waits for a delayed ACK (~40 ms) and all receivers look equally slow.
os.environ["TCP_NODELAY"] = "1"


def _scanner_header(ds: pydicom.Dataset, sop: str, i: int) -> None:
    """What a scanner's CT slice carries beyond the bench's minimal header: kept sequences (the
    images referenced, the anatomic region, the procedure code, the request) and the usual
    acquisition attributes. The engine's native lane hands files with kept sequences to its raw
    lane, so this is the header the gateway meets on real data."""
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CTImageStorage, sop
    ds.ReferencedImageSequence = [ref]
    region = pydicom.Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "T-D3000", "SRT", "Chest"
    ds.AnatomicRegionSequence = [region]
    procedure = pydicom.Dataset()
    procedure.CodeValue, procedure.CodingSchemeDesignator, procedure.CodeMeaning = "CTCHEST", "L", "CT CHEST"
    ds.ProcedureCodeSequence = [procedure]
    request = pydicom.Dataset()
    request.RequestedProcedureID, request.ScheduledProcedureStepID = f"RP{i % 7}", f"SPS{i % 7}"
    ds.RequestAttributesSequence = [request]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Manufacturer, ds.ManufacturerModelName = "GE MEDICAL SYSTEMS", "Revolution CT"
    ds.KVP, ds.ExposureTime, ds.XRayTubeCurrent = 120, 600, 300
    ds.ConvolutionKernel, ds.PatientPosition = "STANDARD", "HFS"
    ds.SliceLocation = float(-i)
    ds.WindowCenter, ds.WindowWidth = 40, 400


SCANNER_HEADER = {"value": False}


def make_batch(folder: Path, n: int, size: int, studies: int) -> int:
    """``n`` CT slices over ``studies`` studies, identifiers planted; returns total bytes. With
    ``--scanner-header`` each slice also carries a scanner's sequences (``_scanner_header``)."""
    rng = np.random.default_rng(0)
    total = 0
    per = max(1, -(-n // studies))
    for s in range(studies):
        study, series = generate_uid(), generate_uid()
        for i in range(min(per, n - s * per)):
            ds = pydicom.Dataset()
            ds.file_meta = FileMetaDataset()
            sop = generate_uid()
            ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
            ds.PatientName, ds.PatientID = f"Bench^Patient{s}", f"MRN{s:06d}"
            ds.PatientBirthDate, ds.PatientSex = "19580214", "M"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.StudyDate = ds.SeriesDate = "20240301"
            ds.StudyTime = "101500"
            ds.AccessionNumber = f"ACC{s:06d}"
            ds.InstitutionName = "St Elsewhere General"
            ds.ReferringPhysicianName = "House^Gregory"
            ds.Modality, ds.BodyPartExamined = "CT", "CHEST"
            ds.SeriesNumber, ds.InstanceNumber = 1, i + 1
            ds.FrameOfReferenceUID = generate_uid()
            ds.ImagePositionPatient = [-250.0, -250.0, float(-i)]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.PixelSpacing = [0.7, 0.7]
            ds.SliceThickness = 1.0
            ds.Rows = ds.Columns = size
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
            ds.PixelData = rng.integers(0, 2000, size=(size, size), dtype=np.uint16).tobytes()
            if SCANNER_HEADER["value"]:
                _scanner_header(ds, generate_uid(), i)
            path = folder / f"study{s:02d}" / f"IM{i:05d}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            total += path.stat().st_size
    return total


def wait_for_echo(port: int, aet: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the receiver exited with {proc.returncode}")
        cmd = ["echoscu", "-to", "2", "-aec", aet, "127.0.0.1", str(port)]
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("the receiver did not answer C-ECHO in time")


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and every live process below it, read from
    /proc (children that already exited and were reaped count in their parent's cutime/cstime)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(f) for f in fields[11:15]) / _TICK
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo.extend(c for c, parent in parents.items() if parent == p and c not in tree)
    return sum(times.get(p, 0.0) for p in tree)


RECEIVER_CPU: dict[str, float] = {}


def push(
    port: int,
    aet: str,
    folders: list[Path],
    receiver: int | None = None,
    until: Callable[[], bool] | None = None,
) -> float:
    """storescu on every folder at once; returns wall seconds; raises if any storescu failed. With
    ``receiver`` (a pid), the CPU seconds its process tree spent meanwhile go to RECEIVER_CPU["last"].
    With ``until``, the clock (and the CPU count) runs on after the senders finished, until it returns
    true: a receiver that answers before it has filed (the spool front end) is timed to filed, not to
    answered; the senders' own time goes to RECEIVER_CPU["answered_s"]."""
    cpu0 = tree_cpu(receiver) if receiver else 0.0
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["storescu", "-aet", "BENCH", "-aec", aet, "127.0.0.1", str(port), "+sd", "+r", str(f)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for f in folders
    ]
    errors = [p.communicate()[1].decode(errors="replace")[-500:] for p in procs if p.wait() != 0]
    RECEIVER_CPU["answered_s"] = time.perf_counter() - start
    deadline = time.monotonic() + 600
    while until is not None and not errors and not until() and time.monotonic() < deadline:
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    RECEIVER_CPU["last"] = tree_cpu(receiver) - cpu0 if receiver else float("nan")
    if errors:
        raise RuntimeError(f"storescu failed: {errors[0]}")
    return seconds


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_storescp(work: Path, folders: list[Path]) -> tuple[float, int]:
    out = work / "storescp"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "-aet", "STORESCP", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_echo(port, "STORESCP", proc)
        seconds = push(port, "STORESCP", folders, proc.pid)
    finally:
        stop(proc)
    return seconds, sum(1 for _ in out.iterdir())


def run_orthanc(work: Path, folders: list[Path]) -> tuple[float, int]:
    root = work / "orthanc"
    root.mkdir()
    port, http = free_port(), free_port()
    config = {
        "Name": "bench",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "DicomAet": "ORTHANC",
        "DicomPort": port,
        "HttpPort": http,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "DicomCheckCalledAet": False,
        "Plugins": [],
        "SaveJobs": False,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen(
        ["Orthanc", str(root / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_echo(port, "ORTHANC", proc)
        seconds = push(port, "ORTHANC", folders, proc.pid)
        held = int(httpx.get(f"http://127.0.0.1:{http}/statistics", timeout=30).json()["CountInstances"])
    finally:
        stop(proc)
    return seconds, held


GATEWAY_WORKERS = {"value": 0}


def run_curata(
    work: Path, folders: list[Path], processes: int = 1, front_end: str = "python"
) -> tuple[float, int]:
    ws = work / f"curata-{processes}-{front_end}"
    env = {**os.environ, "CURATA_WORKSPACE": str(ws)}
    env.pop("CURATA_DATABASE_URL", None)
    curata = str(VENV_BIN / "curata")
    subprocess.run([curata, "init", str(ws)], check=True, capture_output=True, env=env)
    port = free_port()
    proc = subprocess.Popen(
        [
            *(curata, "gateway", "serve", "--port", str(port), "--bind", "127.0.0.1", "--json"),
            *("--workers", str(GATEWAY_WORKERS["value"] if processes == 1 else 1)),
            *("--processes", str(processes), "--front-end", front_end),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for_echo(port, "CURATA", proc)
        until = None
        if front_end == "dcmtk":  # answered once spooled: the clock stops when the spool is drained
            ready = ws / ".curata" / "spool" / "ready"
            until = lambda: not any(ready.iterdir())  # noqa: E731
        seconds = push(port, "CURATA", folders, proc.pid, until)
    finally:
        # SIGTERM: the same clean stop as Ctrl-C, and not ignored where the bench runs as a background
        # job (a shell starts those with SIGINT ignored, and the gateway then never printed its summary)
        stop(proc, signal.SIGTERM)
    summary = json.loads(proc.stdout.read().decode() if proc.stdout else "{}")
    return seconds, int(summary.get("stored", 0)) + int(summary.get("present", 0))


_NOOP_SCP = """
import signal, sys, threading
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification
from curata.collect.net.scp import TRANSFER_SYNTAXES, _no_delay
ae = AE("NOOP"); ae.maximum_pdu_size = 0
for cx in AllStoragePresentationContexts:
    ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
ae.add_supported_context(Verification)
n = [0]
def store(event):
    event.encoded_dataset(); n[0] += 1; return 0
server = ae.start_server(("127.0.0.1", int(sys.argv[1])), block=False,
    evt_handlers=[(evt.EVT_C_STORE, store), (evt.EVT_CONN_OPEN, _no_delay)])
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait(); server.shutdown(); print(n[0])
"""


def run_pynetdicom_noop(work: Path, folders: list[Path]) -> tuple[float, int]:
    """The network layer alone: pynetdicom answering success without storing anything."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _NOOP_SCP, str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_echo(port, "NOOP", proc)
        seconds = push(port, "NOOP", folders, proc.pid)
    finally:
        stop(proc)
    return seconds, int((proc.stdout.read() if proc.stdout else b"0").strip() or 0)


RECEIVERS: dict[str, Callable[[Path, list[Path]], tuple[float, int]]] = {
    "storescp": run_storescp,
    "orthanc": run_orthanc,
    "curata-gateway (de-id on)": run_curata,
    "curata-gateway (de-id on, dcmtk front end, timed to filed)": lambda w, f: run_curata(w, f, 1, "dcmtk"),
    "pynetdicom no-op SCP (ceiling)": run_pynetdicom_noop,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--size", type=int, default=512, help="rows = columns of each CT slice")
    parser.add_argument("--associations", default="1,4", help="comma-separated concurrent storescu counts")
    parser.add_argument(
        "--gateway-workers", type=int, default=0, help="de-identification processes (0: one per core)"
    )
    parser.add_argument(
        "--gateway-processes",
        type=int,
        default=1,
        help="also run the gateway with N listener processes sharing the port (SO_REUSEPORT)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds (receivers interleaved); the median rate is kept"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated words: run only the receivers whose name holds one"
    )
    parser.add_argument(
        "--scanner-header",
        action="store_true",
        help="slices carry a scanner's kept sequences (referenced images, region, procedure, request)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gateway.json")
    args = parser.parse_args()
    SCANNER_HEADER["value"] = args.scanner_header
    if args.only:
        words = [w.strip() for w in args.only.split(",") if w.strip()]
        for name in [n for n in RECEIVERS if not any(w in n for w in words)]:
            del RECEIVERS[name]
    GATEWAY_WORKERS["value"] = args.gateway_workers
    if args.gateway_processes > 1:  # both designs in the same run: one listener, and N sharing the port
        n = args.gateway_processes
        RECEIVERS[f"curata-gateway (de-id on, {n} listener processes)"] = lambda w, f: run_curata(w, f, n)
    missing = [p for p in ("storescu", "storescp", "echoscu", "Orthanc") if shutil.which(p) is None]
    if missing:
        console.print(f"[red]not installed: {', '.join(missing)}; run scripts/system-deps.sh[/]")
        return 2
    counts = [int(a) for a in args.associations.split(",") if a.strip()]
    results: dict[str, Any] = {
        "instances": args.instances,
        "size": args.size,
        "cores": cores(),
        "gateway_workers": args.gateway_workers or "one per core",
        "gateway_processes": args.gateway_processes,
        "scanner_header": args.scanner_header,
        "load_average_at_start": os.getloadavg(),
        "note": "storescp does not fsync and keeps no index; Curata fsyncs every blob and commits the catalog "
        "before answering success, with de-identification on.",
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="curata-bench-gw-") as tmp:
        for n_assoc in counts:
            batch = Path(tmp) / f"batch-{n_assoc}"
            nbytes = make_batch(batch, args.instances, args.size, studies=n_assoc)
            folders = sorted(p for p in batch.iterdir() if p.is_dir())
            samples: dict[str, list[tuple[float, int, float, float]]] = {name: [] for name in RECEIVERS}
            failures: dict[str, str] = {}
            for round_ in range(args.repeat):
                for name, runner in RECEIVERS.items():
                    work = Path(tmp) / f"{name.split()[0]}-{n_assoc}-{round_}"
                    work.mkdir()
                    try:
                        RECEIVER_CPU.pop("last", None)
                        sec, held = runner(work, folders)
                        cpu = RECEIVER_CPU.get("last", float("nan"))
                        samples[name].append((sec, held, cpu, RECEIVER_CPU.get("answered_s", sec)))
                    except Exception as exc:
                        failures[name] = f"error: {exc}"
                    shutil.rmtree(work, ignore_errors=True)
            rows = []
            for name, got in samples.items():
                if not got:
                    rows.append(
                        {"tool": name, "associations": n_assoc, "status": failures.get(name, "no run")}
                    )
                    continue
                seconds = statistics.median(g[0] for g in got)
                held = min(g[1] for g in got)
                cpu = statistics.median(g[2] for g in got)
                answered = statistics.median(g[3] for g in got)
                rows.append(
                    {
                        "tool": name,
                        "associations": n_assoc,
                        "seconds": round(seconds, 3),
                        "seconds_all": [round(g[0], 3) for g in got],
                        "answered_s": round(answered, 3),
                        "answered_per_s": rate(args.instances, answered),
                        "receiver_cpu_s": round(cpu, 3),
                        "receiver_cpu_ms_per_instance": round(1000 * cpu / args.instances, 2),
                        "instances_per_s": rate(args.instances, seconds),
                        "mb_per_s": rate(nbytes / 1e6, seconds),
                        "sent": args.instances,
                        "held": held,
                        "status": "ok" if held == args.instances and name not in failures else "MISSING",
                    }
                )
            ref = {r["tool"]: r.get("instances_per_s") for r in rows}
            for row in rows:
                for peer in ("storescp", "orthanc"):
                    if row.get("instances_per_s") and ref.get(peer):
                        row[f"ratio_vs_{peer}"] = round(row["instances_per_s"] / ref[peer], 3)
            print_ratio_table(
                rows,
                title=f"{args.instances} CT instances ({args.size}x{args.size}), "
                f"{n_assoc} concurrent association(s), {cores()} core(s)",
                reference="storescp",
                columns=[
                    ("tool", "receiver"),
                    ("instances_per_s", "inst/s"),
                    ("mb_per_s", "MB/s"),
                    ("receiver_cpu_ms_per_instance", "CPU ms/inst"),
                    ("held", "held"),
                    ("status", "status"),
                ],
                ratio_of=["instances_per_s"],
            )
            results["runs"].extend(rows)
            shutil.rmtree(batch, ignore_errors=True)
    results["load_average_at_end"] = os.getloadavg()
    write_json(args.out, results)
    console.print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
