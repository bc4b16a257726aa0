"""Curata: hospital medical images to ready-to-use, de-identified AI datasets."""

__version__ = "0.1.0"
