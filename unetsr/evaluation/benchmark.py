"""Scoring upscalers on photos as the SR literature does: LR made from each HR photo, PSNR-Y and SSIM-Y with
the border shaved, LPIPS when its weights can be had, and seconds per output megapixel, beside the classic
upscalers (bilinear, bicubic, Lanczos)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetsr.core.errors import ImageError, UnetsrError, first_line, one_line

if TYPE_CHECKING:
    import numpy as np
    import torch

    from unetsr.inference.upscaler import Upscaler

FORMATS = ("md", "csv", "json")
MODEL_ROW = "unetsr"
"""The name of the model's row; the other rows are lowres.BASELINES in their order."""

Metric = Callable[["torch.Tensor", "torch.Tensor"], float]
"""A per-image distance between a prediction and its target, (1, 3, H, W) tensors in [0, 1]."""


@dataclass(frozen=True)
class Row:
    """One method's mean scores over the photos."""

    method: str
    psnr: float
    ssim: float
    lpips: float | None
    seconds_per_mp: float


def min_side(scale: int) -> int:
    """The smallest HR side that can be scored at `scale`: SSIM's 11-pixel window after the border shave."""
    return max(11 + 2 * scale, 8 * scale)


ALEXNET_MB = 233
"""The size of torchvision's AlexNet weights, which LPIPS needs (the lpips package holds only its own layers)."""


def alexnet_weights() -> tuple[str, Path]:
    """The URL of torchvision's AlexNet weights and where torch's hub cache keeps them (honours TORCH_HOME)."""
    import torch  # noqa: PLC0415
    from torchvision.models import AlexNet_Weights  # noqa: PLC0415

    url = AlexNet_Weights.IMAGENET1K_V1.url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _fetch_quietly(url: str, path: Path, timeout: float = 30.0) -> None:
    """Download `url` to `path` (a temp file renamed at the end) with no progress bar and no read waiting
    longer than `timeout` seconds."""
    import socket  # noqa: PLC0415

    import torch  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # torch.hub's urlopen takes no timeout of its own
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            torch.hub.download_url_to_file(url, str(path), progress=False)
    finally:
        socket.setdefaulttimeout(saved)


def lpips_metric(say: Callable[[str], Any] | None = None) -> tuple[Metric | None, str]:
    """LPIPS (AlexNet) as a function, or None with a plain one-line reason it is unavailable.

    LPIPS needs torchvision's AlexNet weights: taken from torch's hub cache, or fetched there once (`say` is
    told first); offline, the reason says so and that --no-lpips skips it. Nothing lpips or torch would
    print while loading (download progress, "Loading model from") reaches stdout or stderr.
    """
    import torch  # noqa: PLC0415 - heavy, and only after parsing

    skip = "--no-lpips skips it"
    try:
        import lpips  # noqa: PLC0415 - optional, heavy
    except ImportError:
        return None, f"LPIPS n/a: it needs the lpips package (pip install lpips); {skip}"
    url, cached = alexnet_weights()
    if not cached.is_file():
        if say is not None:
            say(f"LPIPS: fetching its AlexNet weights ({ALEXNET_MB} MB, once) into {cached}")
        try:
            _fetch_quietly(url, cached)
        except Exception as exc:  # noqa: BLE001 - offline: URLError, socket errors, a full disk...
            return None, (f"LPIPS n/a: it needs AlexNet weights ({ALEXNET_MB} MB) from the network or torch's hub "
                          f"cache ({cached}), and they could not be downloaded ({describe(exc)}); {skip}")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")  # lpips uses torchvision's deprecated `pretrained=`
            net = lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception as exc:  # noqa: BLE001 - any failure only means "no LPIPS column"
        return None, f"LPIPS n/a: it could not be loaded ({describe(exc)}; a damaged {cached}?); {skip}"

    def score(pred: torch.Tensor, target: torch.Tensor) -> float:
        with torch.no_grad():
            return net(pred * 2 - 1, target * 2 - 1).mean().item()

    return score, ""


def describe(exc: BaseException) -> str:
    """An exception as `Type: first line` made safe for one line; a network error by its reason alone
    ("Name or service not known")."""
    from urllib.error import URLError  # noqa: PLC0415

    reason = exc.reason if isinstance(exc, URLError) else exc
    if isinstance(reason, OSError) and reason.strerror:
        return one_line(reason.strerror)
    if isinstance(reason, str):
        return one_line(reason)
    return f"{type(reason).__name__}: {one_line(first_line(reason))}"


def score_photo(upscaler: Upscaler | dict[str, Upscaler], hr_rgb: np.ndarray, scale: int,
                lpips_fn: Metric | None = None, quality: int = 0,
                kernel: str = "bicubic") -> dict[str, tuple[float, float, float | None, float, float]]:
    """Each method's (PSNR-Y, SSIM-Y, LPIPS, seconds, output MP) on one HR photo (float H×W×3 in [0, 1]),
    its LR made with `kernel` (lowres.LR_KERNELS) and saved as a JPEG at `quality` first if that is > 0.

    `upscaler` is one model (the row MODEL_ROW) or several by row name (e.g. the x4 model and the x2 twice).
    """
    import torch  # noqa: PLC0415

    from unetsr.evaluation.metrics import psnr_y, ssim_y  # noqa: PLC0415
    from unetsr.imaging.resize import BASELINES, make_lr, upscale_baseline  # noqa: PLC0415

    def batch(arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]

    hr, lr = make_lr(hr_rgb, scale, quality, kernel)
    size = (hr.shape[1], hr.shape[0])
    outputs: dict[str, tuple[torch.Tensor, float]] = {}
    for name in BASELINES:
        start = time.perf_counter()
        up = upscale_baseline(lr, size, name)
        outputs[name] = (batch(up), time.perf_counter() - start)
    models = upscaler if isinstance(upscaler, dict) else {MODEL_ROW: upscaler}
    for row, model in models.items():
        start = time.perf_counter()
        pred = model.upscale_tensor(batch(lr), outscale=scale)
        outputs[row] = (pred, time.perf_counter() - start)
        if tuple(pred.shape[-2:]) != (hr.shape[0], hr.shape[1]):
            raise ValueError(f"the model made {tuple(pred.shape[-2:])} from LR {lr.shape[:2]}, expected {hr.shape[:2]}")
    target, megapixels = batch(hr), hr.shape[0] * hr.shape[1] / 1e6
    return {name: (psnr_y(out, target, scale).item(), ssim_y(out, target, scale).item(),
                   lpips_fn(out, target) if lpips_fn else None, seconds, megapixels)
            for name, (out, seconds) in outputs.items()}


def evaluate(upscaler: Upscaler | dict[str, Upscaler], paths: Sequence[Path], scale: int, lpips_fn: Metric | None = None, *,
             progress: bool = False, on_error: Callable[[Path, UnetsrError], None] | None = None,
             quality: int = 0, kernel: str = "bicubic") -> list[Row]:
    """Mean scores per method over the photos: bilinear, bicubic, Lanczos and the model (in that order).

    Photos are read with images.read_image (16-bit kept) and their LR made by lowres.make_lr with
    `kernel` (saved as JPEG at `quality` if > 0, the compressed inputs people have). A photo
    that cannot be read or is too small raises ImageError, or is passed to `on_error` and left out.
    """
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from unetsr.imaging.photos import read_image  # noqa: PLC0415

    for model in (upscaler.values() if isinstance(upscaler, dict) else [upscaler]):
        model.upscale_tensor(torch.zeros(1, 3, 32, 32), outscale=scale)  # warm-up: first calls are slow
    scores: dict[str, list[tuple[float, float, float | None, float, float]]] = {}
    for path in tqdm(paths, desc="evaluating", unit="photo", file=sys.stderr, disable=not progress):
        try:
            rgb = read_image(path).rgb
            if min(rgb.shape[:2]) < min_side(scale):
                raise ImageError(f"{path}: {rgb.shape[1]}×{rgb.shape[0]} is too small to score at x{scale} "
                                 f"(at least {min_side(scale)} px a side)")
        except ImageError as exc:
            if on_error is None:
                raise
            on_error(path, exc)
            continue
        for name, values in score_photo(upscaler, rgb, scale, lpips_fn, quality, kernel).items():
            scores.setdefault(name, []).append(values)
    rows = []
    for name, values in scores.items():
        psnr, ssim, lp, seconds, megapixels = zip(*values)
        rows.append(Row(name, float(np.mean(psnr)), float(np.mean(ssim)),
                        None if lp[0] is None else float(np.mean(lp)), sum(seconds) / sum(megapixels)))
    return rows


def format_table(rows: Sequence[Row], fmt: str = "md", info: dict[str, Any] | None = None) -> str:
    """The rows as an aligned Markdown table, CSV, or JSON (with `info` about the run beside the rows).

    LPIPS reads n/a in Markdown, is empty in CSV and null in JSON when it could not be computed.
    """
    if fmt == "json":
        return json.dumps({**(info or {}), "rows": [asdict(r) for r in rows]}, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["method", "psnr_y_db", "ssim_y", "lpips", "seconds_per_output_mp"])
        for r in rows:
            writer.writerow([r.method, f"{r.psnr:.4f}", f"{r.ssim:.5f}",
                             "" if r.lpips is None else f"{r.lpips:.5f}", f"{r.seconds_per_mp:.5f}"])
        return out.getvalue().rstrip("\n")
    if fmt != "md":
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    header = ["method", "PSNR-Y (dB)", "SSIM-Y", "LPIPS", "s / output MP"]
    cells = [[r.method, f"{r.psnr:.2f}", f"{r.ssim:.4f}", "n/a" if r.lpips is None else f"{r.lpips:.4f}",
              f"{r.seconds_per_mp:.3f}"] for r in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w)
                                 for i, (v, w) in enumerate(zip(values, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *map(line, cells)])
