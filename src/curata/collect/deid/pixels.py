"""Clean Pixel Data: find burned-in text with OCR (tesseract), black it out, re-encode, confirm.

Only object classes that may carry burned-in text are decoded; every other image keeps its pixel
bytes exactly as they came (the engine never touches them).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from curata.errors import DeidError, decoding, is_fatal

# SOP classes whose pixels often hold burned-in text: ultrasound, secondary and screen captures,
# visible-light photography and video, X-ray angiography/fluoroscopy, ophthalmic photography.
BURNED_IN_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6",
        "1.2.840.10008.5.1.4.1.1.6.1",
        "1.2.840.10008.5.1.4.1.1.6.2",
        "1.2.840.10008.5.1.4.1.1.3",
        "1.2.840.10008.5.1.4.1.1.3.1",
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.1",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
        "1.2.840.10008.5.1.4.1.1.7.4",
        "1.2.840.10008.5.1.4.1.1.77.1.1",
        "1.2.840.10008.5.1.4.1.1.77.1.1.1",
        "1.2.840.10008.5.1.4.1.1.77.1.2",
        "1.2.840.10008.5.1.4.1.1.77.1.2.1",
        "1.2.840.10008.5.1.4.1.1.77.1.4",
        "1.2.840.10008.5.1.4.1.1.77.1.4.1",
        "1.2.840.10008.5.1.4.1.1.77.1.5.1",
        "1.2.840.10008.5.1.4.1.1.77.1.5.2",
        "1.2.840.10008.5.1.4.1.1.12.1",
        "1.2.840.10008.5.1.4.1.1.12.2",
    }
)
BURNED_IN_MODALITIES = frozenset({"US", "SC", "OT", "XC", "ES", "GM", "OP", "DOC"})
DETECT_CONF = 40.0  # tesseract word confidence (0-100) at which a box is masked
CONFIRM_CONF = 60.0  # after masking, a word this confident means we could not clean the image
MAX_ROUNDS = 3
PAD = 3


def unused_bits(
    data: bytes | memoryview, allocated: int, stored: int, high_bit: int, signed: bool, little: bool = True
) -> bytes | None:
    """Native pixel data with the bits outside the stored ones (Bits Stored, ending at High Bit)
    cleared, or None when they carry nothing: zero, or (signed data) the sign bit repeated.

    Those bits are not part of the image: every conformant reader masks them. They are where the
    retired embedded overlays lived (Overlay Bit Position), so a name drawn there survives any
    cleaning of the header and the overlay elements, and no viewer that honours the overlay elements
    is needed to read it back. Clearing them never changes the image a reader shows.
    Raises DeidError for a layout in which the stored bits cannot lie (refused, never guessed)."""
    if stored >= allocated or allocated not in (8, 16, 32):
        return None  # no bit outside the stored ones (or a layout with none to clear: 1-bit, float)
    if not 0 < stored <= high_bit + 1 <= allocated:
        raise DeidError(
            f"pixel data: Bits Stored {stored}, High Bit {high_bit} do not fit Bits Allocated {allocated}"
        )
    size = allocated // 8
    usable = len(data) - len(data) % size
    if allocated == 16 and high_bit == stored - 1 and little and _clean_16(data, usable, stored, signed):
        return None  # the common case (12 bits in 16), decided by one pass
    dtype = np.dtype(f"{'<' if little else '>'}u{size}")
    values = np.frombuffer(data, dtype=dtype, count=usable // size).astype(np.uint64)
    low = high_bit - stored + 1
    kept = values & np.uint64(((1 << stored) - 1) << low)
    if signed:  # the sign bit repeated above High Bit, as two's complement writers store it
        above = np.uint64(((1 << allocated) - 1) & ~((1 << (high_bit + 1)) - 1))
        kept = np.where(kept & np.uint64(1 << high_bit), kept | above, kept)
        clean = (values == kept) | (values == (kept & ~above))  # zero-filled negatives carry nothing
    else:
        clean = values == kept
    if bool(clean.all()):
        return None
    return kept.astype(dtype).tobytes() + bytes(len(data) - usable)


def _clean_16(data: bytes | memoryview, usable: int, stored: int, signed: bool) -> bool:
    """Whether 16-bit samples with ``stored`` low bits carry nothing above them: all below 2**stored,
    or (signed) also the sign repeated, 2**16 - 2**(stored-1) and up. Shifted by 2**(stored-1)
    (modulo 2**16), both ranges become one: a single maximum decides."""
    values = np.frombuffer(data, "<u2", count=usable // 2)
    if not values.size:
        return True
    if not signed:
        return int(values.max()) < 1 << stored
    half = 1 << (stored - 1)
    return int((values + np.uint16(half)).max()) < (1 << stored) + half


def image_bytes(
    rows: int,
    columns: int,
    frames: int | None,
    samples: int,
    allocated: int,
    length: int,
    ybr422: bool = False,
) -> int:
    """Bytes of native pixel data the image needs (bit-packed for 1-bit data; YBR_FULL_422 holds two
    samples a pixel), before the pad byte. ``frames`` None (Number of Frames unreadable): as many whole
    frames as ``length`` holds, so no frame is ever cut."""
    per_pixel = 2 if ybr422 and samples == 3 else samples
    frame_bits = rows * columns * per_pixel * allocated
    if frames is None:
        frames = max(1, length * 8 // frame_bits) if frame_bits else 1
    return (frame_bits * frames + 7) // 8


def frame_count(value: object) -> int | None:
    """Number of Frames as a count, or None where it is not one."""
    try:
        frames = int(str(value).strip() or 1)
    except ValueError:
        return None
    return frames if frames > 0 else None


def _bit_layout(ds: Dataset) -> tuple[int, int, int, bool]:
    """(Bits Allocated, Bits Stored, High Bit, signed), the last three defaulted as readers do."""
    allocated = int(ds.BitsAllocated)
    stored = int(ds.get("BitsStored") or allocated)
    high_bit = ds.get("HighBit")
    return (
        allocated,
        stored,
        stored - 1 if high_bit is None else int(high_bit),
        int(ds.get("PixelRepresentation") or 0) == 1,
    )


def clear_outside_image(ds: Dataset) -> list[str]:
    """Native Pixel Data holds nothing outside the image: bytes after the last frame (beyond the pad
    byte) that are not all zero are dropped, as pydicom drops them on reading ("trailing-bytes"), and the bits outside Bits
    Stored cleared (``unused_bits``: "unused-bits"). Both are out of every reader's view and of the
    gate's, which does not read image bytes as text. What was cleared; the value written back."""
    elem = ds["PixelData"] if "PixelData" in ds else None  # noqa: SIM401 (the element, not its value)
    if elem is None or not isinstance(elem.value, bytes | bytearray):
        return []
    if ds.get("BitsAllocated") is None:
        return []  # no reader can lay the bits out: nothing is shown from them
    if elem.is_undefined_length:
        return _encapsulated(ds, elem)
    try:
        allocated, stored, high_bit, signed = _bit_layout(ds)
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel") or 1)
    except (AttributeError, TypeError, ValueError) as exc:  # no image to show: all of it is outside one
        raise DeidError("pixel data with an unreadable image size or bit layout") from exc
    data = bytes(elem.value)
    cleared = []
    ybr422 = str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422"
    frames = frame_count(ds.get("NumberOfFrames") or 1)
    expected = image_bytes(rows, columns, frames, samples, allocated, len(data), ybr422)
    if len(data) < expected:  # cut short on the way (a sender, a spool, a disk): not the image it declares
        raise DeidError(
            f"native pixel data truncated: {len(data)} of the {expected} bytes its size and bit layout declare"
        )
    if len(data) > expected + (expected & 1) and data[expected:].strip(b"\0"):  # zeros carry nothing
        data = data[:expected] + bytes(expected & 1)
        cleared.append("trailing-bytes")
    little = ds.file_meta.TransferSyntaxUID.is_little_endian if "TransferSyntaxUID" in ds.file_meta else True
    bits = unused_bits(data, allocated, stored, high_bit, signed, little)
    if bits is not None:
        data = bits
        cleared.append("unused-bits")
    if cleared:
        elem.value = data
    return cleared


def _decoded(ds: Dataset, purpose: str, *, as_coded: bool = False) -> np.ndarray:
    """Every frame decoded (``as_coded``: no colour conversion, no correction of the unused bits);
    DeidError when it cannot be."""
    from pydicom.pixels import pixel_array

    try:
        return pixel_array(ds, raw=True, correct_unused_bits=False) if as_coded else ds.pixel_array
    except BaseException as exc:  # a Rust decoder panics on a corrupt frame
        if is_fatal(exc):
            raise
        raise DeidError(f"cannot decode pixel data to {purpose} ({type(exc).__name__}: {exc})") from exc


def _encapsulated(ds: Dataset, elem: DataElement) -> list[str]:
    """What compressed frames carry besides the image.

    - A Basic Offset Table that is not one: emptied ("offset-table").
    - RLE: its frames are runs of bytes with no place for metadata, yet text fits in fragments beyond
      the frames (dropped: "fragments"), in the header's unused offsets, after the last segment, and
      the unused bits ride in the high-byte segment. Decoded as a reader decodes it (unused bits
      corrected) and encoded again, so nothing but the samples passes ("re-encoded"; the samples are
      the same). A frame no decoder reads is left as it is, for QC to fail its series (see README).
    - Other codestreams: a JPEG-LS or JPEG 2000 stream of 16-bit precision labelled 12 bits stored
      hands the decoder (and pydicom's ``pixel_array``) the plane above. Where every frame's header
      declares no more bits than stored, nothing can be there and nothing is decoded; otherwise the
      frames are decoded as coded (no correction) and, when the plane holds anything, stored again
      masked, RLE Lossless ("unused-bits")."""
    from pydicom.uid import RLELossless

    from curata.collect.deid import codestream

    cleared = []
    try:
        table = codestream.offset_table_cleared(elem.value)
    except codestream.CodestreamError:
        table = None  # malformed items: the codestream step refuses the object
    if table is not None:
        elem.value = table
        cleared.append("offset-table")
    try:
        allocated, stored, high_bit, signed = _bit_layout(ds)
    except (TypeError, ValueError):
        return cleared  # no layout: the decoder refuses it later, or the burned-in step does
    if ds.file_meta.get("TransferSyntaxUID") == RLELossless:
        count = frame_count(ds.get("NumberOfFrames") or 1) or 1
        items = codestream._fragments(elem.value)
        if len(items) > count:  # one fragment a frame: those after the last frame are no image
            kept = b"".join(bytes(elem.value[off - 8 : off + n]) for off, n in items[:count])
            elem.value = bytes(elem.value[: items[0][0] - 8]) + kept
            cleared.append("fragments")
        try:
            arr = _decoded(ds, "encode its samples again")
        except DeidError:  # a frame no decoder reads is no image: QC fails its series with the reason
            return cleared
        multi = count > 1
        _store(ds, np.asarray(_frames(arr, ds) if multi else arr))
        _recompress(ds)
        return [*cleared, "re-encoded"]
    if not decoded_for_unused_bits(elem.value, allocated, stored, high_bit):
        return cleared  # no decoder output can reach the unused bits
    arr = _decoded(ds, "check the bits outside Bits Stored", as_coded=True)
    dtype = np.dtype(f"<u{allocated // 8}")
    masked = unused_bits(arr.astype(dtype, copy=False).tobytes(), allocated, stored, high_bit, signed)
    if masked is None:
        return cleared
    frames = np.frombuffer(masked, dtype).reshape(arr.shape)
    if signed:
        frames = frames.view(f"<i{allocated // 8}")
    _store(ds, frames)
    _recompress(ds)
    return [*cleared, "unused-bits"]


def decoded_for_unused_bits(value: bytes | bytearray, allocated: int, stored: int, high_bit: int) -> bool:
    """Whether compressed frames (not RLE) are decoded to check the bits outside Bits Stored: unless
    none are, or every frame's header declares no more bits than stored (``codestream.precision``)."""
    from curata.collect.deid import codestream

    if stored >= allocated or allocated not in (8, 16, 32):
        return False
    try:
        bits = codestream.precision(value)
    except codestream.CodestreamError:
        bits = None
    return not (bits is not None and bits <= stored and high_bit == stored - 1)


def may_carry_burned_in_text(ds: Dataset) -> bool:
    flag = str(ds.get("BurnedInAnnotation", "") or "").upper()
    if flag == "YES":
        return True
    if str(ds.get("SOPClassUID", "")) in BURNED_IN_CLASSES:
        return True
    return flag != "NO" and str(ds.get("Modality", "") or "").upper() in BURNED_IN_MODALITIES


@dataclass(frozen=True)
class Region:
    """A per-site region template: where a vendor/class writes its text, masked whatever OCR says.

    Matches on modality, SOP class UID and a manufacturer substring (empty: any). ``top`` and
    ``bottom`` are bands as fractions of the height; ``boxes`` are (x0, y0, x1, y1) fractions.
    """

    name: str
    modalities: tuple[str, ...] = ()
    sop_classes: tuple[str, ...] = ()
    manufacturer: str = ""
    top: float = 0.0
    bottom: float = 0.0
    boxes: tuple[tuple[float, float, float, float], ...] = ()

    def matches(self, ds: Dataset) -> bool:
        if self.modalities and str(ds.get("Modality", "") or "").upper() not in self.modalities:
            return False
        if self.sop_classes and str(ds.get("SOPClassUID", "")) not in self.sop_classes:
            return False
        return (
            not self.manufacturer
            or self.manufacturer.lower() in str(ds.get("Manufacturer", "") or "").lower()
        )

    def mask(self, frames: np.ndarray, fill: float) -> None:
        rows, cols = frames.shape[1], frames.shape[2]
        if self.top > 0:
            frames[:, : int(np.ceil(rows * self.top))] = fill
        if self.bottom > 0:
            frames[:, rows - int(np.ceil(rows * self.bottom)) :] = fill
        for x0, y0, x1, y1 in self.boxes:
            frames[:, int(rows * y0) : int(np.ceil(rows * y1)), int(cols * x0) : int(np.ceil(cols * x1))] = (
                fill
            )


# Defaults (a site replaces them in its TOML, see README): the header and footer bands where
# ultrasound and screen-capture systems write names, IDs and dates.
DEFAULT_REGIONS: tuple[Region, ...] = (
    Region("ultrasound header/footer", modalities=("US", "IVUS"), top=0.12, bottom=0.06),
    Region(
        "capture header/footer",
        modalities=("SC", "OT", "XC", "ES", "GM", "OP", "DOC", "XA", "RF", "SM"),
        top=0.10,
        bottom=0.08,
    ),
)
FALLBACK_REGION = Region("review mask (header/footer)", top=0.12, bottom=0.10)


class ReviewNeeded(DeidError):
    """May carry burned-in text, OCR found none and no region template applies: a person decides."""


@dataclass
class Box:
    left: int
    top: int
    width: int
    height: int
    text: str
    conf: float


def ocr_available() -> bool:
    return shutil.which("tesseract") is not None


def _to_gray8(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.float32)
    if f.ndim == 3:
        f = f[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32) if f.shape[-1] >= 3 else f[..., 0]
    lo, hi = float(f.min()), float(f.max())
    if hi <= lo:
        return np.zeros(f.shape, dtype=np.uint8)
    return ((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def find_text(
    gray: np.ndarray, min_conf: float = DETECT_CONF, min_chars: int = 2, *, thorough: bool = True
) -> list[Box]:
    """Words tesseract reads in an 8-bit image (either polarity), in the image's own coordinates."""
    if gray.dtype != np.uint8 or gray.ndim != 2:
        gray = _to_gray8(gray)
    from PIL import Image

    if not ocr_available():
        raise DeidError(
            "tesseract is not installed, so burned-in text cannot be checked",
            hint="install Debian's tesseract-ocr (scripts/system-deps.sh)",
        )
    # Small text is read better upscaled, light-on-dark and dark-on-light differently: every image is
    # read in both polarities, images under 640 px at two sizes (x2 and x1), and the words pooled.
    # (``thorough=False``: one pass, for the re-checks after masking.)
    scales = (2, 1) if max(gray.shape) < 640 else (1,)
    passes = [(g, sc) for g in (gray, 255 - gray) for sc in scales] if thorough else [(gray, scales[0])]
    boxes: list[Box] = []
    for img8, scale in passes:
        img = Image.fromarray(img8)
        if scale != 1:
            img = img.resize((img.width * scale, img.height * scale), Image.Resampling.BICUBIC)
        img.format = "PPM"  # handed to tesseract as an uncompressed PGM: the same pixels, no PNG deflate
        data = _tesseract(img)
        for i, word in enumerate(data["text"]):
            conf = float(data["conf"][i])
            if conf < min_conf or sum(ch.isalnum() for ch in word) < min_chars:
                continue
            boxes.append(
                Box(
                    data["left"][i] // scale,
                    data["top"][i] // scale,
                    -(-data["width"][i] // scale),
                    -(-data["height"][i] // scale),
                    word,
                    conf,
                )
            )
    return boxes


def _tesseract(img: object) -> dict:
    """One tesseract run, single-threaded: our workers already use every core (OpenMP would oversubscribe)."""
    import pytesseract

    saved = os.environ.get("OMP_THREAD_LIMIT")
    os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        return pytesseract.image_to_data(img, config="--psm 11", output_type=pytesseract.Output.DICT)
    finally:
        if saved is None:
            os.environ.pop("OMP_THREAD_LIMIT", None)
        else:
            os.environ["OMP_THREAD_LIMIT"] = saved


def _frames(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Pixels as (frames, rows, cols[, samples])."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    return arr[np.newaxis] if n == 1 else arr


def _composite(frames: np.ndarray) -> np.ndarray:
    if frames.shape[0] == 1:
        return _to_gray8(frames[0])
    pick = np.unique(np.linspace(0, frames.shape[0] - 1, min(16, frames.shape[0])).astype(int))
    return np.max(np.stack([_to_gray8(frames[i]) for i in pick]), axis=0)


def clean_burned_in(
    ds: Dataset,
    *,
    ocr: bool = True,
    regions: tuple[Region, ...] = DEFAULT_REGIONS,
    policy: str = "template",
    decision: str | None = None,
) -> tuple[str, str]:
    """Clear an object that may carry burned-in text: ``(pixel state, cleared by)``.

    OCR masks every word it reads (both polarities, several sizes). Then the first region template
    that matches the object masks its bands whether OCR found text or not. With no template: when OCR
    found and masked text, the object is cleared by OCR; when OCR found nothing, that proves nothing,
    so the object raises ``ReviewNeeded`` (policy ``review``, or no template) for a person to accept,
    mask or drop. ``decision`` is that person's answer (``accept``: pixels as they are; ``mask``: the
    fallback bands). Raises DeidError when the pixels cannot be decoded or text remains after masking.
    """
    if decision == "accept":
        ds.BurnedInAnnotation = "NO"
        return "kept", "review"
    arr = _decoded(ds, "look for burned-in text")
    frames = np.array(_frames(arr, ds), copy=True)
    mono1 = str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    fill = frames.max() if mono1 else (0 if frames.ndim == 4 else frames.min())
    masked_any = False
    for _round in range(MAX_ROUNDS if ocr else 0):
        boxes = find_text(_composite(frames))  # every round reads as hard as the first: masking leaves edges
        if not boxes:
            break
        masked_any = True
        rows, cols = frames.shape[1], frames.shape[2]
        for b in boxes:
            t, left = max(0, b.top - PAD), max(0, b.left - PAD)
            frames[:, t : min(rows, b.top + b.height + PAD), left : min(cols, b.left + b.width + PAD)] = fill
    else:  # every round still found text: one last, stricter look decides
        confirm = find_text(_composite(frames), CONFIRM_CONF, 3, thorough=False) if ocr else []
        if confirm:
            raise DeidError(
                f"burned-in text remains after masking ({len(confirm)} word(s) still legible); "
                "cannot clean with confidence"
            )
    region = None
    if decision == "mask":
        region = FALLBACK_REGION
    elif policy == "template":
        region = next((r for r in regions if r.matches(ds)), None)
    if region is not None:
        region.mask(frames, fill)
        by = "review+mask" if decision == "mask" else ("ocr+template" if masked_any else "template")
    elif masked_any:
        by = "ocr"
    else:
        raise ReviewNeeded(
            "may carry burned-in text, OCR found none and no region template applies: needs review",
            hint="curata deid-review list; then accept, mask or drop it",
        )
    ds.BurnedInAnnotation = "NO"
    was_compressed = ds.file_meta.TransferSyntaxUID.is_compressed
    _store(ds, frames if int(ds.get("NumberOfFrames", 1) or 1) > 1 else frames[0])
    if was_compressed:
        _recompress(ds)
    return "cleaned", by


def _recompress(ds: Dataset) -> None:
    """A compressed input stays compressed: masked pixels are re-encoded RLE Lossless (pydicom's own
    encoder: lossless, no plugin needed); left uncompressed when that fails."""
    from pydicom.uid import RLELossless

    try:
        ds.compress(RLELossless, generate_instance_uid=False)
    except Exception:  # an unusual layout: uncompressed is still correct
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


_WORD_SIZE = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}  # bytes a value's words take
_PIXEL_DATA = 0x7FE00010


def _store(ds: Dataset, arr: np.ndarray) -> None:
    """Write masked pixels back uncompressed (Explicit VR Little Endian), keeping the SOP Instance UID."""
    if not ds.file_meta.TransferSyntaxUID.is_little_endian:
        # a big-endian (retired) object: every element is decoded now so that it can be written
        # little endian (raw elements keep their byte order otherwise)
        for elem in ds.iterall():
            value = elem.value
            size = _WORD_SIZE.get(elem.VR)
            if size and isinstance(value, bytes) and len(value) % size == 0 and elem.tag != _PIXEL_DATA:
                # pydicom keeps OW/OF/OL/OD/OV values as their bytes: in the input's byte order, which
                # a little endian file would read swapped (a palette's colours, an overlay's bits)
                elem.value = np.frombuffer(value, f">u{size}").astype(f"<u{size}").tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.set_original_encoding(False, True, ds.original_character_set)
    pi = str(ds.PhotometricInterpretation)
    if int(ds.get("SamplesPerPixel", 1)) == 3 and pi.startswith("YBR"):
        pi = "RGB"  # pydicom hands decoded YBR data over as RGB
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)  # big-endian input decodes as >u2, >u4
    if pi == "PALETTE COLOR" or arr.dtype not in (
        np.uint8,
        np.uint16,
        np.uint32,
        np.int8,
        np.int16,
        np.int32,
    ):
        arr = arr.astype(np.uint16 if arr.dtype.itemsize > 1 else np.uint8)
    bits = int(ds.get("BitsStored", arr.dtype.itemsize * 8))
    if (
        arr.dtype.itemsize == 4
    ):  # 32-bit samples: pydicom's set_pixel_data stops at 16, write them as they are
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PhotometricInterpretation = pi
        if int(ds.get("SamplesPerPixel", 1)) > 1:
            ds.PlanarConfiguration = 0  # decoded arrays are interleaved
        ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        ds["PixelData"].VR = "OW"
        ds["PixelData"].is_undefined_length = False  # native now, not encapsulated
        return
    ds.set_pixel_data(arr, pi, min(bits, arr.dtype.itemsize * 8), generate_instance_uid=False)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


_OVERLAY_VERDICTS: dict[bytes, bool] = {}
_OVERLAY_CACHE_MAX = 4096


def overlay_is_clean(ds: Dataset, group: int) -> bool:
    """True when OCR finds no text in the overlay plane of ``group`` (Clean Graphics).

    A series usually repeats one overlay plane on every slice: the verdict is cached per process by the
    sha256 of the plane's geometry and bits, so OCR runs once per distinct plane, not once per slice.
    """
    try:
        elem = ds[(group << 16) | 0x3000]
        key = hashlib.sha256(
            b"%d,%d,%s|"
            % (
                int(ds[(group << 16) | 0x0010].value),
                int(ds[(group << 16) | 0x0011].value),
                str(ds.get((group << 16) | 0x0050).value if (group << 16) | 0x0050 in ds else "").encode(),
            )
            + bytes(elem.value)
        ).digest()
    except Exception:
        key = b""
    if key and key in _OVERLAY_VERDICTS:
        return _OVERLAY_VERDICTS[key]
    try:
        bitmap = ds.overlay_array(group)
    except Exception:
        return False
    planes = bitmap if bitmap.ndim == 3 else bitmap[np.newaxis]
    gray = (np.max(planes, axis=0) > 0).astype(np.uint8) * 255
    try:
        clean = not find_text(gray)
    except DeidError:
        return False
    if key:
        if len(_OVERLAY_VERDICTS) >= _OVERLAY_CACHE_MAX:
            _OVERLAY_VERDICTS.clear()
        _OVERLAY_VERDICTS[key] = clean
    return clean


def thumbnail_png(ds: Dataset, size: int = 256) -> bytes:
    """A small grey PNG of the object's pixels (every frame pooled) for the on-site review list."""
    import io

    from PIL import Image

    with decoding("pixel data for a thumbnail"):
        arr = ds.pixel_array
    frames = _frames(arr, ds)
    img = Image.fromarray(_composite(frames))
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
