"""Image files in and out, with the errors and the determinism the preparation needs.

Reading names the file when it is missing or corrupt. Writing gives the same bytes for the
same pixels: a fixed JPEG quality, no EXIF or other metadata, no optimisation passes that
depend on the encoder's defaults.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from overlearning.core.atomic import writing
from overlearning.core.errors import WorkflowInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Largest image (width x height) read, checked from the header before any pixel is decoded:
# a few hundred bytes of PNG can declare gigabytes of pixels. The preparation rules set it
# from preparation.max_image_pixels; every other reader keeps this default.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
_limit = {"pixels": DEFAULT_MAX_IMAGE_PIXELS}
# PIL's own default, which the study's torchvision ``save_image`` crops were written with.
DEFAULT_JPEG_QUALITY = 75


def set_max_image_pixels(pixels: int) -> None:
    """Set the largest width x height any reader here accepts (preparation.max_image_pixels)."""
    if not isinstance(pixels, int) or isinstance(pixels, bool) or pixels < 1:
        raise ValueError(f"max image pixels must be a positive integer, got {pixels!r}")
    _limit["pixels"] = pixels
    # PIL's own guard stays above ours, so ours (naming the file and the key) speaks first.
    Image.MAX_IMAGE_PIXELS = max(pixels, Image.MAX_IMAGE_PIXELS or 0)


def max_image_pixels() -> int:
    return _limit["pixels"]


def _check_declared_size(path: object, image: Image.Image) -> None:
    width, height = image.size
    if width * height > _limit["pixels"]:
        raise WorkflowInputError(
            path, f"header: expected at most {_limit['pixels']} pixels "
                  f"(preparation.max_image_pixels), found {width}x{height} = "
                  f"{width * height} (refused before decoding)")


def _bomb(path: object, exc: Exception) -> WorkflowInputError:
    # PIL refuses sizes far above its own limit while reading the header.
    return WorkflowInputError(path, f"header: expected at most {_limit['pixels']} pixels "
                                    f"(preparation.max_image_pixels), found more ({exc}); "
                                    "refused before decoding")


def _open(path: Path, mode: str) -> np.ndarray:
    return np.asarray(_load(path, path).convert(mode))


def _load(source: Path | io.BytesIO, where: object) -> Image.Image:
    """The decoded image of a file or an in-memory buffer, its size checked before decoding."""
    try:
        with Image.open(source) as image:
            _check_declared_size(where, image)
            image.load()  # the pixels stay in memory once the file handle closes
            return image
    except FileNotFoundError:
        raise WorkflowInputError(where, "image file not found") from None
    except Image.DecompressionBombError as exc:
        raise _bomb(where, exc) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, MemoryError) as exc:
        raise WorkflowInputError(where, f"corrupt or unreadable image ({exc})") from None


def image_from_bytes(data: bytes, where: object) -> Image.Image:
    """A decoded PIL image of encoded bytes (a pack member); ``where`` names it in errors."""
    return _load(io.BytesIO(data), where)


def rgb_from_bytes(data: bytes, where: object) -> np.ndarray:
    """H x W x 3 uint8 of encoded bytes, as :func:`read_rgb` reads a file."""
    return np.asarray(image_from_bytes(data, where).convert("RGB"))


def mask_from_bytes(data: bytes, where: object) -> np.ndarray:
    """H x W uint8 of 0/1 of encoded bytes, as :func:`read_mask` reads a file."""
    return (np.asarray(image_from_bytes(data, where).convert("L")) > 0).astype(np.uint8)


def size_from_bytes(data: bytes, where: object) -> tuple[int, int]:
    """(width, height) from the header of encoded bytes."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_declared_size(where, image)
            return image.size
    except Image.DecompressionBombError as exc:
        raise _bomb(where, exc) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise WorkflowInputError(where, f"unreadable image ({exc})") from None


def encode_image(pixels: np.ndarray, suffix: str, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """The bytes :func:`write_image` writes for these pixels and this suffix."""
    buffer = io.BytesIO()
    _save(Image.fromarray(np.ascontiguousarray(pixels)), buffer, suffix, quality)
    return buffer.getvalue()


def _save(image: Image.Image, target: Path | io.BytesIO, suffix: str, quality: int) -> None:
    suffix = suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        image.save(target, format="JPEG", quality=quality, optimize=False, progressive=False)
    elif suffix == ".png":
        image.save(target, format="PNG", optimize=False)
    else:
        raise ValueError(f"unsupported image suffix {suffix!r} for {target}")


def image_files(folder: Path | str) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (Thumbs.db and the like ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WorkflowInputError(folder, "image folder not found")
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                  key=lambda p: p.name)


def image_names(folder: Path | str) -> list[str]:
    """The names of :func:`image_files`."""
    return [p.name for p in image_files(folder)]


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            _check_declared_size(path, image)
            return image.size
    except FileNotFoundError:
        raise WorkflowInputError(path, "image not found") from None
    except Image.DecompressionBombError as exc:
        raise _bomb(path, exc) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise WorkflowInputError(path, f"unreadable image ({exc})") from exc


def read_rgb(path: Path | str) -> np.ndarray:
    """H x W x 3 uint8 (grey and palette images are converted, as the study's loader did)."""
    return _open(Path(path), "RGB")


def read_mask(path: Path | str) -> np.ndarray:
    """H x W uint8 of 0/1: any non-zero grey value is foreground."""
    return (_open(Path(path), "L") > 0).astype(np.uint8)


def write_image(path: Path | str, pixels: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> None:
    """Save uint8 pixels; the format follows the suffix (.jpg/.jpeg or .png).

    Written in place: callers build whole folders in a temporary directory (see
    ``overlearning.core.atomic``), so a single file needs no temporary name of its own.
    """
    path = Path(path)
    with writing(path):
        _save(Image.fromarray(np.ascontiguousarray(pixels)), path, path.suffix, quality)
