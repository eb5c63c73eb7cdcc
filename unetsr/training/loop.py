"""The training loop: AdamW with warm-up and cosine decay on random crops, the perceptual loss, bf16
autocast and channels_last where the hardware has them, validation, checkpoints, resume and DDP.

Resuming from `last.pt` reproduces the run that was not interrupted: data depend only on (seed, step),
and the optimiser, scheduler and gradient-scaler states are saved."""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from unetsr.core import torchrun
from unetsr.core.errors import UnetsrError
from unetsr.core.precision import autocast, memory_format, resolve_precision
from unetsr.evaluation.metrics import psnr_y, ssim_y
from unetsr.imaging.resize import upscale_baseline
from unetsr.model.backbone import load_resnet18
from unetsr.model.checkpoint import load_checkpoint, load_shipped, save_checkpoint
from unetsr.model.config import ModelConfig
from unetsr.model.network import ResBlock, UNetSR, count_parameters
from unetsr.training.data import (
    CropDataset,
    StepBatchSampler,
    find_images,
    validation_crops,
)
from unetsr.training.losses import PerceptualLoss
from unetsr.training.progress import (
    Estimate,
    Interrupted,
    StopRequest,
    say,
    validation_line,
)
from unetsr.training.recipes import CHANGEABLE_ON_RESUME, TrainConfig
from unetsr.training.run_folder import RunFolder

SHIPPED_PREFIX = "shipped:"
"""`--init shipped:x2` (or "init": "shipped:x2" in a recipe) warm-starts from a shipped model."""


@dataclass(frozen=True)
class RunSummary:
    """What a finished run reports: where its checkpoints are and how it did against bicubic."""

    best: Path
    last: Path
    steps: int
    train_seconds: float
    img_s: float
    val: dict[str, float]  # best val psnr/ssim, bicubic's psnr/ssim (empty without --val)
    scale: int = 2  # the model's


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
    """Scores of the model (in float32) on the fixed validation crops."""
    model.eval()
    pred = torch.cat([model(chunk.to(device)).float().cpu() for chunk in lr.split(8)])
    model.train()
    return scores(pred.clamp(0, 1), hr, model.config.scale)


def bicubic_scores(lr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float]:
    """Bicubic's scores on the validation crops (the same baseline `evaluate` prints)."""
    size = (hr.shape[-1], hr.shape[-2])
    ups = [torch.from_numpy(upscale_baseline(x.permute(1, 2, 0).numpy(), size)).permute(2, 0, 1) for x in lr]
    return scores(torch.stack(ups), hr, scale)


def resumed_configs(state: dict, cfg: TrainConfig, model_cfg: ModelConfig,
                    given: frozenset[str] | None) -> tuple[TrainConfig, ModelConfig]:
    """The saved run's configs, with the changeable settings the caller gave; refuses the others."""
    saved_cfg, saved_model = TrainConfig.from_dict(state["train_config"]), ModelConfig.from_dict(state["model_config"])
    wanted = {**cfg.to_dict(), **{f"model.{k}": v for k, v in model_cfg.to_dict().items()}}
    have = {**saved_cfg.to_dict(), **{f"model.{k}": v for k, v in saved_model.to_dict().items()}}
    asked = set(wanted) if given is None else set(given)
    conflicts = sorted(k for k in asked if k in have and wanted[k] != have[k] and k not in CHANGEABLE_ON_RESUME)
    if conflicts:
        pairs = ", ".join(f"{k.removeprefix('model.')} {have[k]} (asked {wanted[k]})" for k in conflicts)
        raise UnetsrError(f"cannot resume with different settings; the saved run has {pairs}")
    kept = {k: getattr(cfg, k) for k in CHANGEABLE_ON_RESUME if given is None or k in given}
    return replace(saved_cfg, **kept), saved_model


def train(cfg: TrainConfig, model_cfg: ModelConfig, resume: bool = False,
          given: frozenset[str] | None = None) -> RunSummary:
    """Run (or continue, with `resume`) the training described by `cfg`. `given` names the settings the
    user chose (the CLI's flags); on resume they must match the saved run unless they may change.
    Ctrl-C (SIGINT) ends the run after the step in progress, saved to last.pt (a second Ctrl-C stops at once)."""
    rank, world, device = setup_distributed()
    cfg = cfg.for_backbone(model_cfg.backbone)
    out = Path(cfg.out)
    last, best_path = out / "last.pt", out / "best.pt"
    if out.exists() and not out.is_dir():
        raise UnetsrError(f"--out {out} is a file, not a folder")
    state = None
    if resume and last.exists():
        resumed = load_checkpoint(last)
        if resumed.train_state is None:
            raise UnetsrError(f"{last} has no training state to resume (use --init to warm-start from it)")
        state = resumed.train_state
        cfg, model_cfg = resumed_configs(state, cfg, model_cfg, given)
    elif resume and best_path.exists():
        raise UnetsrError(f"{out} has best.pt but no last.pt, so there is no training state to resume; warm-start "
                          f"a new run from it with --init {best_path} --out ANOTHER_FOLDER")
    elif last.exists() or best_path.exists():
        raise UnetsrError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    backbone = load_resnet18(model_cfg.backbone, model_cfg.backbone_seed)
    model = UNetSR(model_cfg, backbone)
    if cfg.init and state is None:
        loaded = warm_start(model, cfg.init)
        if rank == 0:
            print(f"unetsr.train: initialised {loaded} from {cfg.init}", file=sys.stderr)
    fmt = memory_format(device)
    model = model.to(device, memory_format=fmt)
    loss_fn = PerceptualLoss(backbone, cfg.w3, cfg.w6, cfg.w_l1, cfg.w_mse).to(device, memory_format=fmt)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema else None
    shipped = ema if ema is not None else model  # what validation scores and checkpoints hold
    step, best, spent = 0, -math.inf, 0.0
    if state is not None:
        shipped.load_state_dict(resumed.model.state_dict())
        if ema is not None:  # the checkpoint's model is the average; the raw weights ride in the state
            model.load_state_dict(state["raw_model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, best, spent = state["step"], state["best_psnr"], state.get("train_seconds", 0.0)
    net = DistributedDataParallel(model) if world > 1 else model
    dataset = CropDataset(find_images(cfg.data), cfg.crop, model_cfg.scale, cfg.min_crop, cfg.seed, cfg.degrade,
                          max_crop=cfg.max_crop, photo_downscale=cfg.photo_downscale, downscalers=cfg.downscalers,
                          cache_mb=cfg.cache_mb)
    loader = DataLoader(dataset, batch_sampler=StepBatchSampler(step, cfg.steps, cfg.batch, rank, world),
                        num_workers=cfg.workers, pin_memory=device.type == "cuda")
    val = (validation_crops(find_images(cfg.val), scale=model_cfg.scale, quality=cfg.val_quality)
           if cfg.val and rank == 0 else None)
    reference = bicubic_scores(*val, model_cfg.scale) if val is not None else {}
    meta = {"backbone": model_cfg.backbone, "recipe": cfg.recipe, "precision": precision,
            "data": [Path(d).name for d in cfg.data]}

    def save_last(seconds: float) -> None:
        """last.pt: the model (the average, with --ema) and everything a resume needs."""
        train_state = {"step": step, "best_psnr": best, "train_seconds": seconds, "optimizer": opt.state_dict(),
                       "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                       "train_config": cfg.to_dict(), "model_config": model_cfg.to_dict()}
        if ema is not None:
            train_state["raw_model"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        save_checkpoint(last, shipped, {**meta, "steps": step}, train_state)

    folder = RunFolder(out).open(step) if rank == 0 else None
    stop, bar = StopRequest(), None
    try:
        if rank == 0:
            trainable, frozen = count_parameters(model)
            say(f"{trainable:,} trainable + {frozen:,} frozen parameters, {len(dataset.paths)} photos, "
                f"steps {step}..{cfg.steps}, world {world}, {device}, {precision}")
            if reference and step == 0:  # the reference the validation scores are read against
                folder.log({"step": 0, **{f"val_bicubic_{k}": v for k, v in reference.items()}})
        model.train()
        bar = tqdm(total=cfg.steps, initial=step, disable=rank != 0, unit="step", dynamic_ncols=True)
        timer, timed_steps, started, img_s = time.perf_counter(), 0, time.perf_counter() - spent, 0.0
        eta = Estimate(step, cfg)
        with stop.on_sigint():
            for lr_img, hr_img in loader:
                lr_img = lr_img.to(device, non_blocking=True).contiguous(memory_format=fmt)
                hr_img = hr_img.to(device, non_blocking=True).contiguous(memory_format=fmt)
                with autocast(device, precision):
                    loss, terms = loss_fn(net(lr_img), hr_img)
                if not math.isfinite(terms["total"]):
                    raise UnetsrError(f"training diverged at step {step + 1}: the loss is {terms['total']}; nothing "
                                      f"was saved from it (last.pt holds step {state_step(last)}); lower --lr or --clip")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, cfg.clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                if ema is not None:
                    update_ema(ema, model, cfg.ema)
                step, timed_steps = step + 1, timed_steps + 1
                if rank != 0:
                    continue
                img_s = cfg.batch * world * timed_steps / (time.perf_counter() - timer)
                bar.update(1)
                bar.set_postfix(loss=f"{terms['total']:.4f}", img_s=f"{img_s:.1f}")
                record = {"step": step, "loss": terms.pop("total"), **terms, "lr": sched.get_last_lr()[0],
                          "img_s": img_s, "train_seconds": round(time.perf_counter() - started, 1)}
                if (line := eta.update(step)) is not None:
                    bar.write(line, file=sys.stderr)
                if val is not None and (step % cfg.val_every == 0 or step == cfg.steps):
                    record.update({f"val_{k}": v for k, v in validate(shipped, *val, device).items()})
                    bar.write(validation_line(step, record, reference), file=sys.stderr)
                    if record["val_psnr"] > best:
                        best = record["val_psnr"]
                        save_checkpoint(best_path, shipped, {**meta, "steps": step, "val_psnr": best, "val_ssim":
                                                           record["val_ssim"], "train_seconds": record["train_seconds"]})
                    timer, timed_steps = time.perf_counter(), 0
                if step % cfg.log_every == 0 or "val_psnr" in record:
                    folder.log(record)
                if step % cfg.ckpt_every == 0 or step == cfg.steps or stop.requested:
                    save_last(record["train_seconds"])
                if stop.requested:
                    raise Interrupted(step, last)
    finally:
        if bar is not None:
            bar.close()
        if folder is not None:
            folder.close()
    if rank == 0 and not best_path.exists():
        save_checkpoint(best_path, shipped, {**meta, "steps": step})
    if world > 1:
        dist.destroy_process_group()
    return RunSummary(best_path, last, step, time.perf_counter() - started, img_s,
                      _best_val(out / "log.jsonl", reference) if rank == 0 else {}, model_cfg.scale)


def state_step(last: Path) -> int:
    """The step last.pt holds, read from its metadata (0 when there is none yet)."""
    if not last.exists():
        return 0
    try:
        return int(load_checkpoint(last).meta.get("steps", 0))
    except UnetsrError:
        return 0


@torch.no_grad()
def update_ema(ema: UNetSR, model: UNetSR, decay: float) -> None:
    """ema <- decay·ema + (1 - decay)·model for every trainable tensor (the frozen encoder never moves)."""
    pairs = [(e, p) for e, p in zip(ema.parameters(), model.parameters()) if p.requires_grad]
    torch._foreach_lerp_([e for e, _ in pairs], [p.detach() for _, p in pairs], 1.0 - decay)


def warm_start(model: UNetSR, path: str | Path) -> str:
    """Copy into `model` every decoder tensor of the checkpoint at `path` whose name and shape match
    (a fresh optimiser follows); returns 'N of M decoder tensors'. Residual blocks that get no tensor
    from it (a model grown by more blocks) start with a zero last convolution, as identities, so the
    grown model starts as the one it grew from. Refuses a checkpoint that shares none. `shipped:NAME`
    (as a recipe can say) is the shipped model NAME, SHA-256 checked."""
    shipped_name = str(path).removeprefix(SHIPPED_PREFIX) if str(path).startswith(SHIPPED_PREFIX) else None
    source = (load_shipped(shipped_name) if shipped_name else load_checkpoint(path)).model.state_dict()
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    matched = {k: source[k] for k, v in own.items() if k in source and source[k].shape == v.shape}
    if not matched:
        raise UnetsrError(f"--init {path}: no decoder tensor matches this model's shapes")
    model.load_state_dict(matched, strict=False)
    for name, block in model.named_modules():
        if isinstance(block, ResBlock) and not any(f"{name}.{k}" in matched for k in block.state_dict()):
            last = block.conv3 if block.conv3 is not None else block.conv2
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
    return f"{len(matched)} of {len(own)} decoder tensors"


def _best_val(log_path: Path, reference: dict[str, float]) -> dict[str, float]:
    """The best validation scores in a run's log, beside bicubic's."""
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    scored = [r for r in rows if "val_psnr" in r]
    if not scored:
        return {}
    top = max(scored, key=lambda r: r["val_psnr"])
    bicubic = {f"bicubic_{k}": v for k, v in reference.items()}
    return {"psnr": top["val_psnr"], "ssim": top["val_ssim"], "step": top["step"], **bicubic}


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when started by torchrun (whose environment
    core.torchrun reads, strictly: a malformed one is an error, not one process)."""
    place = torchrun.from_environment()
    rank, world, local = place.rank, place.world, place.local
    if world == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return rank, world, torch.device("cuda", local)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("gloo")
    return rank, world, torch.device("cpu")
