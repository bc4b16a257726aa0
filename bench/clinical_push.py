"""The clinical leg of `curata gateway push` beside the gateway's own ingest of the same export.

    .venv/bin/python bench/clinical_push.py [--rows 100000] [--variants 20000] [--out bench/results/clinical_push.json]

The export and VCF of ``bench/clinical.py`` are ingested at a gateway (SQLite), then, in one process:
the gateway builds the ``curata-clinical/1`` batches of what it filed (catalog rows to Parquet, the VCF
whole, digests: ``deidentified_batch(...).parts()``) and the platform checks and files them
(``receive_batches``: digests, pseudonyms, free text, the catalog writer, the VCF indexed). HTTP and TLS
are left out (loopback would measure the kernel). Ratios against the gateway's ingest of the same inputs
(the work the push must not dwarf) and against a bare Parquet round trip of the same tables (pyarrow
write + read: the least any table format costs). Wall and CPU seconds of the process; load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import console, write_json  # noqa: E402
from clinical import MAPPING, timed, write_csv, write_vcf  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--variants", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "clinical_push.json")
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curata.collect.clinical import deidentified_batch, filed_inputs, receive_batches
    from curata.collect.ingest import Ingestor
    from curata.workspace import Workspace

    os.environ.pop("CURATA_DATABASE_URL", None)
    with tempfile.TemporaryDirectory(prefix="curata-bench-push-") as tmp:
        root = Path(tmp)
        export = root / "export"
        export.mkdir()
        write_csv(export / "clinical.csv", args.rows)
        write_vcf(root / "genome.vcf", args.variants)
        (export / "genome.vcf.gz").write_bytes(Path(str(root / "genome.vcf") + ".gz").read_bytes())
        (export / "clinical-map.toml").write_text(MAPPING)
        gateway = Workspace.init(root / "gateway", site="bench")
        with timed() as t_ingest:
            _summary, problems = Ingestor(gateway, workers=1).ingest_paths([export])
        assert not problems, [p.reason for p in problems]
        with timed() as t_export:
            parts = [p for item in filed_inputs(gateway) for p in deidentified_batch(gateway, item).parts()]
        tables = [
            pq.read_table(pa.BufferReader(body))
            for h, body in parts
            if h.get("Content-Type") == "application/vnd.apache.parquet"
        ]
        with timed() as t_bare:  # the same tables written and read back, nothing else
            for table in tables:
                sink = pa.BufferOutputStream()
                pq.write_table(table, sink, compression="zstd")
                pq.read_table(pa.BufferReader(sink.getvalue()))
        central = Workspace.init(root / "central", site="platform")
        wire = [({k.lower(): v for k, v in h.items()}, body) for h, body in parts]
        with timed() as t_central:
            filed = receive_batches(central, wire)
        assert {f.status for f in filed} == {"filed"}, filed
    rows = sum(t.num_rows for t in tables)
    result = {
        "rows": args.rows,
        "variants": args.variants,
        "omop_rows_sent": rows,
        "wire_mb": round(sum(len(b) for _h, b in parts) / 1e6, 2),
        "gateway_ingest_s": t_ingest["seconds"],
        "gateway_ingest_cpu_s": t_ingest["cpu"],
        "export_s": t_export["seconds"],
        "export_cpu_s": t_export["cpu"],
        "central_file_s": t_central["seconds"],
        "central_file_cpu_s": t_central["cpu"],
        "bare_parquet_roundtrip_s": t_bare["seconds"],
        "bare_parquet_roundtrip_cpu_s": t_bare["cpu"],
        "push_ratio_vs_ingest": (t_export["seconds"] + t_central["seconds"]) / t_ingest["seconds"],
        "push_cpu_ratio_vs_ingest": (t_export["cpu"] + t_central["cpu"]) / t_ingest["cpu"],
        "export_cpu_ratio_vs_bare_parquet": t_export["cpu"] / max(t_bare["cpu"], 1e-9),
        "central_cpu_ratio_vs_bare_parquet": t_central["cpu"] / max(t_bare["cpu"], 1e-9),
        "load_average_1min": os.getloadavg()[0],
        "cpus": os.cpu_count() or 0,
    }
    console.print({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()})
    write_json(args.out, {"clinical_push": result})
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
