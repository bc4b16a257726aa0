"""Curata's own errors: every message says what went wrong, where, and what to do about it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_MAX_REASON = 300


class CurataError(Exception):
    """Base of every error Curata raises on purpose. The CLI prints these without a traceback."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(CurataError):
    """A configuration file or option is missing, malformed or contradictory."""

    exit_code = 2


class WorkspaceError(CurataError):
    """The workspace is missing, not initialised, or inconsistent."""

    exit_code = 2


class CatalogError(CurataError):
    """The catalog database cannot be opened, migrated or queried."""


class StoreError(CurataError):
    """The blob store cannot read or write an object."""


class BlobNotFound(StoreError):
    """A digest the catalog names is not in the store."""


class IntegrityError(StoreError):
    """Stored bytes no longer hash to their digest."""


class InputError(CurataError):
    """An input file is unusable: not DICOM, truncated, or missing required attributes.

    Ingest and de-identification quarantine the file with this message as the reason.
    """

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message, hint=hint)
        self.reason = message
        self.path = path


class DecodeError(InputError):
    """Pixel data or an image a decoder cannot decode (a corrupt or truncated frame): the item is
    quarantined, refused or recorded as failed by its stage like any other bad input."""


class DeidError(CurataError):
    """De-identification could not guarantee a clean output; the input is quarantined, never passed on."""


class VaultError(CurataError):
    """The re-identification vault cannot take the records of a file (its folder or file gone or
    replaced during a run): the file is not released, and the batch stops."""


class KeyFileError(CurataError):
    """The site secret is missing, unreadable, too short or too widely readable."""

    exit_code = 2


class QueryError(CurataError):
    """A cohort query does not parse or names an unknown field; the message points at the token."""

    exit_code = 2


class NetworkError(CurataError):
    """A DICOM or HTTP peer refused, timed out or answered with a failure."""


class AnnotationError(CurataError):
    """An annotation request cannot be honoured: unknown project or task, a reader not assigned, a
    read that does not fit the task's series or schema, a case not ready for the step asked."""


def is_native_panic(exc: BaseException) -> bool:
    """A Rust extension's panic on bad input (pylibjpeg-rle on a corrupt RLE frame): pyo3 raises it as
    ``PanicException``, a BaseException, so ``except Exception`` lets it stop a whole run."""
    return type(exc).__name__ == "PanicException" and type(exc).__module__ == "pyo3_runtime"


def is_fatal(exc: BaseException) -> bool:
    """An interrupt or an exit (``KeyboardInterrupt``, ``SystemExit``...), which must stop a run. For
    a per-item ``except BaseException``: anything else, a native decoder's panic included, is the
    item's failure."""
    return not isinstance(exc, Exception) and not is_native_panic(exc)


@contextmanager
def decoding(
    what: str,
    *,
    path: str | None = None,
    corrupt: tuple[type[Exception], ...] = (),
    ordinary: bool = False,
) -> Iterator[None]:
    """Around a decoder's call: its panic on a corrupt ``what`` becomes a :class:`DecodeError`, an
    ``Exception`` that each stage's per-item handling already takes as bad input (and that, unlike
    the panic, crosses a process pool). Interrupts pass as they are; so do the decoder's ordinary
    errors, unless their classes are given as ``corrupt`` (a codec fed a slide's tile: any of its
    errors means the tile is damaged; only the error's type is kept, a codec's text quotes the bytes),
    or ``ordinary``: then a ``ValueError`` on pixel data cut short, a codec's ``RuntimeError`` on a
    garbage codestream and the like become the same :class:`DecodeError`, with the error's type and
    its redacted words (never the file's values)."""
    try:
        yield
    except CurataError:
        raise
    except BaseException as exc:
        if is_native_panic(exc) or isinstance(exc, corrupt):
            cause = f"the decoder failed on corrupt data ({type(exc).__name__})"
        elif ordinary and isinstance(exc, Exception):
            cause = f"the pixel data is damaged or does not fit its header ({_decoder_words(exc)})"
        else:
            raise
        raise DecodeError(
            f"cannot decode {what}: {cause}",
            path=path,
            hint="the file's pixel data is damaged; send it again from the source",
        ) from exc


def sanitize(reason: str) -> str:
    """Quoted text, paths and long numbers (dates, IDs, UIDs) out; tags like (0010,0010) stay."""
    from curata.console import redact

    return " ".join(redact(reason).split())[:_MAX_REASON]


def safe_reason(exc: BaseException) -> str:
    """A reason for ``exc`` fit to keep, log or answer: our own messages sanitised, anything else by
    type only (a parser's, a decoder's or a peer's text may quote a name, an ID or a path)."""
    if isinstance(exc, InputError):
        return sanitize(exc.reason)
    if isinstance(exc, CurataError):
        return sanitize(exc.message)
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or 'I/O error'}"
    # an unforeseen error: its message may quote the input, so only where it happened
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_frame.f_code.co_name}"
        tb = tb.tb_next
    return f"internal error ({type(exc).__name__}{' in ' + where if where else ''})"


def _decoder_words(exc: Exception, limit: int = 200) -> str:
    """``Type: message`` of a decoder's error on one line, quoted values, paths and long numbers out
    (a plugin may quote the bytes or name the file it read)."""
    from curata.console import redact

    words = " ".join(redact(str(exc)).split())
    text = f"{type(exc).__name__}: {words}" if words else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
