"""`python -m unetsr.train`: trains UNetSR on random crops of photos with the perceptual loss.

Runs as is on a CPU (bf16 where the CPU has it), with mixed precision on CUDA, and under
`torchrun --nproc_per_node N` with DistributedDataParallel (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from unetsr.cli import fail, int_in, one_line, prog_name
from unetsr.core.precision import PRECISIONS
from unetsr.model.config import ENCODER_DEPTHS, ModelConfig
from unetsr.training.degradations import PRESETS
from unetsr.training.recipes import (
    BACKBONE_DEFAULTS,
    DOWNSCALE_MODES,
    RANGES,
    Range,
    TrainConfig,
    backbone_defaults,
    load_recipe,
    recipe_names,
)

_HELP = {"min_crop": "smallest HR crop side before it is downscaled to --crop (0: --crop; never smaller)",
         "max_crop": "largest HR crop side (0: the photo's short side)",
         "photo_downscale": "shrink each photo by this factor before cropping",
         "precision": "auto: bf16 where the CPU/GPU has it (fp16 AMP on older GPUs), else fp32",
         "init": "warm-start the decoder from this checkpoint, or shipped:NAME for a shipped model (shipped:x2, "
                 "shipped:x4, ...; matching tensors; fresh optimiser, step 0)",
         "degrade": "damage the training LR: jpeg (JPEG q30-95, sometimes twice), photo (jpeg plus slight "
                    "blur and noise), photo_mid (photo at q40-89, the JPEG model's range), camera (photo at q40-98, half "
                    "sharpened first), mild (the old --degrade), none",
         "ema": "keep an exponential moving average of the weights with this decay (e.g. 0.999); "
                "validation and checkpoints use the average (0: off)",
         "cache_mb": "megabytes of decoded photos kept in memory by each loader process (a set larger than "
                     "this is decoded again and again: raise it if memory allows)",
         "w_mse": "weight of an MSE term on the pixels, the PSNR objective (0: off; a last stage may use it "
                  "with --w-l1 0)",
         "val_quality": "validate on LR saved as JPEG at this quality (0: clean LR)",
         "downscalers": "kernels the training LR is made with, one drawn per crop; repeat one to weight it"}
_MODEL_FLAGS = ("scale", "encoder_depth", "widths", "blocks", "block_convs", "up_blocks", "backbone",
               "backbone_seed")


def argparse_type(limits: Range):
    """An argparse type that reads a number and checks it with the same Range as TrainConfig does."""
    def parse(text: str) -> int | float:
        try:
            value = int(text) if limits.kind is int else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a {'whole number' if limits.kind is int else 'number'}: {one_line(text)!r}") from None
        try:
            return limits.check("it", value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {limits.describe()}, got {one_line(text)[:40]}") from None
    parse.__name__ = "whole number" if limits.kind is int else "number"
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; defaults are None so that the flags a user gave can be told apart."""
    d, m = TrainConfig(data=(), out=""), ModelConfig()
    p = argparse.ArgumentParser(prog=prog_name("train"), description=__doc__.split("\n\n")[0],
                                epilog="Precedence: flags, then --recipe, then the backbone's defaults "
                                       f"({BACKBONE_DEFAULTS['random']} for --backbone random), then the above.")
    p.add_argument("--data", nargs="+", help="folder(s) of training photos (required)")
    p.add_argument("--val", nargs="*", help="folder(s) of validation photos")
    p.add_argument("--out", required=True, help="run folder: log.jsonl, last.pt, best.pt")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--recipe", help=f"a shipped recipe ({', '.join(recipe_names())}) or a .json file")
    p.add_argument("--backbone", help=f"imagenet, random (seeded, offline), or a ResNet18 .pth path (default {m.backbone})")
    p.add_argument("--backbone-seed", type=int_in(0), help=f"seed of --backbone random (default {m.backbone_seed})")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help=f"upscaling factor of the model (default {m.scale})")
    p.add_argument("--encoder-depth", type=int, choices=ENCODER_DEPTHS,
                   help=f"ResNet18 children in the encoder: 3 stem, 5 layer1, 6 layer2, 7 layer3 (default {m.encoder_depth})")
    p.add_argument("--widths", type=int_in(1, 1024), nargs=5, help=f"decoder channels at strides 1..16 (default {list(m.widths)})")
    p.add_argument("--blocks", type=int_in(0, 64), nargs=5, help=f"decoder blocks at strides 1..16 (default {list(m.blocks)})")
    p.add_argument("--block-convs", type=int, choices=(2, 3), help=f"convolutions per residual block (default {m.block_convs})")
    p.add_argument("--up-blocks", type=int_in(0, 64),
                   help=f"blocks at twice the LR resolution, upsampling in two steps (even scales; default {m.up_blocks})")
    for f in fields(TrainConfig):
        if f.name in ("data", "out", "val", "recipe"):
            continue
        flag, default = "--" + f.name.replace("_", "-"), getattr(d, f.name)
        extra = _HELP.get(f.name, "")
        if f.name == "degrade":
            p.add_argument(flag, choices=tuple(PRESETS), help=f"{extra} (default {default})")
        elif f.name == "downscalers":
            p.add_argument(flag, nargs="+", choices=DOWNSCALE_MODES, help=f"{extra} (default {' '.join(default)})")
        elif f.name == "precision":
            p.add_argument(flag, choices=PRECISIONS, help=f"{extra} (default {default})")
        elif f.name in RANGES:
            shown = "the backbone's" if default is None else default
            p.add_argument(flag, type=argparse_type(RANGES[f.name]), help=f"{extra} (default {shown})".strip())
        else:
            p.add_argument(flag, help=f"{extra} (default {default!r})".strip())
    return p


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, ModelConfig, bool, frozenset[str]]:
    """The command line -> (training config, model config, resume?, names of the settings given)."""
    args = vars(build_parser().parse_args(argv))
    resume, recipe_name = args.pop("resume"), args.pop("recipe")
    given = {k: v for k, v in args.items() if v is not None}
    recipe = load_recipe(recipe_name) if recipe_name else {"model": {}, "train": {}}
    model_given = {k: given.pop(k) for k in _MODEL_FLAGS if k in given}
    model_cfg = ModelConfig.from_dict({**recipe["model"], **model_given})
    train_values = {**backbone_defaults(model_cfg.backbone), **recipe["train"], **given}
    if not train_values.get("data"):
        raise ValueError("--data is required: the folder(s) of training photos")
    for key in ("data", "val"):
        train_values[key] = tuple(train_values.get(key, ()))
    cfg = TrainConfig.from_recipe({**train_values, "recipe": recipe_name or ""}, f"recipe {recipe_name}")
    names = set(given) | {f"model.{k}" for k in model_given}
    return cfg, model_cfg, resume, frozenset(names)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: 0 on success, 1 with a one-line message on a known failure."""
    prog = prog_name("train")
    try:
        cfg, model_cfg, resume, given = parse_args(argv)
    except ValueError as exc:
        return fail(prog, exc, 2)
    from unetsr.core import torchrun
    from unetsr.core.errors import UnetsrError  # noqa: PLC0415 - heavy imports only after parsing
    from unetsr.training.loop import train
    from unetsr.training.progress import Interrupted

    again = f"{prog} {' '.join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))}"
    again += "" if resume else " --resume"
    try:
        summary = train(cfg, model_cfg, resume, given)
    except (UnetsrError, FileNotFoundError, ValueError) as exc:
        return fail(prog, exc)
    except Interrupted as stop:
        print(f"{prog}: stopped at step {stop.step}, saved to {stop.last}; continue with: {again}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; continue from the last checkpoint with: {again}", file=sys.stderr)
        return 130
    if torchrun.from_environment().rank == 0:
        print(summary_text(summary, cfg), file=sys.stderr)
    return 0


def summary_text(s, cfg: TrainConfig) -> str:
    """The closing block of a run: how it did against bicubic, how long it took, what to run next."""
    lines = ["", "unetsr.train: done", f"  steps        {s.steps}",
             f"  wall time    {s.train_seconds / 60:.1f} min  ({s.img_s:.1f} img/s at the end)"]
    if s.val:
        lines.append(f"  best val     PSNR-Y {s.val['psnr']:.2f} dB, SSIM-Y {s.val['ssim']:.4f} (step {s.val['step']})")
        if "bicubic_psnr" in s.val:
            gain = s.val["psnr"] - s.val["bicubic_psnr"]
            lines.append(f"  bicubic      PSNR-Y {s.val['bicubic_psnr']:.2f} dB, SSIM-Y {s.val['bicubic_ssim']:.4f}"
                         f"  ->  {gain:+.2f} dB {'better' if gain > 0 else 'WORSE: train longer'}")
    lines += [f"  checkpoints  {s.best} (best), {s.last} (last, with optimiser state)",
              f"  next         {export_command(s.best, cfg)}",
              f"               python -m unetsr.infer photo.jpg --checkpoint {s.best.parent / 'model.pt'} "
              f"-o {s.best.parent / f'photo_x{s.scale}.png'}"]
    return "\n".join(lines)


def export_command(best: Path, cfg: TrainConfig) -> str:
    """The export command to run next, checked on the run's own validation photos when it had some."""
    check = f" --check {' '.join(shlex.quote(v) for v in cfg.val)}" if cfg.val else ""
    return f"python -m unetsr.export {shlex.quote(str(best))} {shlex.quote(str(best.parent / 'model.pt'))}{check}"


if __name__ == "__main__":
    raise SystemExit(main())
