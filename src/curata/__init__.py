"""Curata: hospital medical images to ready-to-use, de-identified AI datasets."""

from curata import _compiled

__version__ = "0.1.0"

_compiled.install()  # the engine's compiled core, where built from the current source (see _compiled)
