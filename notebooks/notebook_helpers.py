"""Set-up plumbing for notebooks/upscale_unet.ipynb, so that its cells show unetsr rather than file handling:
finding the package, the temporary folder, the photos (copied and shrunk in quick mode, or drawn on the spot),
picture panels, the classic upscalers and which model the results use. Nothing here re-implements unetsr."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("unetsr") is None:  # a clone without `pip install -e .`: the package beside this folder
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

import unetsr  # noqa: E402
from unetsr.core.errors import CheckpointError  # noqa: E402
from unetsr.imaging.photos import read_image  # noqa: E402
from unetsr.imaging.resize import resize, upscale_baseline  # noqa: E402
from unetsr.inference.choice import shipped_name_for  # noqa: E402
from unetsr.inference.upscaler import Upscaler  # noqa: E402
from unetsr.model.backbone import imagenet_weights_file  # noqa: E402
from unetsr.model.checkpoint import load_checkpoint, load_shipped  # noqa: E402
from unetsr.training.data import find_images  # noqa: E402
from unetsr.training.recipes import BACKBONE_DEFAULTS  # noqa: E402

VAL_CROP = 192
"""The side of the validation crops (`validation_crops`' default, which training uses too)."""


@dataclass
class Session:
    """What the set-up cell hands the notebook: its temporary folder and the backbone settled."""

    work: Path
    backbone: str
    weights: dict[str, float]
    folder: tempfile.TemporaryDirectory = field(repr=False)
    started: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    def cleanup(self) -> None:
        """Remove the temporary folder and say how long the notebook took since `start`."""
        wall, cpu = time.perf_counter() - self.started[0], time.process_time() - self.started[1]
        self.folder.cleanup()
        print(f"removed {self.work}: {'still there' if self.work.exists() else 'gone'}")
        print(f"this run took {wall:.0f} s ({cpu:.0f} s of CPU time in this kernel) since the set-up cell")


def start(quick: bool, backbone: str, steps: int, batch: int, crop: int, scale: int) -> Session:
    """The temporary folder, the backbone ('auto': imagenet when torchvision has it cached, else random) and
    the loss weights that go with it, with a few lines saying what this run is."""
    started = (time.perf_counter(), time.process_time())
    folder = tempfile.TemporaryDirectory(prefix="unetsr-notebook-")  # removed by the last cell, or at exit
    work = Path(folder.name)
    if backbone == "auto":
        backbone = "imagenet" if imagenet_weights_file().exists() else "random"
    weights = BACKBONE_DEFAULTS["random" if backbone == "random" else "imagenet"]  # the loss weights and lr that won
    print(f"python {sys.executable}")
    print(f"torch {torch.__version__} on {torch.get_num_threads()} CPU threads; unetsr {unetsr.__version__} "
          f"from {Path(unetsr.__file__).resolve().parent.parent}")
    print(f"mode: {'QUICK (tiny decoder, ' if quick else 'full ('}{steps} steps of {batch} crops of {crop} px), "
          f"x{scale}; files in {work}")
    if backbone == "random":
        print(f"backbone: RANDOM. The ImageNet ResNet18 weights are not in torchvision's cache ({imagenet_weights_file()}),\n"
              "  so the encoder and the loss network are a seeded random ResNet18. Everything below runs the same way,\n"
              "  but random features are poor edge and texture detectors: expect much smaller gains than with ImageNet.")
    else:
        print(f"backbone: {backbone}")
    return Session(work, backbone, dict(weights), folder, started)


def synthetic_photo(size: int, seed: int) -> np.ndarray:
    """A size×size uint8 RGB image: a gradient, antialiased shapes, fine grain on one half, noise."""
    rng = np.random.default_rng(seed)
    big = 2 * size  # drawn at 2× and downsampled, for soft photo-like edges
    ramp = np.linspace(0, 1, big)[:, None, None] * rng.uniform(50, 255, 3) + rng.uniform(0, 60, 3)
    img = Image.fromarray(np.broadcast_to(ramp, (big, big, 3)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y, w, h = *rng.integers(0, big, 2), *rng.integers(4, big // 4, 2)
        colour, kind = tuple(int(c) for c in rng.integers(0, 256, 3)), rng.integers(4)
        if kind == 0:
            draw.ellipse([x, y, x + w, y + h], fill=colour)
        elif kind == 1:
            draw.rectangle([x, y, x + w, y + h], fill=colour)
        elif kind == 2:
            draw.rectangle([x, y, x + w, y + h], outline=colour, width=int(rng.integers(1, 4)))
        else:
            draw.line([(x, y), (x + w, y - h)], fill=colour, width=int(rng.integers(1, 5)))
    arr = np.asarray(img.filter(ImageFilter.GaussianBlur(0.8)).resize((size, size), Image.LANCZOS)) / 255
    grain = np.asarray(Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8))
                       .filter(ImageFilter.GaussianBlur(0.7))) / 255 - 0.5
    arr = arr + 0.15 * grain[..., None] * (np.arange(size) >= size // 2)[None, :, None] + rng.normal(0, 0.01, arr.shape)
    return (arr.clip(0, 1) * 255 + 0.5).astype(np.uint8)


def spread(paths: list[Path], count: int) -> list[Path]:
    """`count` paths spread evenly over the list."""
    return [paths[round(i * (len(paths) - 1) / max(1, count - 1))] for i in range(min(count, len(paths)))]


def shrunk_copy(path: Path, out: Path, short_side: int = VAL_CROP) -> None:
    """`path` as an 8-bit PNG at `out`, shrunk (antialiased bicubic) so that its short side is `short_side` px:
    decoding is then quick, and a validation crop of `short_side` px still fits."""
    rgb = read_image(path).rgb
    shrink = min(1.0, short_side / min(rgb.shape[:2]))
    size = (max(1, round(rgb.shape[1] * shrink)), max(1, round(rgb.shape[0] * shrink)))
    rgb = resize(rgb, size, "bicubic") if shrink < 1 else rgb
    Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(out)


def gather_photos(work: Path, photos: str, quick: bool, counts: tuple[int, int] = (3, 1),
                  short_side: int = VAL_CROP) -> tuple[list[Path], list[Path]]:
    """The training and validation folders: `photos` (or ../shared/photos beside the repository), with train/
    and val/ or flat; in quick mode `counts` of them, shrunk to `short_side` px on the short side; without
    photos, synthetic ones drawn into `work`."""
    photo_root = Path(photos) if photos else ROOT.parent / "shared" / "photos"
    if photo_root.is_dir() and find_images([photo_root]):
        split = (photo_root / "train").is_dir() and (photo_root / "val").is_dir()
        train_dirs = [photo_root / "train"] if split else [photo_root]
        val_dirs = [photo_root / "val"] if split else [photo_root]
        if quick:  # a few photos, shrunk: decoding every full-size photo would take longer than the whole run
            picks = {"train": spread(find_images(train_dirs), counts[0])}
            picks["val"] = spread([p for p in find_images(val_dirs) if p not in picks["train"]], counts[1])
            for name, paths in picks.items():
                (work / "photos" / name).mkdir(parents=True)
                for path in paths:
                    shrunk_copy(path, work / "photos" / name / f"{path.stem}.png", short_side)
            train_dirs, val_dirs = [work / "photos" / "train"], [work / "photos" / "val"]
            print(f"photos: {sum(map(len, picks.values()))} of those in {photo_root}, shrunk to {short_side} px "
                  f"on the short side, copied to {work / 'photos'}")
        else:
            print(f"photos: {photo_root}")
    else:
        train_dirs, val_dirs = [work / "synthetic" / "train"], [work / "synthetic" / "val"]
        counts = counts if quick else (8, 2)
        for folder, seeds in ((train_dirs[0], range(counts[0])), (val_dirs[0], range(100, 100 + counts[1]))):
            folder.mkdir(parents=True)
            for seed in seeds:
                Image.fromarray(synthetic_photo(max(256, short_side), seed)).save(folder / f"synthetic_{seed}.png")
        print(f"photos: none at {photo_root}, so synthetic photo-like images in {work / 'synthetic'}")
    print(f"{len(find_images(train_dirs))} training and {len(find_images(val_dirs))} validation images")
    return train_dirs, val_dirs


def show(ax: Any, img: torch.Tensor, title: str) -> None:
    """A (3, H, W) image on a matplotlib axis, pixels unsmoothed, with a small title."""
    ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def classic(lr: torch.Tensor, method: str, scale: int) -> torch.Tensor:
    """A batch upscaled ×`scale` by one of the classic methods of `unetsr.imaging.resize` (PIL's, as evaluate uses)."""
    size = (lr.shape[-1] * scale, lr.shape[-2] * scale)
    return torch.stack([torch.from_numpy(upscale_baseline(x.permute(1, 2, 0).numpy(), size, method)
                                         .transpose(2, 0, 1).copy()) for x in lr])


def results_model(results: str, scale: int, trained: Path, describe_trained: str) -> tuple[torch.nn.Module, str]:
    """The model the results section scores, and its name for the sentences below: the shipped model for
    `scale` when installed and `results` is 'auto', else the checkpoint `trained`; one line says which."""
    name = shipped_name_for(scale)
    try:
        shipped = load_shipped(name)
    except CheckpointError as exc:
        shipped, why = None, str(exc)
    if results == "auto" and shipped is not None:
        meta, model_scale = shipped.meta, shipped.model.config.scale
        count = Upscaler(shipped.model, device="cpu").passes_for(scale)
        passes = "" if model_scale == scale else (f", {count} pass{'es' * (count > 1)}"
                                                  f"{'' if model_scale ** count == scale else ' and a resize'} for x{scale}")
        steps = f"{meta['steps']:,} training steps" if isinstance(meta.get("steps"), int) else "its training"
        scored = (f"val PSNR-Y {meta['val_psnr']:.2f} dB on its own validation photos"
                  if isinstance(meta.get("val_psnr"), float) else "its file records no validation score")
        print(f"Results below use the shipped {name} model (unetsr_{name}.pt{passes}): {steps} on the "
              f"{meta.get('backbone', '?')} backbone; {scored}. The scores below are measured here.")
        return shipped.model, f"the shipped {name} model"
    reason = "RESULTS = 'trained'" if shipped is not None else f"the shipped model is not available: {why}"
    print(f"Results below use the model trained above: {describe_trained}.\n  ({reason})\n"
          "  This is a demonstration of the mechanics, not of quality: do not expect it to beat bicubic.")
    return load_checkpoint(trained).model, "the model trained above"
