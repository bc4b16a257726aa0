"""DICOMweb client side of the gateway: pull studies from a PACS with QIDO-RS and WADO-RS."""

from __future__ import annotations

from curata.collect.dicomweb.multipart import decode as multipart_decode
from curata.collect.dicomweb.multipart import encode as multipart_encode
from curata.collect.dicomweb.pull import pull_dicomweb

__all__ = ["multipart_decode", "multipart_encode", "pull_dicomweb"]
