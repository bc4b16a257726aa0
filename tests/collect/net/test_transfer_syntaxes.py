"""Every transfer syntax the gateway claims, sent by dcmtk ``storescu -R`` (separate and combined
presentation contexts) and by Orthanc, to both front ends (pynetdicom, and dcmtk's spool front end):
each object is negotiated in its own syntax, answered, and filed.

The table (syntax | file | storescu -R | storescu -R +C | Orthanc) is printed, and written to
``$CURATA_TS_TABLE`` (with the front end's name before the suffix) when set, for the closing note.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file

from curata.collect.net.config import GatewayConfig
from curata.collect.net.scp import TRANSFER_SYNTAXES, GatewayServer
from curata.collect.net.spool import SpoolGateway
from tests.collect.net.conftest import free_port, need

pytestmark = pytest.mark.integration

# syntax -> (a real file in it, the storescu option that proposes it)
CASES = {
    "1.2.840.10008.1.2.1": ("CT_small.dcm", "-xe"),
    "1.2.840.10008.1.2": ("MR_small_implicit.dcm", "-xi"),
    "1.2.840.10008.1.2.1.99": ("image_dfl.dcm", "-xd"),
    "1.2.840.10008.1.2.2": ("MR_small_bigendian.dcm", "-xb"),
    "1.2.840.10008.1.2.4.50": ("SC_rgb_jpeg_dcmtk.dcm", "-xy"),
    "1.2.840.10008.1.2.4.51": ("JPGExtended.dcm", "-xx"),
    "1.2.840.10008.1.2.4.57": ("p14:CT_small.dcm", None),  # made with dcmcjpeg +el; no storescu option
    "1.2.840.10008.1.2.4.70": ("JPEG-LL.dcm", "-xs"),
    "1.2.840.10008.1.2.4.90": ("MR_small_jp2klossless.dcm", "-xv"),
    "1.2.840.10008.1.2.4.91": ("JPEG2000.dcm", "-xw"),
    "1.2.840.10008.1.2.4.80": ("MR_small_jpeg_ls_lossless.dcm", "-xt"),
    "1.2.840.10008.1.2.4.81": ("jls:SC_rgb.dcm", "-xu"),  # dcmcjpls +en (near-lossless)
    "1.2.840.10008.1.2.5": ("MR_small_RLE.dcm", "-xr"),
}


MAKERS = {"p14": ["dcmcjpeg", "+el"], "jls": ["dcmcjpls", "+en"]}


def _file(spec: str, tmp: Path) -> Path:
    """A pydicom test file, or one made from it with dcmtk where pydicom has none complete."""
    tool, _, name = spec.rpartition(":")
    if tool:
        out = tmp / f"{tool}_{name}"
        subprocess.run(
            [*MAKERS[tool], str(get_testdata_file(name)), str(out)], check=True, capture_output=True
        )
        return out
    path = get_testdata_file(spec)
    assert path is not None, spec
    return Path(path)


@pytest.fixture(scope="module")
def sender_orthanc(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A bare Orthanc of our own (the shared one holds the pull tests' study)."""
    need("Orthanc")
    root = tmp_path_factory.mktemp("orthanc-ts")
    http, dicom, gateway = free_port(), free_port(), free_port()
    config = {
        "Name": "ts-sender",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom,
        "HttpPort": http,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomModalities": {"curata": ["CURATA", "127.0.0.1", gateway]},
        "SaveJobs": False,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("wb")
    proc = subprocess.Popen(["Orthanc", str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/system", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "Orthanc did not start"
            time.sleep(0.1)
        yield url, gateway
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _storescu(port: int, path: Path, *opts: str) -> subprocess.CompletedProcess[str]:
    cmd = ["storescu", "-R", *opts, "-aet", "STORESCU", "-aec", "CURATA", "127.0.0.1", str(port), str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("front_end", ["python", "dcmtk"])
def test_every_claimed_transfer_syntax_is_accepted(  # type: ignore[no-untyped-def]
    workspace, tmp_path: Path, sender_orthanc, front_end: str
) -> None:
    need("storescu", "dcmcjpeg", "dcmcjpls")
    url, gateway_port = sender_orthanc
    assert {str(t) for t in TRANSFER_SYNTAXES} == set(CASES), "a claimed syntax has no test case"
    rows: list[dict[str, str]] = []
    failures: list[str] = []
    # Two of the files are GE NM secondary captures: text-prone, so the site declares the region
    # template it masks on them (otherwise they are held for review, which is not what this tests).
    site_policy = tmp_path / "deid.toml"
    site_policy.write_text(
        '[[pixels.regions]]\nname = "GE NM capture bands"\nmodalities = ["NM"]\ntop = 0.1\nbottom = 0.08\n'
    )
    workspace.settings.deid.config = str(site_policy)
    cfg = GatewayConfig(ae_title="CURATA", port=gateway_port, bind="127.0.0.1", workers=1)
    server_class = SpoolGateway if front_end == "dcmtk" else GatewayServer
    with server_class(workspace, cfg) as server:

        def answered() -> tuple[int, int]:
            if isinstance(server, SpoolGateway):  # answered on spooling: wait until it is filed too
                assert server.wait_idle(60)
            c = server.counts
            return c.stored + c.present, c.refused + c.errors

        for ts, (spec, option) in CASES.items():
            path = _file(spec, tmp_path)
            assert str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID) == ts
            row = {"syntax": f"{pydicom.uid.UID(ts).name} ({ts})", "file": Path(path).name}
            senders: list[tuple[str, object]] = []
            if option:
                senders.append(("storescu -R", lambda p=path, o=option: _storescu(server.port, p, o)))
                senders.append(
                    ("storescu -R +C", lambda p=path, o=option: _storescu(server.port, p, "+C", o))
                )
            else:
                row["storescu -R"] = row["storescu -R +C"] = "no storescu option"

            def orthanc(p: Path = path) -> bool:
                r = httpx.post(f"{url}/instances", content=p.read_bytes(), timeout=30)
                assert r.status_code == 200, (p.name, r.status_code, r.text[:300])
                oid = r.json()["ID"]
                s = httpx.post(
                    f"{url}/modalities/curata/store",
                    json={"Resources": [oid], "Synchronous": True},
                    timeout=60,
                )
                httpx.delete(f"{url}/instances/{oid}", timeout=30)
                return s.status_code == 200

            senders.append(("Orthanc", orthanc))
            for name, send in senders:
                ok_before, bad_before = answered()
                result = send()  # type: ignore[operator]
                sent_ok = result if isinstance(result, bool) else result.returncode == 0
                ok_after, bad_after = answered()
                if sent_ok and ok_after == ok_before + 1:
                    row[name] = "stored"
                elif bad_after > bad_before:
                    row[name] = "refused (answered)"
                    failures.append(f"{ts} via {name}: refused")
                else:
                    row[name] = "NOT SENT"
                    detail = "" if isinstance(result, bool) else result.stderr.strip().splitlines()[-1:]
                    failures.append(f"{ts} via {name}: not sent {detail}")
            rows.append(row)
    lines = ["syntax | file | storescu -R | storescu -R +C | Orthanc", "--- | --- | --- | --- | ---"]
    lines += [
        f"{r['syntax']} | {r['file']} | {r.get('storescu -R', '')} | {r.get('storescu -R +C', '')} | {r['Orthanc']}"
        for r in rows
    ]
    print(f"\n{front_end} front end\n" + "\n".join(lines))
    if os.environ.get("CURATA_TS_TABLE"):
        table = Path(os.environ["CURATA_TS_TABLE"])
        table.with_name(f"{table.stem}-{front_end}{table.suffix}").write_text("\n".join(lines) + "\n")
    assert not failures, failures
