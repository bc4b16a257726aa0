"""DICOMweb client side of the gateway: pull studies from a PACS with QIDO-RS and WADO-RS."""

from __future__ import annotations

from curata.collect.dicomweb.pull import pull_dicomweb

__all__ = ["pull_dicomweb"]
