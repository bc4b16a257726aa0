"""Site secrets: 32 random bytes, hex-encoded in a file readable by its owner alone."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

from curata._io import atomic_write
from curata.errors import KeyFileError

KEY_BYTES = 32
_HEADER = "# curata site secret: keep on site, never share, never commit\n"


def generate_key_file(path: Path, *, overwrite: bool = False) -> Path:
    """Write a new site secret to ``path`` with mode 0600 (atomically; refuses to overwrite)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise KeyFileError(
            f"{path} already exists",
            hint="a site key must not be replaced by accident; "
            "pick another file name or remove the old key knowingly",
        )
    atomic_write(path, _HEADER + secrets.token_hex(KEY_BYTES) + "\n", mode=0o600, durable_name=True)
    return path


def read_key_file(path: Path) -> bytes:
    """Read a site secret, refusing files others can read and keys that are too short."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError as exc:
        raise KeyFileError(f"key file {path} not found", hint="create one with `curata keygen FILE`") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:  # raw bytes (a `head -c 32 /dev/urandom` key): never quoted back
        raise KeyFileError(
            f"key file {path} does not hold a hex secret (it is binary)",
            hint="create a proper one with `curata keygen FILE`",
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {path} is readable by others (mode {stat.S_IMODE(mode):o})",
            hint=f"run `chmod 600 {path}`",
        )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    try:
        key = bytes.fromhex(lines[0]) if lines else b""
    except ValueError as exc:
        raise KeyFileError(f"key file {path} does not hold a hex secret") from exc
    if len(key) < 16:
        raise KeyFileError(
            f"key in {path} is {len(key)} bytes; at least 16 are required",
            hint="create a proper one with `curata keygen FILE`",
        )
    return key
