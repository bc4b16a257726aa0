"""Finding input files: folders (recursive), single files and zip archives, in a stable order.

Every thing found becomes a :class:`Source`, including what cannot be read: an unreadable folder,
a FIFO, a device (a symlink to ``/dev/zero``), an oversized file, a zip bomb or a corrupt member is
yielded with its ``problem`` so the batch records it (skipped or failed, with the reason) instead of
hanging, exhausting memory or shrinking silently. Reading is bounded: no input is read past
:data:`LIMITS` ``max_file_bytes``, and a zip member stops at its declared size, its ratio and the
archive's total, whatever its header claims.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from curata.errors import InputError

SKIP_NAMES = {"DICOMDIR", ".DS_Store", "Thumbs.db"}


@dataclass(frozen=True)
class InputLimits:
    """Bounds on what one input may cost (``[ingest]`` in curata.toml can change them)."""

    max_file_bytes: int = 4 << 30  # one file, or one zip member once inflated
    max_zip_members: int = 200_000
    max_zip_total_bytes: int = 64 << 30  # all members of one archive, inflated
    max_zip_ratio: int = 200  # inflated / compressed, for members above 1 MiB inflated


LIMITS = InputLimits()


@dataclass(frozen=True)
class Source:
    """One input, on disk or inside a zip archive. Picklable, so workers can read it themselves.

    ``index`` is the member's position in the archive (two members may share a name); ``problem``
    says why this input cannot be read at all (``kind`` is then ``skipped`` or ``failed``).
    """

    path: str
    member: str | None = None
    index: int | None = None
    problem: str | None = None
    kind: str = "failed"
    limits: InputLimits = LIMITS
    duplicate: bool = False  # another member of the same archive has the same name

    @property
    def name(self) -> str:
        if self.member is None:
            return self.path
        return f"{self.path}!{self.member}" + (f"#{self.index}" if self.duplicate else "")

    def read(self) -> bytes:
        if self.problem:
            raise InputError(self.problem)
        if self.member is None:
            return _read_file(self.path, self.limits.max_file_bytes)
        return _read_member(self.path, self.member, self.index, self.limits)

    @property
    def skipped(self) -> bool:
        """Directory records and desktop litter: not inputs, not errors either."""
        base = os.path.basename(self.member or self.path)
        return base in SKIP_NAMES


def _os_reason(exc: OSError) -> str:
    """The OS error without the path (paths may hold patient names)."""
    return exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _read_file(path: str, limit: int) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"cannot read: {_os_reason(exc)}") from exc
    with os.fdopen(fd, "rb", closefd=True) as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"not a regular file ({_kind(st.st_mode)})")
        if st.st_size > limit:
            raise InputError(f"file of {st.st_size} bytes is over the {limit}-byte input limit")
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise InputError(f"cannot read: {_os_reason(exc)}") from exc
    if len(data) > limit:
        raise InputError(f"file grew past the {limit}-byte input limit while being read")
    return data


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a plain file"


def _member_problem(info: zipfile.ZipInfo, limits: InputLimits) -> str | None:
    if info.flag_bits & 0x1:
        return "encrypted zip member"
    if info.file_size > limits.max_file_bytes:
        return f"zip member of {info.file_size} bytes inflated is over the {limits.max_file_bytes}-byte limit"
    if info.file_size > 1 << 20 and info.file_size > limits.max_zip_ratio * max(1, info.compress_size):
        return f"zip member inflates {info.file_size // max(1, info.compress_size)}x (limit {limits.max_zip_ratio}x)"
    return None


def _read_member(path: str, member: str, index: int | None, limits: InputLimits) -> bytes:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            info = infos[index] if index is not None and index < len(infos) else zf.getinfo(member)
            if info.filename != member:
                raise InputError("zip archive changed while being read")
            problem = _member_problem(info, limits)
            if problem:
                raise InputError(problem)
            cap = min(limits.max_file_bytes, max(info.file_size, 0))
            with zf.open(info) as fh:  # stop at the declared size, whatever the stream holds
                data = fh.read(cap + 1)
            if len(data) > cap:
                raise InputError("zip member inflates past its declared size")
            return data
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"cannot read zip member: {_os_reason(exc)}") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, ValueError) as exc:
        raise InputError(f"corrupt zip member ({type(exc).__name__})") from exc
    except (NotImplementedError, RuntimeError) as exc:
        raise InputError(f"unsupported zip member ({type(exc).__name__})") from exc


def iter_sources(paths: list[Path], limits: InputLimits = LIMITS) -> Iterator[Source]:
    """Every input under ``paths``: folders recursively (sorted), zip archives member by member.

    Nothing is dropped silently: what cannot be listed or read comes back with its ``problem``.
    """
    for root in paths:
        root = Path(root)
        if not root.exists() and not root.is_symlink():
            raise InputError("no such file or folder", path=str(root))
        if not root.is_dir():
            yield from _file_sources(root, limits)
            continue
        errors: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
            for exc in errors:
                yield Source(str(exc.filename or dirpath), problem=f"cannot list folder: {_os_reason(exc)}")
            errors.clear()
            dirnames.sort()
            for name in sorted(filenames):
                yield from _file_sources(Path(dirpath) / name, limits)
        for exc in errors:  # the root itself, or the last folder walked
            yield Source(str(exc.filename or root), problem=f"cannot list folder: {_os_reason(exc)}")


def _file_sources(path: Path, limits: InputLimits) -> Iterator[Source]:
    try:
        st = path.stat()  # follows symlinks: a link to /dev/zero is a device
    except OSError as exc:
        yield Source(str(path), problem=f"cannot read: {_os_reason(exc)}")
        return
    if not stat.S_ISREG(st.st_mode):
        yield Source(str(path), problem=f"not a regular file ({_kind(st.st_mode)})", kind="skipped")
        return
    if path.suffix.lower() != ".zip":
        yield Source(str(path), limits=limits)
        return
    try:
        if not zipfile.is_zipfile(path):
            yield Source(str(path), limits=limits)
            return
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except OSError as exc:
        yield Source(str(path), problem=f"cannot read: {_os_reason(exc)}")
        return
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as exc:
        yield Source(str(path), problem=f"corrupt zip archive ({type(exc).__name__})")
        return
    if len(infos) > limits.max_zip_members:
        yield Source(
            str(path), problem=f"zip archive of {len(infos)} members (limit {limits.max_zip_members})"
        )
        return
    declared = sum(max(0, i.file_size) for i in infos)
    if declared > limits.max_zip_total_bytes:
        yield Source(
            str(path),
            problem=f"zip archive inflates to {declared} bytes (limit {limits.max_zip_total_bytes})",
        )
        return
    counts: dict[str, int] = {}
    for info in infos:
        counts[info.filename] = counts.get(info.filename, 0) + 1
    order = sorted(range(len(infos)), key=lambda k: (infos[k].filename, k))
    for k in order:
        info = infos[k]
        if info.is_dir():
            continue
        # a name used twice: each member is its own input, told apart by its position
        yield Source(
            str(path),
            info.filename,
            index=k,
            problem=_member_problem(info, limits),
            limits=limits,
            duplicate=counts[info.filename] > 1,
        )
