"""Training data: random multi-scale crops of photos, LR made by antialiased downscaling, and a fixed
validation set. Every random choice of item i comes from a generator seeded by (seed, i), so a run
is reproducible and resumable at any step whatever the number of DataLoader workers."""

from __future__ import annotations

import io
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import Dataset, Sampler

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
DOWNSCALE_MODES = ("bilinear", "bicubic", "area")
MAX_PIXELS = 100_000_000


def find_images(folders: Sequence[str | Path]) -> list[Path]:
    """Image files under the given folders (recursively), sorted so runs see the same order."""
    paths: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder of images")
        paths += [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(paths)


def load_rgb(path: Path) -> np.ndarray:
    """An 8-bit H×W×3 array with EXIF orientation applied; raises OSError/ValueError on a bad file."""
    with Image.open(path) as im:
        if im.width * im.height > MAX_PIXELS:
            raise ValueError(f"{im.width}×{im.height} is over the {MAX_PIXELS // 1_000_000} MP limit")
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def downscale(hr: torch.Tensor, scale: int, mode: str = "bicubic") -> torch.Tensor:
    """Antialiased downscale of a (B, 3, H, W) batch by an integer factor, rounded to 8 bits."""
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    if mode == "area":
        lr = F.interpolate(hr, size=size, mode="area")
    else:
        lr = F.interpolate(hr, size=size, mode=mode, align_corners=False, antialias=True)
    return (lr.clamp(0, 1) * 255).round() / 255


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255)


class CropDataset(Dataset):
    """Item i: a random square crop of random size (min_crop .. short side, log-uniform so that every
    octave of scale is equally likely) of a random photo, resized to `crop`, randomly flipped and
    rotated, paired with its LR made by a randomly chosen downscaler.

    Decoded photos are kept in a per-process cache of at most `cache_mb`, so small sets are decoded
    once and large ones stream from disk.
    """

    def __init__(self, paths: Sequence[Path], crop: int = 96, scale: int = 2, min_crop: int | None = None,
                 seed: int = 0, degrade: bool = False, cache_mb: int = 1024) -> None:
        if not paths:
            raise ValueError("no training images found")
        if crop % scale:
            raise ValueError(f"crop {crop} must be a multiple of the scale {scale}")
        self.paths, self.crop, self.scale = list(paths), crop, scale
        self.min_crop = min_crop or crop
        self.seed, self.degrade = seed, degrade
        self.cache_bytes = cache_mb * 2**20
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._bad: set[Path] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        for _ in range(20):
            image = self._photo(self.paths[rng.integers(len(self.paths))])
            if image is not None:
                break
        else:
            raise RuntimeError("20 photos in a row failed to decode; check the training folders")
        hr = self._random_crop(image, rng)
        hr = np.rot90(hr[:, ::-1] if rng.random() < 0.5 else hr, k=int(rng.integers(4)))
        hr_t = to_tensor(hr)
        lr_t = downscale(hr_t[None], self.scale, DOWNSCALE_MODES[rng.integers(len(DOWNSCALE_MODES))])[0]
        if self.degrade:
            lr_t = degrade(lr_t, rng)
        return lr_t, hr_t

    def _random_crop(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        short = min(h, w)
        low = min(self.min_crop, short)
        side = min(short, int(round(np.exp(rng.uniform(np.log(low), np.log(short + 1))))))
        top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        patch = image[top:top + side, left:left + side]
        if side != self.crop:
            patch = np.asarray(Image.fromarray(patch).resize((self.crop, self.crop), Image.BICUBIC))
        return patch

    def _photo(self, path: Path) -> np.ndarray | None:
        """The decoded photo, from the cache when possible; None (with a warning, once) if it fails."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        if path in self._bad:
            return None
        try:
            image = load_rgb(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            warnings.warn(f"skipping {path}: {exc}", stacklevel=2)
            self._bad.add(path)
            return None
        self._cache[path] = image
        while sum(a.nbytes for a in self._cache.values()) > self.cache_bytes and len(self._cache) > 1:
            self._cache.popitem(last=False)
        return image


def degrade(lr: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Mild real-world damage to an LR crop, each kind with probability 1/2: blur, noise, JPEG."""
    if rng.random() < 0.5:
        sigma = rng.uniform(0.3, 1.2)
        k = torch.exp(-torch.arange(-2, 3, dtype=torch.float32) ** 2 / (2 * sigma**2))
        k = (k / k.sum()).view(1, 1, 1, 5)
        x = F.pad(lr[:, None], (2, 2, 2, 2), mode="replicate")
        lr = F.conv2d(F.conv2d(x, k), k.transpose(2, 3))[:, 0]
    if rng.random() < 0.5:
        noise = torch.from_numpy(rng.normal(0, rng.uniform(0.002, 0.02), lr.shape).astype(np.float32))
        lr = (lr + noise).clamp(0, 1)
    if rng.random() < 0.5:
        buf = io.BytesIO()
        Image.fromarray((lr.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(
            buf, "JPEG", quality=int(rng.integers(60, 96)))
        lr = to_tensor(np.asarray(Image.open(buf).convert("RGB")))
    return (lr.clamp(0, 1) * 255).round() / 255


class StepBatchSampler(Sampler[list[int]]):
    """Yields the item indices of steps start..steps-1 for one rank: step k, rank r of w gets items
    (k·w + r)·batch ... + batch - 1. Resuming at step k therefore sees exactly the same data."""

    def __init__(self, start: int, steps: int, batch: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            first = (step * self.world + self.rank) * self.batch
            yield list(range(first, first + self.batch))

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def validation_crops(paths: Sequence[Path], crop: int = 192, scale: int = 2, per_image: int = 4,
                     seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed (LR, HR) set: `per_image` native-resolution crops per photo at seeded positions, LR by
    antialiased bicubic. The same files give the same crops on every run."""
    lrs, hrs = [], []
    for i, path in enumerate(paths):
        try:
            image = load_rgb(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            warnings.warn(f"skipping validation image {path}: {exc}", stacklevel=2)
            continue
        rng = np.random.default_rng([seed, i])
        h, w = image.shape[:2]
        side = min(crop, h, w) // scale * scale
        for _ in range(per_image):
            top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
            hrs.append(to_tensor(image[top:top + side, left:left + side]))
    if not hrs:
        raise ValueError("no validation images could be read")
    side = min(min(t.shape[-2:]) for t in hrs)
    hr = torch.stack([t[:, :side, :side] for t in hrs])
    lrs = downscale(hr, scale, "bicubic")
    return lrs, hr
