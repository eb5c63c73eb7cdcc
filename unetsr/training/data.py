"""Training data: random multi-scale crops of photos, LR made by antialiased downscaling, and a fixed
validation set. Every random choice of item i comes from a generator seeded by (seed, i), so a run
is reproducible and resumable at any step whatever the number of DataLoader workers.

HR crops are never upsampled: a crop of side `side` >= `crop` is cut from the photo at its own
resolution and downscaled (antialiased) to `crop`, so every target is as sharp as the photo allows,
and downscaling also averages away the photo's own noise and JPEG artefacts.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Sampler

from unetsr.core.errors import UnetsrError, first_line, one_line
from unetsr.imaging.formats import READ_NAMES, is_image_path, open_image
from unetsr.imaging.photos import DEFAULT_MAX_PIXELS, file_problem, read_image
from unetsr.imaging.resize import make_lr, resize
from unetsr.training.degradations import PRESETS, apply
from unetsr.training.recipes import DOWNSCALE_MODES


class TrainingDataError(UnetsrError):
    """Training photos that cannot be used. Its message stays one line when a DataLoader worker re-raises it
    (torch rebuilds it from "Caught ... in DataLoader worker ... Original Traceback ...")."""

    def __init__(self, message: str = "") -> None:
        if message.startswith("Caught ") and "\nOriginal Traceback" in message:
            last = message.rstrip().rsplit("\n", 1)[-1]  # "unetsr.training.data.TrainingDataError: <message>"
            message = last.split(": ", 1)[-1]
        super().__init__(message)


def find_images(folders: Sequence[str | Path]) -> list[Path]:
    """Image files under the given folders (recursively), sorted so runs see the same order."""
    paths: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder of images")
        paths += [p for p in folder.rglob("*") if is_image_path(p) and p.is_file()]
    return sorted(paths)


def _listed(problems: Sequence[str], shown: int = 3) -> str:
    """The first few problems joined on one line, with how many more there are."""
    more = len(problems) - shown
    return "; ".join(problems[:shown]) + (f"; and {more} more" if more > 0 else "")


def _header_problem(path: Path, min_side: int, downscale_by: float = 1.0) -> str | None:
    """Why `path` cannot be a training photo, from its header alone (no pixels decoded), or None if it can."""
    if (problem := file_problem(path)) is not None:
        return f"{path}: {problem}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's decompression-bomb warning: the pixel limit below decides
            with open_image(path) as im:
                width, height = im.size
    except Exception as exc:  # noqa: BLE001 - any decoder error means: not usable
        reason = "not a supported image" if isinstance(exc, Image.UnidentifiedImageError) else first_line(exc)
        return f"{path}: {reason}"
    if width * height > DEFAULT_MAX_PIXELS:
        return f"{path}: {width}×{height} px is over the {DEFAULT_MAX_PIXELS // 10**6} MP limit"
    short = max(1, round(min(width, height) / downscale_by))
    if short < min_side:
        return f"{path}: {short} px short side is smaller than the {min_side} px crop"
    return None


def usable_photos(paths: Sequence[Path], min_side: int, downscale_by: float = 1.0) -> list[Path]:
    """The paths whose headers show a readable image at least `min_side` px on its short side (after
    `downscale_by`); the others are skipped with one warning, and none usable is a one-line UnetsrError."""
    problems = [(path, _header_problem(Path(path), min_side, downscale_by)) for path in paths]
    usable = [path for path, problem in problems if problem is None]
    skipped = [problem for _, problem in problems if problem is not None]
    if not usable:
        raise TrainingDataError(f"none of the {len(skipped)} training photos can be used (each must be a {READ_NAMES} "
                          f"image at least {min_side} px on its short side): {_listed(skipped)}")
    if skipped:
        warnings.warn(f"skipping {len(skipped)} of {len(problems)} training photos: {_listed(skipped)}", stacklevel=3)
    return usable


def load_photo(path: Path, downscale_by: float = 1.0) -> Image.Image | np.ndarray:
    """A photo in compact form for the crop cache: an 8-bit RGB PIL image, or a uint16 H×W×3 array for
    16-bit files. Read by `images.read_image` (EXIF orientation, ICC, 16 bits); `downscale_by` > 1
    shrinks it first (antialiased), for training on cleaner, sharper versions of the photos."""
    picture = read_image(path)
    rgb = picture.rgb
    if downscale_by > 1:
        h, w = rgb.shape[:2]
        rgb = resize(rgb, (max(1, round(w / downscale_by)), max(1, round(h / downscale_by))), "bicubic")
    if picture.bit_depth == 16:
        return np.round(np.clip(rgb, 0, 1) * 65535).astype(np.uint16)
    return Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def downscale(hr: torch.Tensor, scale: int, mode: str = "bicubic") -> torch.Tensor:
    """Training LR: antialiased downscale of a (B, 3, H, W) batch by `mode`, rounded to 8 bits.

    Training draws the kernel at random for robustness; evaluation LR always comes from `resize.make_lr`.
    """
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    if mode == "area":
        lr = F.interpolate(hr, size=size, mode="area")
    else:
        lr = F.interpolate(hr, size=size, mode=mode, align_corners=False, antialias=True)
    return (lr.clamp(0, 1) * 255).round() / 255


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8, uint16 or float array -> (3, H, W) float32 in [0, 1]."""
    top = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(arr.dtype, 1.0)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(top)


class CropDataset(Dataset):
    """Item i: a random square crop of a random photo, of side log-uniform in [min_crop, max_crop]
    (max_crop 0: the photo's short side) at the photo's own resolution, downscaled to `crop`, randomly
    flipped and rotated, paired with its LR made by a downscaler drawn from `downscalers` (repeat a name
    to weight it) and, if `degrade`
    names a preset of `degradations.PRESETS` other than 'none', damaged by it (JPEG, noise, blur).

    Decoded photos are kept in a per-process cache of at most `cache_mb`, so small sets are decoded
    once and large ones stream from disk. Photos whose header shows they cannot be read, or are smaller
    than the crop, are left out up front (`usable_photos`), with one warning.
    """

    def __init__(self, paths: Sequence[Path], crop: int = 96, scale: int = 2, min_crop: int | None = None,
                 seed: int = 0, degrade: str = "none", cache_mb: int = 1024, max_crop: int = 0,
                 photo_downscale: float = 1.0, downscalers: Sequence[str] = DOWNSCALE_MODES) -> None:
        if not paths:
            raise UnetsrError("no training images found")
        if crop % scale:
            raise UnetsrError(f"crop {crop} must be a multiple of the scale {scale}")
        if not downscalers or not set(downscalers) <= set(DOWNSCALE_MODES):
            raise UnetsrError(f"downscalers must be among {', '.join(DOWNSCALE_MODES)}, got {list(downscalers)}")
        if degrade not in PRESETS:
            raise UnetsrError(f"unknown degradation {degrade!r}; one of {', '.join(PRESETS)}")
        self.min_crop = min_crop or crop
        if self.min_crop < crop:
            raise UnetsrError(f"min crop {self.min_crop} is smaller than the crop {crop}: HR crops are never upsampled")
        self.paths = usable_photos(paths, crop, photo_downscale)
        self.crop, self.scale, self.max_crop = crop, scale, max_crop
        self.seed, self.degrade, self.photo_downscale = seed, PRESETS[degrade], photo_downscale
        self.downscalers = tuple(downscalers)
        self.cache_bytes = cache_mb * 2**20
        self._cache: OrderedDict[Path, Image.Image | np.ndarray] = OrderedDict()
        self._failed: set[Path] = set()
        self._bad: list[str] = []  # why each photo in _failed failed, in order

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        for _ in range(20):
            image = self._photo(self.paths[rng.integers(len(self.paths))])
            if image is not None:
                break
        else:
            last = one_line(self._bad[-1]) if self._bad else "no reason recorded"
            raise TrainingDataError(f"20 training photos in a row failed to decode (the last: {last}); "
                                    "check the training folders")
        hr = self._random_crop(image, rng)
        hr = np.rot90(hr[:, ::-1] if rng.random() < 0.5 else hr, k=int(rng.integers(4)))
        hr_t = to_tensor(hr)
        lr_t = downscale(hr_t[None], self.scale, self.downscalers[rng.integers(len(self.downscalers))])[0]
        if self.degrade is not None:
            lr8 = np.round(lr_t.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            lr_t = to_tensor(apply(lr8, self.degrade, rng))
        return lr_t, hr_t

    def crop_side(self, short: int, rng: np.random.Generator) -> int:
        """A crop side log-uniform in [min_crop, min(short, max_crop)]: every octave of scale equally likely."""
        high = min(short, self.max_crop) if self.max_crop else short
        low = min(self.min_crop, high)
        return max(self.crop, min(high, int(round(np.exp(rng.uniform(np.log(low), np.log(high + 1)))))))

    def _random_crop(self, image: Image.Image | np.ndarray, rng: np.random.Generator) -> np.ndarray:
        w, h = image.size if isinstance(image, Image.Image) else image.shape[1::-1]
        side = self.crop_side(min(h, w), rng)
        top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        if isinstance(image, Image.Image):  # PIL reduces straight from the cached photo, without a copy
            box = (left, top, left + side, top + side)
            if side == self.crop:
                return np.asarray(image.crop(box))
            return np.asarray(image.resize((self.crop, self.crop), Image.BICUBIC, box=box, reducing_gap=2.0))
        patch = image[top:top + side, left:left + side]
        if side == self.crop:
            return patch
        return np.clip(resize(patch / 65535.0, (self.crop, self.crop), "bicubic"), 0, 1).astype(np.float32)

    def _photo(self, path: Path) -> np.ndarray | None:
        """The decoded photo, from the cache when possible; None (with a warning, once) if it fails."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        if path in self._failed:
            return None
        try:
            image = load_photo(path, self.photo_downscale)
            short = min(image.size) if isinstance(image, Image.Image) else min(image.shape[:2])
            if short < self.crop:
                raise UnetsrError(f"{path}: {short} px short side is smaller than the {self.crop} px crop")
        except UnetsrError as exc:  # read_image's errors name the file
            warnings.warn(f"skipping a training photo: {exc}", stacklevel=2)
            self._failed.add(path)
            self._bad.append(str(exc))
            return None
        self._cache[path] = image
        while sum(_nbytes(a) for a in self._cache.values()) > self.cache_bytes and len(self._cache) > 1:
            self._cache.popitem(last=False)
        return image


def _nbytes(image: Image.Image | np.ndarray) -> int:
    return image.nbytes if isinstance(image, np.ndarray) else image.width * image.height * 3


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
                     seed: int = 1234, quality: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed (LR, HR) set: `per_image` native-resolution crops of `crop` px (rounded down to a multiple of
    `scale`) per photo at seeded positions, LR by `resize.make_lr` (the evaluation protocol; saved as JPEG
    at `quality` if > 0). The same files give the same crops on every run. Photos that cannot be read or
    are smaller than the crop are skipped with one warning; none usable is a one-line UnetsrError."""
    side = crop - crop % scale
    if side < scale:
        raise UnetsrError(f"validation crop {crop} px is smaller than the scale {scale}")
    if not paths:
        raise UnetsrError("no validation images found")
    hrs, skipped = [], []
    for i, path in enumerate(paths):
        try:
            image = read_image(path).rgb
        except UnetsrError as exc:
            skipped.append(str(exc))
            continue
        h, w = image.shape[:2]
        if min(h, w) < side:
            skipped.append(f"{path}: {w}×{h} px is smaller than the {side} px validation crop")
            continue
        rng = np.random.default_rng([seed, i])
        for _ in range(per_image):
            top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
            hrs.append(image[top:top + side, left:left + side])
    if not hrs:
        raise UnetsrError(f"none of the {len(skipped)} validation photos can be used (each must be a readable "
                          f"image at least {side}×{side} px): {_listed(skipped)}")
    if skipped:
        warnings.warn(f"skipping {len(skipped)} of {len(skipped) + len(hrs) // per_image} validation photos: "
                      f"{_listed(skipped)}", stacklevel=2)
    pairs = [make_lr(a, scale, quality) for a in hrs]
    return (torch.stack([to_tensor(lr) for _, lr in pairs]), torch.stack([to_tensor(hr) for hr, _ in pairs]))
