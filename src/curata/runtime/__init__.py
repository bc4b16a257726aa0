"""Executors: a local process pool by default; Dask distributed where a cluster is configured."""

from curata.runtime.pool import default_workers, die_with_parent, imap_unordered, start_worker

__all__ = ["default_workers", "die_with_parent", "imap_unordered", "start_worker"]
