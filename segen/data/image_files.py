"""Opening user image files safely: the one gate every reader of user files goes through
(import, data add, validate, predict, generate --mask).

- Size: the header's width x height is checked against validate.max_image_pixels before a
  pixel is decoded (in place of Pillow's own MAX_IMAGE_PIXELS check), so a decompression
  bomb (a tiny file that decodes to gigabytes) is refused by name and size.
- Location: a file must lie inside the folder it was listed from once symlinks are
  resolved (a link out of the source folder, or a manifest path such as ../../etc/passwd,
  is refused).
- Damage: whatever Pillow raises for a broken file becomes one error naming the file.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # more than 8 bits per pixel


class ImageFileError(ValueError):
    """A user's file or folder that segen refuses; the message names it, says why and how
    to fix it (the importers' ImportPairsError, the layouts' LayoutError)."""


def inside(path: Path, root: Path, what: str = "file") -> Path:
    """path, refused unless it resolves (symlinks followed) to somewhere inside root."""
    resolved, base = path.resolve(), root.resolve()
    if not resolved.is_relative_to(base):
        how = "is a symlink to" if path.is_symlink() else "resolves to"
        raise ImageFileError(f"{path} {how} {resolved}, outside {base}; segen reads only "
                             f"files inside the {what} folder: copy the file in instead")
    return path


def open_image(path: Path, *, max_pixels: int, decode: bool = True, page: int = 0
                ) -> Image.Image:
    """The image (decoded if asked; `page` of a multi-page TIFF), or ImageFileError.

    Pillow's own limit (MAX_IMAGE_PIXELS, checked when the header is read) is replaced by
    ours for the header read, so that the refusal can name the size and the key to raise;
    no pixel is decoded before check_pixels has passed."""
    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        image = Image.open(path)
        Image.MAX_IMAGE_PIXELS = max_pixels  # any later size check of Pillow's: ours too
        check_pixels(path, image.size, max_pixels)
        if page:
            image.seek(page)
            check_pixels(path, image.size, max_pixels)
        if decode:
            image.load()  # truncated or corrupt pixel data fails here
        return image
    except ImageFileError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # what Pillow raises
        raise ImageFileError(f"{path} is unreadable, corrupt or truncated ({err}); re-export "
                             "it, or move it out of the folder") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageFileError(_too_large(path, f"{width}x{height} = {width * height:,} pixels",
                                        max_pixels))


def _too_large(path: Path, what: str, max_pixels: int) -> str:
    return (f"{path} is too large ({what}; the limit is validate.max_image_pixels = "
            f"{max_pixels:,}): a decompression bomb, or an image to tile or downscale first. "
            "If it is real, raise validate.max_image_pixels in params.yaml.")


def n_pages(path: Path, *, max_pixels: int) -> int:
    """Slices in a multi-page TIFF (1 for any other image)."""
    image = open_image(path, max_pixels=max_pixels, decode=False)
    with image:
        return getattr(image, "n_frames", 1)
