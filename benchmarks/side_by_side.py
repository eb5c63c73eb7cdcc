"""Make the model card's comparison images: crops of bicubic, the models and the original, side by side.

    python benchmarks/side_by_side.py PHOTO --box X Y SIZE [--shipped x2 x2_jpeg] [--checkpoint PATH=LABEL ...]
                                      [--jpeg Q [--sharpen]] [--out docs/side_by_side.png]

The photo is downscaled x2 (antialiased bicubic; with --jpeg, then saved as a JPEG at quality Q, as
shared photos are, and with --sharpen sharpened by an unsharp mask before, as cameras do), upscaled back
by bicubic and by each model, and the same SIZE×SIZE box of each is shown enlarged 2× with
nearest-neighbour, so pixels stay visible.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import sharpened_jpeg  # noqa: E402

from unetsr.core.fileio import atomic_write  # noqa: E402
from unetsr.imaging.photos import read_image  # noqa: E402
from unetsr.imaging.resize import make_lr, upscale_baseline  # noqa: E402
from unetsr.inference.choice import shipped_upscaler  # noqa: E402
from unetsr.inference.upscaler import Upscaler  # noqa: E402


def to_pil(arr: np.ndarray) -> Image.Image:
    """A float H×W×3 array in [0, 1] as an 8-bit PIL image."""
    return Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photo")
    p.add_argument("--box", type=int, nargs=3, metavar=("X", "Y", "SIZE"), required=True)
    p.add_argument("--checkpoint", nargs="+", default=[], metavar="PATH[=LABEL]", help="unetsr checkpoints to show")
    p.add_argument("--shipped", nargs="*", help="shipped models to show (default: x2 without --checkpoint)")
    p.add_argument("--jpeg", type=int, default=0, metavar="Q", help="save the LR as JPEG at quality Q first")
    p.add_argument("--sharpen", action="store_true", help="sharpen the LR (unsharp mask) before the JPEG")
    p.add_argument("--zoom", type=int, default=2)
    p.add_argument("--out", default="docs/side_by_side.png")
    args = p.parse_args()
    if args.sharpen and not args.jpeg:
        p.error("--sharpen needs --jpeg Q (sharpened photos are shown as the JPEGs cameras save)")
    shipped = args.shipped if args.shipped is not None else ([] if args.checkpoint else ["x2"])
    ups = {f"unetsr {name}": shipped_upscaler(name=name, device="cpu", tile=512) for name in shipped}
    for spec in args.checkpoint:
        path, _, label = spec.partition("=")
        ups[label or f"unetsr ({Path(path).name})"] = Upscaler.from_checkpoint(path, device="cpu", tile=512)
    scale = next(iter(ups.values())).scale
    if args.sharpen:
        hr, lr = make_lr(read_image(args.photo).rgb, scale)
        lr = sharpened_jpeg(lr, args.jpeg)
    else:
        hr, lr = make_lr(read_image(args.photo).rgb, scale, args.jpeg)
    bicubic = upscale_baseline(lr, (hr.shape[1], hr.shape[0]), "bicubic")
    x, y, s = args.box
    source = f" of {'sharpened ' if args.sharpen else ''}JPEG q{args.jpeg}" if args.jpeg else ""
    panels = [(f"bicubic{source}", to_pil(bicubic))]
    panels += [(name, to_pil(up.upscale_array(lr, scale))) for name, up in ups.items()]
    panels += [("original", to_pil(hr))]
    z, label = args.zoom, 18
    sheet = Image.new("RGB", (len(panels) * s * z + (len(panels) - 1) * 4, s * z + label), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, image) in enumerate(panels):
        crop = image.crop((x, y, x + s, y + s)).resize((s * z, s * z), Image.NEAREST)
        sheet.paste(crop, (i * (s * z + 4), label))
        draw.text((i * (s * z + 4) + 4, 3), name, fill="black")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda f: sheet.save(f, format="PNG", optimize=True))  # replaces --out
    print(f"wrote {args.out} ({sheet.width}×{sheet.height})")


if __name__ == "__main__":
    main()
