"""`python -m unetsr.train`: trains UNetSR on random crops of photos with the perceptual loss.

Runs as is on a CPU, with mixed precision on CUDA, and under `torchrun --nproc_per_node N` with
DistributedDataParallel (gloo on CPU, nccl on GPU). Resuming from `last.pt` reproduces the run that
was not interrupted: data depend only on (seed, step), and the optimiser state is saved."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from .backbone import load_resnet18
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ModelConfig
from .errors import UnetsrError
from .losses import PerceptualLoss
from .metrics import psnr_y, ssim_y
from .model import UNetSR, count_parameters
from .data import CropDataset, StepBatchSampler, find_images, validation_crops


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run besides the model; saved in its checkpoints."""

    data: tuple[str, ...]
    out: str
    val: tuple[str, ...] = ()
    steps: int = 20000
    batch: int = 16
    crop: int = 96
    min_crop: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    clip: float = 1.0
    w3: float = 1.0
    w6: float = 1.0
    w_l1: float = 0.01
    degrade: bool = False
    seed: int = 0
    workers: int = 1
    val_every: int = 500
    ckpt_every: int = 100
    log_every: int = 20


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak learning rate."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def scores(pred: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float]:
    """Mean PSNR-Y and SSIM-Y of a batch, with a border of `scale` pixels shaved."""
    return {"psnr": psnr_y(pred, hr, scale).mean().item(), "ssim": ssim_y(pred, hr, scale).mean().item()}


@torch.no_grad()
def validate(model: UNetSR, lr: torch.Tensor, hr: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Scores of the model on the fixed validation crops."""
    model.eval()
    pred = torch.cat([model(chunk.to(device)).float().cpu() for chunk in lr.split(8)])
    model.train()
    return scores(pred, hr, model.config.scale)


def train(cfg: TrainConfig, model_cfg: ModelConfig, resume: bool = False) -> Path:
    """Run (or continue) the training described by `cfg`; returns the path of the best checkpoint."""
    rank, world, device = setup_distributed()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    last, best_path = out / "last.pt", out / "best.pt"
    resumed = load_checkpoint(last) if resume and last.exists() else None
    state = resumed.train_state if resumed is not None else None
    if state is not None:
        model_cfg = ModelConfig.from_dict(state["model_config"])
        cfg = TrainConfig(**{**state["train_config"], "steps": cfg.steps})
    torch.manual_seed(cfg.seed)
    backbone = load_resnet18(model_cfg.backbone, model_cfg.backbone_seed)
    model = UNetSR(model_cfg, backbone).to(device)
    loss_fn = PerceptualLoss(backbone, cfg.w3, cfg.w6, cfg.w_l1).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    step, best, spent = 0, -math.inf, 0.0
    if state is not None:
        model.load_state_dict(resumed.model.state_dict())
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, best, spent = state["step"], state["best_psnr"], state.get("train_seconds", 0.0)
    net = DistributedDataParallel(model) if world > 1 else model
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    dataset = CropDataset(find_images(cfg.data), cfg.crop, model_cfg.scale, cfg.min_crop, cfg.seed, cfg.degrade)
    loader = DataLoader(dataset, batch_sampler=StepBatchSampler(step, cfg.steps, cfg.batch, rank, world),
                        num_workers=cfg.workers, pin_memory=amp)
    val = validation_crops(find_images(cfg.val), scale=model_cfg.scale) if cfg.val and rank == 0 else None
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    meta = {"backbone": model_cfg.backbone, "data": list(cfg.data), "val": list(cfg.val)}
    if rank == 0:
        trainable, frozen = count_parameters(model)
        print(f"unetsr.train: {trainable:,} trainable + {frozen:,} frozen parameters, {len(dataset.paths)} photos, "
              f"steps {step}..{cfg.steps}, world {world}, {device}", file=sys.stderr)
        if val is not None and step == 0:  # the reference the validation scores are read against
            bicubic = F.interpolate(val[0], scale_factor=model_cfg.scale, mode="bicubic", align_corners=False)
            reference = scores(bicubic.clamp(0, 1), val[1], model_cfg.scale)
            log.write(json.dumps({"step": 0, **{f"val_bicubic_{k}": v for k, v in reference.items()}}) + "\n")

    model.train()
    bar = tqdm(total=cfg.steps, initial=step, disable=rank != 0, unit="step", dynamic_ncols=True)
    timer, timed_steps, started = time.perf_counter(), 0, time.perf_counter() - spent
    for lr_img, hr_img in loader:
        lr_img, hr_img = lr_img.to(device, non_blocking=True), hr_img.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext():
            pred = net(lr_img)
        loss, terms = loss_fn(pred.float(), hr_img)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        scaler.step(opt)
        scaler.update()
        sched.step()
        step, timed_steps = step + 1, timed_steps + 1
        if rank != 0:
            continue
        img_s = cfg.batch * world * timed_steps / (time.perf_counter() - timer)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{img_s:.1f}")
        record = {"step": step, "loss": loss.item(), **terms, "lr": sched.get_last_lr()[0], "img_s": img_s,
                  "train_seconds": round(time.perf_counter() - started, 1)}
        if val is not None and (step % cfg.val_every == 0 or step == cfg.steps):
            record.update({f"val_{k}": v for k, v in validate(model, *val, device).items()})
            if record["val_psnr"] > best:
                best = record["val_psnr"]
                save_checkpoint(best_path, model, {**meta, "steps": step, "val_psnr": best, "val_ssim":
                                                   record["val_ssim"], "train_seconds": record["train_seconds"]})
            timer, timed_steps = time.perf_counter(), 0
        if step % cfg.log_every == 0 or "val_psnr" in record:
            log.write(json.dumps(record) + "\n")
            log.flush()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            train_state = {"step": step, "best_psnr": best, "train_seconds": record["train_seconds"],
                           "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "train_config": _plain(cfg),
                           "model_config": model_cfg.to_dict()}
            save_checkpoint(last, model, {**meta, "steps": step}, train_state)
    bar.close()
    if log is not None:
        log.close()
    if rank == 0 and not best_path.exists():
        save_checkpoint(best_path, model, {**meta, "steps": step})
    if world > 1:
        dist.destroy_process_group()
    return best_path


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return rank, world, torch.device("cuda", local)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("gloo")
    return rank, world, torch.device("cpu")


def _plain(cfg: TrainConfig) -> dict:
    """The config with tuples as lists: plain data for a weights_only checkpoint."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, ModelConfig, bool]:
    """The command line -> (training config, model config, resume?)."""
    d = TrainConfig(data=(), out="")
    m = ModelConfig()
    p = argparse.ArgumentParser(prog="python -m unetsr.train", description=__doc__.split("\n\n")[0],
                                epilog="The loss weights default to the design's (ImageNet features). With --backbone "
                                       "random the shipped model used --w-l1 1 --w3 0.02 --w6 0.02, which won on the "
                                       "val photos (README, model card).")
    p.add_argument("--data", nargs="+", required=True, help="folder(s) of training photos")
    p.add_argument("--val", nargs="*", default=[], help="folder(s) of validation photos")
    p.add_argument("--out", required=True, help="run folder: log.jsonl, last.pt, best.pt")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--backbone", default=m.backbone, help="imagenet (default), random, or a ResNet18 .pth path")
    p.add_argument("--backbone-seed", type=int, default=m.backbone_seed)
    p.add_argument("--scale", type=int, default=m.scale, choices=(2, 3, 4))
    p.add_argument("--encoder-depth", type=int, default=m.encoder_depth, choices=(3, 5, 6, 7),
                   help="ResNet18 children in the encoder: 3 stem, 5 layer1, 6 layer2, 7 layer3")
    p.add_argument("--widths", type=int, nargs=5, default=list(m.widths), help="decoder channels at strides 1..16")
    p.add_argument("--blocks", type=int, nargs=5, default=list(m.blocks), help="decoder blocks at strides 1..16")
    for f in fields(TrainConfig):
        if f.name in ("data", "out", "val"):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(d, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", help="(off by default)")
        else:
            p.add_argument(flag, type=type(default), default=default, help=f"(default {default})")
    a = vars(p.parse_args(argv))
    model_cfg = ModelConfig(scale=a.pop("scale"), encoder_depth=a.pop("encoder_depth"),
                            widths=tuple(a.pop("widths")), blocks=tuple(a.pop("blocks")),
                            backbone=a.pop("backbone"), backbone_seed=a.pop("backbone_seed"))
    resume = a.pop("resume")
    a["data"], a["val"] = tuple(a["data"]), tuple(a["val"])
    return TrainConfig(**a), model_cfg, resume


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: 0 on success, 1 with a one-line message on a known failure."""
    cfg, model_cfg, resume = parse_args(argv)
    try:
        best = train(cfg, model_cfg, resume)
    except (UnetsrError, FileNotFoundError, ValueError) as exc:
        print(f"unetsr.train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("unetsr.train: interrupted; continue with --resume", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"unetsr.train: best checkpoint {best}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
