"""Photos that a camera or editor sharpened, then saved as high-quality JPEGs: does the model `infer` picks
for them (the clean one, at quality >= JPEG_BELOW) draw halos, and would the JPEG model do better?

For each HR photo: LR by the evaluation protocol (PIL bicubic), sharpened with an unsharp mask, saved as
a JPEG at each --quality; then upscaled by bicubic, the clean model and the JPEG model. Prints mean PSNR-Y /
SSIM-Y per method and quality, and how many photos each model scores below bicubic on (a halo or ringing
costs PSNR along every edge). Unsharpened JPEGs at the same qualities are the control.

    python benchmarks/bench_sharpened.py --hr ../shared/photos/val DIR/val --scale 2
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import header  # noqa: E402

from unetsr.evaluation.metrics import psnr_y, ssim_y  # noqa: E402
from unetsr.imaging.photos import read_image  # noqa: E402
from unetsr.imaging.resize import make_lr, upscale_baseline  # noqa: E402
from unetsr.inference.choice import shipped_name_for, shipped_upscaler  # noqa: E402
from unetsr.training.data import find_images  # noqa: E402


def damaged(lr: np.ndarray, quality: int, sharpen: bool) -> np.ndarray:
    """The LR as a photo that was (maybe) sharpened and saved as a 4:2:0 JPEG at `quality`."""
    image = Image.fromarray((lr * 255 + 0.5).clip(0, 255).astype(np.uint8))
    if sharpen:
        image = image.filter(ImageFilter.UnsharpMask(radius=1.5, percent=120, threshold=2))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, subsampling=2)
    with Image.open(buf, formats=("JPEG",)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255


def scores(pred: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    """PSNR-Y and SSIM-Y with `scale` pixels shaved, as evaluate scores them."""
    p, h = (torch.from_numpy(a).permute(2, 0, 1)[None].float() for a in (pred.clip(0, 1), hr))
    return psnr_y(p, h, scale).item(), ssim_y(p, h, scale).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hr", nargs="+", required=True)
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--quality", type=int, nargs="+", default=[90, 95])
    p.add_argument("--limit", type=int)
    args = p.parse_args()
    clean_name = shipped_name_for(args.scale)
    models = {clean_name: shipped_upscaler(name=clean_name, device="cpu"),
              "x2_jpeg": shipped_upscaler(name="x2_jpeg", device="cpu")}
    paths = find_images(args.hr)[: args.limit]
    print(header())
    print(f"{len(paths)} photos, x{args.scale}, LR by PIL bicubic, unsharp mask radius 1.5 percent 120, JPEG 4:2:0")
    print("| LR | method | PSNR-Y | SSIM-Y | photos below bicubic |")
    print("|---|---|---:|---:|---:|")
    for sharpen in (False, True):
        for q in args.quality:
            rows: dict[str, list[tuple[float, float]]] = {"bicubic": [], **{n: [] for n in models}}
            for path in paths:
                hr, lr = make_lr(read_image(path).rgb, args.scale)
                lr = damaged(lr, q, sharpen)
                size = (hr.shape[1], hr.shape[0])
                rows["bicubic"].append(scores(upscale_baseline(lr, size), hr, args.scale))
                for name, up in models.items():
                    rows[name].append(scores(up.upscale_array(lr, args.scale), hr, args.scale))
            base = [s[0] for s in rows["bicubic"]]
            for name, values in rows.items():
                below = sum(v[0] < b for v, b in zip(values, base)) if name != "bicubic" else "-"
                label = f"{'sharpened, ' if sharpen else ''}JPEG q{q}"
                print(f"| {label} | {name} | {np.mean([v[0] for v in values]):.2f} | "
                      f"{np.mean([v[1] for v in values]):.4f} | {below} |", flush=True)


if __name__ == "__main__":
    main()
