"""Decoding an import's samples: images to 8 bits, masks to class ids.

Mask kinds are decided once per dataset by the importer; here every mask becomes (H, W)
int64 values: through a palette lookup (RGB colour -> class id), as stored when
single-channel, or assembled from one binary mask per class (class folders: any non-zero
pixel is the class; where two overlap the later class wins; pixels in none are 0).

Images with more than 8 bits per pixel (16-bit PNG/TIFF, 32-bit) are mapped to 8 bits by
one linear map for the whole dataset, from its lowest to its highest value, so that
relative intensities between images are kept; a dataset mixing 8-bit and wider images is
refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from segen.data.image_files import WIDE_MODES, ImageFileError, open_image
from segen.data.layouts import Frame, Sample

GREY_MODES = {"1", "L", "LA"} | WIDE_MODES
ID_MODES = {"1", "L", "P"} | WIDE_MODES  # single-channel: the pixel values are the ids
Colour = tuple[int, int, int]


@dataclass
class Scan:
    """What one pass over every sample found, before anything is written."""
    values: dict[str, set[int]]  # mask (or sample) -> the values in it
    image_mode: str  # "L" only if every image is grey
    wide_range: tuple[float, float] | None  # (low, high) over the images, if wider than 8 bits

    @property
    def conversion(self) -> str:
        if self.wide_range is None:
            return ""
        low, high = self.wide_range
        return (f"images wider than 8 bits: mapped linearly from the dataset's range "
                f"[{low:g}, {high:g}] to [0, 255], one mapping for every image")


class Reader:
    """Opens samples' frames through segen.data.image_files (size limit, damage)."""

    def __init__(self, lookup: dict[Colour, int] | None, max_pixels: int):
        self.lookup, self.max_pixels = lookup, max_pixels

    def frame(self, frame: Frame, *, decode: bool = True) -> Image.Image:
        return open_image(frame.path, max_pixels=self.max_pixels, decode=decode, page=frame.page)

    def scan(self, samples: list[Sample]) -> Scan:
        """Sizes, bit depths and mask values of every sample; refuses mixed bit depths."""
        values: dict[str, set[int]] = {}
        modes, first_of_depth, ranges = set(), {}, []
        for sample in samples:
            image = self.frame(sample.image, decode=False)
            modes.add("L" if image.mode in GREY_MODES else "RGB")  # header only: fast
            wide = image.mode in WIDE_MODES
            first_of_depth.setdefault(wide, str(sample.image))
            if wide:
                ranges.append(self.frame(sample.image).getextrema())
            values[str(sample.mask or sample.id)] = set(
                np.unique(self.mask(sample, image.size)).tolist())
        if len(first_of_depth) == 2:
            raise ImageFileError(
                f"mixed bit depths: {first_of_depth[True]} has more than 8 bits per pixel but "
                f"{first_of_depth[False]} has 8; convert every image to one depth first (e.g. "
                "all to 8-bit PNG, or all to 16-bit), then import again")
        wide_range = (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else None
        return Scan(values, "RGB" if "RGB" in modes else "L", wide_range)

    def image(self, sample: Sample, mode: str, wide_range: tuple[float, float] | None
              ) -> Image.Image:
        """The sample's image in mode ("L" or "RGB"), 8 bits per channel."""
        image = self.frame(sample.image)
        if image.mode in WIDE_MODES and wide_range is not None:
            low, high = wide_range
            scaled = (np.asarray(image, np.float64) - low) * (255 / max(high - low, 1e-12))
            image = Image.fromarray(scaled.round().clip(0, 255).astype(np.uint8))
        return image.convert(mode)

    def mask(self, sample: Sample, size: tuple[int, int]) -> np.ndarray:
        """(H, W) int64 class ids; size: the image's (width, height), which it must match."""
        if sample.class_masks:
            ids = np.zeros(size[::-1], np.int64)
            for class_id, frame in sample.class_masks:  # later classes overwrite earlier ones
                ids[self._single_channel(frame, size) > 0] = class_id
            return ids
        assert sample.mask is not None
        ids = self._values(sample.mask)
        _check_size(sample.mask, ids, size)
        return ids

    def _single_channel(self, frame: Frame, size: tuple[int, int]) -> np.ndarray:
        mask = self.frame(frame)
        values = np.asarray(mask if mask.mode in ID_MODES else mask.convert("L"))
        _check_size(frame, values, size)
        return values

    def _values(self, frame: Frame) -> np.ndarray:
        """(H, W) int64: class ids through the class map, else the single-channel values."""
        mask, lookup = self.frame(frame), self.lookup
        if lookup is None and mask.mode in ID_MODES:
            return np.asarray(mask).astype(np.int64)
        colours, inverse = _colours(mask)
        if lookup is None and any(r != g or g != b for r, g, b in colours):
            raise ImageFileError(f"{frame} is a colour mask (colours like {colours[:4]}); "
                                 'colour masks need a class map: pass --class-map "0,0,0='
                                 'background;255,0,0=cell" (class_map= in Python) naming '
                                 "every colour")
        if lookup is None:
            lookup = {c: c[0] for c in colours}  # grey saved as RGB: any channel is the value
        if unknown := [c for c in colours if c not in lookup]:
            raise ImageFileError(f"{frame} has colour(s) {unknown[:5]} not in the class map; "
                                 'add them to --class-map (e.g. "R,G,B=name") or fix the mask')
        return np.array([lookup[c] for c in colours], np.int64)[inverse]


def _check_size(frame: Frame, values: np.ndarray, size: tuple[int, int]) -> None:
    if values.shape[::-1] != size:
        raise ImageFileError(f"{frame} is {values.shape[1]}x{values.shape[0]} but its image is "
                             f"{size[0]}x{size[1]}; re-export it to match")


def _colours(mask: Image.Image) -> tuple[list[Colour], np.ndarray]:
    """Distinct RGB colours and (H, W) indices into them; packed, as 1-D np.unique is fast."""
    rgb = np.asarray(mask.convert("RGB")).astype(np.uint32)
    packed, inverse = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2],
                                return_inverse=True)
    return ([((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in packed.tolist()],
            inverse.reshape(rgb.shape[:2]))
