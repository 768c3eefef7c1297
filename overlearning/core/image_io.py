"""Image files in and out, with the errors and the determinism the preparation needs.

Reading names the file when it is missing or corrupt. Writing gives the same bytes for the
same pixels: a fixed JPEG quality, no EXIF or other metadata, no optimisation passes that
depend on the encoder's defaults.
"""

from __future__ import annotations

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


def _check_declared_size(path: Path, image: Image.Image) -> None:
    width, height = image.size
    if width * height > _limit["pixels"]:
        raise WorkflowInputError(
            path, f"header: expected at most {_limit['pixels']} pixels "
                  f"(preparation.max_image_pixels), found {width}x{height} = "
                  f"{width * height} (refused before decoding)")


def _bomb(path: Path, exc: Exception) -> WorkflowInputError:
    # PIL refuses sizes far above its own limit while reading the header.
    return WorkflowInputError(path, f"header: expected at most {_limit['pixels']} pixels "
                                    f"(preparation.max_image_pixels), found more ({exc}); "
                                    "refused before decoding")


def _open(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            _check_declared_size(path, image)
            image.load()
            return np.asarray(image.convert(mode))
    except FileNotFoundError:
        raise WorkflowInputError(path, "image file not found") from None
    except Image.DecompressionBombError as exc:
        raise _bomb(path, exc) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, MemoryError) as exc:
        raise WorkflowInputError(path, f"corrupt or unreadable image ({exc})") from None


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
    image = Image.fromarray(np.ascontiguousarray(pixels))
    suffix = path.suffix.lower()
    if suffix not in (".jpg", ".jpeg", ".png"):
        raise ValueError(f"unsupported image suffix {suffix!r} for {path}")
    with writing(path):
        if suffix == ".png":
            image.save(path, format="PNG", optimize=False)
        else:
            image.save(path, format="JPEG", quality=quality, optimize=False, progressive=False)
