"""Executors: a local process pool by default; Dask distributed where a cluster is configured."""

from curata.runtime.pool import default_workers, imap_unordered

__all__ = ["default_workers", "imap_unordered"]
