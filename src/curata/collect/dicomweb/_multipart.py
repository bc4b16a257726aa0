"""Old name of :mod:`curata.collect.dicomweb.multipart`, kept so branches written against it still run.

Import ``curata.collect.dicomweb.multipart`` (or ``multipart_encode`` / ``multipart_decode`` from
``curata.collect.dicomweb``); the import-linter contract rejects this private name outside its package.
"""

from curata.collect.dicomweb.multipart import decode, encode

__all__ = ["decode", "encode"]
