"""Collection: getting data into the platform, de-identified at the edge.

Public API (other stages, the CLI and the server use these)::

    Ingestor(ws, ...).run(paths) -> RunSummary       # import files and folders (curata ingest)
    generate_key_file(path), read_key_file(path)     # the site secret
    Receiver, OK_STATUSES                            # the gateway's receiving service (curata.collect.net)
    safe_reason(exc)                                 # an error as a reason fit to keep (no values, no paths)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.collect.ingest import Ingestor, IngestOutcome, quarantine_bytes
    from curata.collect.keys import generate_key_file, read_key_file
    from curata.collect.reasons import safe_reason

__getattr__ = lazy_exports(
    __name__,
    {
        "Ingestor": "ingest",
        "PlantedIdentity": "wsi.synthetic",  # synthetic slides with planted identity (demo, tests)
        "tissue_image": "wsi.synthetic",
        "write_svs": "wsi.synthetic",
        "IngestOutcome": "ingest",
        "quarantine_bytes": "ingest",
        "generate_key_file": "keys",
        "read_key_file": "keys",
        "safe_reason": "reasons",
    },
)

__all__ = [
    "IngestOutcome",
    "Ingestor",
    "PlantedIdentity",
    "generate_key_file",
    "quarantine_bytes",
    "read_key_file",
    "safe_reason",
    "tissue_image",
    "write_svs",
]
