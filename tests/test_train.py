import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import photo_like
from PIL import Image

from unetsr.core.errors import UnetsrError
from unetsr.core.precision import cpu_has_bf16
from unetsr.model.checkpoint import load_checkpoint, save_checkpoint
from unetsr.model.config import ModelConfig
from unetsr.model.network import build_model
from unetsr.train import main, parse_args
from unetsr.training import loop as training_module
from unetsr.training.loop import train
from unetsr.training.recipes import (
    BACKBONE_DEFAULTS,
    TrainConfig,
    load_recipe,
    recipe_names,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = ModelConfig(widths=(8, 8, 8, 8, 8), blocks=(1, 1, 1, 1, 1), backbone="random")
TINY_FLAGS = ["--backbone", "random", "--widths", "8", "8", "8", "8", "8", "--blocks", "1", "1", "1", "1", "1",
              "--crop", "32", "--batch", "2", "--workers", "0"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(4):
        Image.fromarray((photo_like(196, 200, seed=i) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def run_config(photos: Path, out: Path, steps: int, **kw) -> TrainConfig:
    base = dict(data=(str(photos),), val=(str(photos),), out=str(out), steps=steps, batch=4, crop=32,
                lr=2e-3, warmup=2, workers=0, val_every=10, ckpt_every=5, log_every=1, precision="fp32")
    return TrainConfig(**{**base, **kw})


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_few_dozen_steps_lower_the_loss(photos: Path, tmp_path: Path, precision: str) -> None:
    summary = train(run_config(photos, tmp_path, 40, precision=precision, lr=5e-3), TINY)
    losses = [r["loss"] for r in read_log(tmp_path) if "loss" in r]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.9 * np.mean(losses[:8])
    ckpt = load_checkpoint(summary.best)
    assert ckpt.meta["steps"] > 0 and "val_psnr" in ckpt.meta and ckpt.meta["precision"] == precision
    assert summary.val["psnr"] == max(r["val_psnr"] for r in read_log(tmp_path) if "val_psnr" in r)
    assert any("val_bicubic_psnr" in r for r in read_log(tmp_path))


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(photos: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    whole = tmp_path / "whole"
    train(run_config(photos, whole, 10), TINY)

    real_save = training_module.save_checkpoint

    def save_then_die(path, model, meta=None, train_state=None, half=False):
        real_save(path, model, meta, train_state, half)
        if train_state is not None and train_state["step"] == 5:
            raise KeyboardInterrupt

    killed = tmp_path / "killed"
    monkeypatch.setattr(training_module, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(run_config(photos, killed, 10), TINY)
    monkeypatch.setattr(training_module, "save_checkpoint", real_save)
    first_leg = load_checkpoint(killed / "last.pt")
    assert first_leg.train_state["step"] == 5 and "scaler" in first_leg.train_state
    # pretend the first leg took 1000 s: the resumed run's wall time must add to it, not restart from zero
    real_save(killed / "last.pt", first_leg.model, first_leg.meta, {**first_leg.train_state, "train_seconds": 1000.0})
    train(run_config(photos, killed, 10), TINY, resume=True)
    assert 1000 < load_checkpoint(killed / "last.pt").train_state["train_seconds"] < 1100

    a = load_checkpoint(whole / "last.pt").model.state_dict()
    b = load_checkpoint(killed / "last.pt").model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not torch.equal(a["tail.weight"], torch.zeros_like(a["tail.weight"]))


def test_a_finished_run_is_never_replaced_without_resume(photos: Path, tmp_path: Path) -> None:
    train(run_config(photos, tmp_path, 2, val=()), TINY)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(UnetsrError, match="already holds a run"):
        train(run_config(photos, tmp_path, 2, val=()), TINY)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_resume_refuses_a_checkpoint_without_training_state_and_conflicting_settings(photos: Path,
                                                                                      tmp_path: Path) -> None:
    train(run_config(photos, tmp_path / "a", 2, val=()), TINY)
    ckpt = load_checkpoint(tmp_path / "a" / "last.pt")
    save_checkpoint(tmp_path / "b" / "last.pt", ckpt.model, ckpt.meta)
    with pytest.raises(UnetsrError, match="no training state"):
        train(run_config(photos, tmp_path / "b", 4, val=()), TINY, resume=True)
    with pytest.raises(UnetsrError, match="crop 32 \\(asked 48\\)"):
        train(run_config(photos, tmp_path / "a", 4, val=(), crop=48), TINY, resume=True)
    wider = ModelConfig(widths=(16, 8, 8, 8, 8), blocks=(1, 1, 1, 1, 1), backbone="random")
    with pytest.raises(UnetsrError, match="widths"):
        train(run_config(photos, tmp_path / "a", 4, val=()), wider, resume=True)
    train(run_config(photos, tmp_path / "a", 4, val=()), TINY, resume=True)  # more steps may change
    assert load_checkpoint(tmp_path / "a" / "last.pt").train_state["step"] == 4


def test_init_warm_starts_the_decoder_at_step_zero(photos: Path, tmp_path: Path) -> None:
    train(run_config(photos, tmp_path / "first", 6, val=()), TINY)
    source = load_checkpoint(tmp_path / "first" / "last.pt").model.state_dict()
    real_save = training_module.save_checkpoint
    seen = {}

    def record(path, model, meta=None, train_state=None, half=False):
        if train_state is not None and "step" not in seen:
            seen.update(step=train_state["step"], opt_steps=train_state["optimizer"]["state"][0]["step"].item())
        return real_save(path, model, meta, train_state, half)

    training_module.save_checkpoint = record
    try:
        train(run_config(photos, tmp_path / "second", 1, val=(), lr=1e-12, warmup=1, ckpt_every=1,
                         init=str(tmp_path / "first" / "last.pt")), TINY)
    finally:
        training_module.save_checkpoint = real_save
    assert seen == {"step": 1, "opt_steps": 1.0}  # a fresh optimiser, counting from step 0
    warm = load_checkpoint(tmp_path / "second" / "last.pt").model.state_dict()
    assert torch.allclose(warm["tail.weight"], source["tail.weight"], atol=1e-6)
    assert torch.count_nonzero(source["tail.weight"]) > 0


def test_init_into_a_model_with_more_blocks_starts_as_the_smaller_model(photos: Path, tmp_path: Path) -> None:
    train(run_config(photos, tmp_path / "small", 6, val=()), TINY)
    small = load_checkpoint(tmp_path / "small" / "last.pt").model.eval()
    grown = build_model(replace(TINY, blocks=(3, 1, 1, 1, 1)))  # two more blocks at LR resolution
    assert training_module.warm_start(grown, tmp_path / "small" / "last.pt").startswith("32 of 40 ")
    assert torch.count_nonzero(grown.body[2].conv2.weight) == 0  # a new block starts as an identity
    assert torch.count_nonzero(grown.body[2].conv1.weight) > 0  # but can learn at once
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        assert torch.allclose(grown.eval()(x), small(x), atol=1e-6)


def test_init_into_a_two_step_x4_model_keeps_the_decoder_and_grows_a_tail(tmp_path: Path) -> None:
    plain = build_model(replace(TINY, scale=4))
    with torch.no_grad():
        for p in plain.parameters():
            if p.requires_grad:  # a trained-looking decoder, so the copied tensors can be told apart
                p.normal_(0, 0.1)
    two_step = build_model(replace(TINY, scale=4, up_blocks=2))
    _, model_cfg, _, _ = parse_args(["--data", "d", "--out", "o", "--scale", "4", "--up-blocks", "2", *TINY_FLAGS])
    assert model_cfg == two_step.config
    save_checkpoint(tmp_path / "plain.pt", plain)
    assert training_module.warm_start(two_step, tmp_path / "plain.pt").startswith("30 of 42 ")  # all but the tail; 10 new: conv, 2 blocks
    assert torch.equal(two_step.body[0].conv1.weight, plain.body[0].conv1.weight)
    assert torch.count_nonzero(two_step.up[2].conv2.weight) == 0  # the blocks at 2x start as identities
    assert torch.count_nonzero(two_step.tail.weight) == 0  # a new tail (12 channels, not 48) starts at zero
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        bilinear = torch.nn.functional.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
        assert torch.equal(two_step.eval()(x), bilinear)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_is_the_default_on_this_cpu(photos: Path, tmp_path: Path) -> None:
    summary = train(run_config(photos, tmp_path, 2, val=(), precision="auto"), TINY)
    assert load_checkpoint(summary.last).meta["precision"] == "bf16"


def test_defaults_follow_the_backbone_and_recipes_are_data(photos: Path, tmp_path: Path) -> None:
    cfg, _, _, given = parse_args(["--data", str(photos), "--out", str(tmp_path), "--backbone", "random"])
    assert (cfg.w3, cfg.w6, cfg.w_l1, cfg.lr) == tuple(BACKBONE_DEFAULTS["random"][k] for k in ("w3", "w6", "w_l1", "lr"))
    assert "w3" not in given and "model.backbone" in given
    cfg, _, _, _ = parse_args(["--data", str(photos), "--out", str(tmp_path), "--backbone", "imagenet"])
    assert (cfg.w3, cfg.w_l1) == (1.0, 0.01)
    assert "x2" in recipe_names()
    recipe = load_recipe("x2")
    cfg, model_cfg, _, _ = parse_args(["--recipe", "x2", "--data", str(photos), "--out", str(tmp_path), "--lr", "5e-4"])
    assert cfg.lr == 5e-4 and cfg.recipe == "x2" and cfg.steps == recipe["train"]["steps"]
    assert list(model_cfg.widths) == recipe["model"]["widths"]
    assert cfg.max_crop == 96  # the shipped model's last stage: crops at the photos' own scale
    cfg, model_cfg, _, _ = parse_args(["--recipe", "x2_jpeg", "--data", str(photos), "--out", str(tmp_path)])
    assert (cfg.degrade, cfg.val_quality, cfg.max_crop) == ("photo_mid", 75, 192)
    assert model_cfg == ModelConfig.from_dict(recipe["model"])
    cfg, _, _, _ = parse_args(["--data", str(photos), "--out", str(tmp_path), "--degrade", "jpeg", "--val-quality", "60"])
    assert (cfg.degrade, cfg.val_quality) == ("jpeg", 60)
    assert cfg.downscalers == ("bilinear", "bicubic", "area")  # the default mix
    cfg, _, _, _ = parse_args(["--data", str(photos), "--out", str(tmp_path), "--downscalers", "bicubic", "bicubic", "area"])
    assert cfg.downscalers == ("bicubic", "bicubic", "area")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # saved in checkpoints as a list, read back as a tuple


@pytest.mark.parametrize("flags", [["--batch", "0"], ["--log-every", "0"], ["--ckpt-every", "0"], ["--val-every", "0"],
                                   ["--min-crop", "-5"], ["--widths", "0", "0", "0", "0", "0"], ["--steps", "0"],
                                   ["--lr", "nan"], ["--recipe", "nope"], ["--degrade", "heavy"],
                                   ["--val-quality", "101"], ["--downscalers", "nearest"],
                                   ["--scale", "3", "--up-blocks", "1"]])
def test_bad_flags_are_refused_in_one_line(photos: Path, tmp_path: Path, flags: list[str],
                                           capsys: pytest.CaptureFixture) -> None:
    try:
        status = main(["--data", str(photos), "--out", str(tmp_path / "run"), *TINY_FLAGS, *flags])
    except SystemExit as exc:  # argparse's usage error
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err
    assert not (tmp_path / "run").exists()


def test_cli_errors_and_the_closing_summary(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "run"), *TINY_FLAGS, "--steps", "1"]) == 1
    assert "not a folder of images" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["--data", str(photos), "--out", str(tmp_path / "file"), *TINY_FLAGS, "--steps", "1"]) == 1
    assert "is a file" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "x"), "--backbone", "/no/such.pth"]) == 1
    assert not (tmp_path / "x").exists()  # nothing is created before the model can be built
    out = tmp_path / "ok"
    assert main(["--data", str(photos), "--val", str(photos), "--out", str(out), *TINY_FLAGS, "--steps", "3",
                 "--val-every", "3", "--precision", "fp32"]) == 0
    err = capsys.readouterr().err
    assert "best val     PSNR-Y" in err and "bicubic      PSNR-Y" in err and f"python -m unetsr.export {out / 'best.pt'}" in err
    assert main(["--data", str(photos), "--out", str(out), *TINY_FLAGS, "--steps", "3"]) == 1
    assert "--resume" in capsys.readouterr().err


def test_help_is_quick_and_imports_no_torch() -> None:
    code = "import sys; from unetsr import train; train.build_parser(); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False"


def test_two_process_torchrun_writes_one_checkpoint(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "unetsr.train", "--data", str(photos), "--out", str(out), *TINY_FLAGS, "--steps", "4",
           "--ckpt-every", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "world 2" in proc.stderr
    assert sorted(p.name for p in out.glob("*.pt")) == ["best.pt", "last.pt"]
    assert load_checkpoint(out / "last.pt").train_state["step"] == 4
    assert [r["step"] for r in read_log(out) if "loss" in r] == []  # log_every 20 > 4 steps: nothing logged


@pytest.mark.parametrize("train_values, message", [
    ({"steps": -5}, "steps must be at least 1, got -5"),
    ({"clip": -1}, "clip must be greater than 0, got -1"),
    ({"lr": 1e12}, "lr must be greater than 0 and at most 1, got 1e+12"),
    ({"batch": "2"}, "batch must be a whole number, got '2'"),
    ({"val_every": 0}, "val_every must be at least 1, got 0"),
    ({"crop": 0}, "crop must be at least 8 and at most 1024, got 0"),
    ({"setps": 100}, "unknown setting 'setps'"),
    ({"ema": 1.0}, "ema must be at least 0 and less than 1, got 1"),
])
def test_recipe_files_get_the_checks_the_flags_get(photos: Path, tmp_path: Path, train_values: dict, message: str,
                                                   capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "bad.json"
    recipe.write_text(json.dumps({"model": {"backbone": "random"}, "train": train_values}))
    assert main(["--recipe", str(recipe), "--data", str(photos), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()
    with pytest.raises((ValueError, TypeError)):  # the library refuses the same values: one check for all
        TrainConfig(data=(str(photos),), out="x", **{k: v for k, v in train_values.items() if k != "setps"},
                    **({"setps": 1} if "setps" in train_values else {}))


def test_a_library_caller_gets_the_backbones_loss_weights(photos: Path, tmp_path: Path) -> None:
    """train(TrainConfig(...), ModelConfig(backbone="random")) trains with the random backbone's weights."""
    summary = train(TrainConfig(data=(str(photos),), out=str(tmp_path), steps=1, batch=2, crop=32, workers=0,
                                precision="fp32"), TINY)
    saved = TrainConfig.from_dict(load_checkpoint(summary.last).train_state["train_config"])
    assert (saved.w3, saved.w6, saved.w_l1, saved.lr) == tuple(BACKBONE_DEFAULTS["random"][k]
                                                                for k in ("w3", "w6", "w_l1", "lr"))


def test_training_stops_at_the_first_non_finite_loss(photos: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from unetsr.training.losses import PerceptualLoss

    real = PerceptualLoss.forward
    calls = []

    def poisoned(self, pred, target):
        calls.append(1)
        total, terms = real(self, pred, target)
        if len(calls) >= 4:
            total = total * float("nan")
            terms["total"] = float("nan")
        return total, terms

    monkeypatch.setattr(PerceptualLoss, "forward", poisoned)
    with pytest.raises(UnetsrError, match="training diverged at step 4: the loss is nan; nothing was saved from it "
                                          r"\(last.pt holds step 2\)"):
        train(run_config(photos, tmp_path, 10, ckpt_every=2, val=()), TINY)
    kept = load_checkpoint(tmp_path / "last.pt")  # loads: every weight finite
    assert kept.train_state["step"] == 2 and not (tmp_path / "best.pt").exists()


def test_one_run_at_a_time_per_folder_and_no_leftovers(photos: Path, tmp_path: Path) -> None:
    import fcntl

    out = tmp_path / "run"
    train(run_config(photos, out, 4, val=()), TINY)
    (out / ".last.pt.deadbeef.tmp").write_bytes(b"half a checkpoint from a kill -9")
    with open(out / ".lock", "a") as held:  # another run holds the folder
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UnetsrError, match="in use by another training run"):
            train(run_config(photos, out, 6, val=()), TINY, resume=True)
    assert load_checkpoint(out / "last.pt").train_state["step"] == 4
    train(run_config(photos, out, 6, val=()), TINY, resume=True)
    assert not list(out.glob(".*.tmp"))


def test_a_resumed_log_never_repeats_a_step(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(run_config(photos, out, 4, val=(), ckpt_every=2), TINY)
    ckpt = load_checkpoint(out / "last.pt")
    state = {**ckpt.train_state, "step": 2}  # as if killed after step 4's log line but with step 2 saved
    save_checkpoint(out / "last.pt", ckpt.model, ckpt.meta, state)
    with open(out / "log.jsonl", "a") as log:
        log.write('{"step": 4, "loss"')  # a line cut short by the kill
    train(run_config(photos, out, 6, val=(), ckpt_every=2), TINY, resume=True)
    steps = [r["step"] for r in read_log(out)]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_with_only_best_pt_says_what_to_do(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(run_config(photos, out, 2, val=()), TINY)
    (out / "last.pt").unlink()
    with pytest.raises(UnetsrError, match="has best.pt but no last.pt.*--init .*best.pt"):
        train(run_config(photos, out, 4, val=()), TINY, resume=True)


def test_the_terminal_shows_time_left_and_validation_beside_bicubic(photos: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert main(["--data", str(photos), "--val", str(photos), "--out", str(out), *TINY_FLAGS, "--steps", "26",
                 "--val-every", "13", "--precision", "fp32", "--crop", "16"]) == 0
    err = capsys.readouterr().err
    assert "steps/s; the remaining 1 steps take about" in err
    rows = [r for r in read_log(out) if "val_psnr" in r]
    bicubic = read_log(out)[0]["val_bicubic_psnr"]
    assert f"step 13: val PSNR-Y {rows[0]['val_psnr']:.2f} dB" in err and f"(bicubic {bicubic:.2f} dB" in err
    assert f"--check {photos}" in err and "VAL_PHOTOS" not in err  # the summary's commands run as printed
    assert f"-o {out / 'photo_x2.png'}" in err


def test_ctrl_c_saves_the_step_in_progress_and_resume_continues(photos: Path, tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "run"
    argv = ["--data", str(photos), "--out", str(out), *TINY_FLAGS, "--steps", "100000", "--ckpt-every", "100000",
            "--log-every", "1", "--precision", "fp32"]
    proc = subprocess.Popen([sys.executable, "-m", "unetsr.train", *argv], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ((out / "log.jsonl").exists() and
                                                   len((out / "log.jsonl").read_text().splitlines()) >= 3):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    saved = load_checkpoint(out / "last.pt").train_state["step"]
    assert saved >= 3 and max(r["step"] for r in read_log(out)) == saved  # nothing done after it was lost
    assert f"stopped at step {saved}, saved to {out / 'last.pt'}; continue with: python -m unetsr.train" in err
    assert err.rstrip().endswith("--resume") and "Traceback" not in err


def test_a_recipe_says_which_shipped_model_it_continues() -> None:
    """recipes/x2.json is the last stage of the shipped model: it names that model as its --init."""
    from unetsr.training.loop import warm_start

    recipe = load_recipe("x2")
    assert recipe["train"]["init"] == "shipped:x2"
    model = build_model(ModelConfig.from_dict(recipe["model"]))
    assert warm_start(model, "shipped:x2") == "48 of 48 decoder tensors"
    shipped = load_checkpoint(ROOT / "unetsr" / "model" / "weights" / "unetsr_x2.pt").model.state_dict()
    assert torch.equal(model.state_dict()["tail.weight"], shipped["tail.weight"])
    with pytest.raises(UnetsrError, match="no shipped model 'x9'"):
        warm_start(model, "shipped:x9")


def test_the_photo_cache_size_reaches_the_loader_and_may_change_on_resume(photos: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """--cache-mb sizes each loader's decoded-photo cache (a set larger than it is decoded again every pass)."""
    seen: list[int] = []
    real = training_module.CropDataset

    def spy(*args, **kwargs):
        dataset = real(*args, **kwargs)
        seen.append(dataset.cache_bytes)
        return dataset

    monkeypatch.setattr(training_module, "CropDataset", spy)
    train(run_config(photos, tmp_path, 2, val=(), cache_mb=7), TINY)
    train(run_config(photos, tmp_path, 4, val=(), cache_mb=9), TINY, resume=True)
    assert seen == [7 * 2**20, 9 * 2**20]
    assert TrainConfig(data=("p",), out="o").cache_mb == 4096
    with pytest.raises(ValueError, match="cache_mb must be at least 0"):
        TrainConfig(data=("p",), out="o", cache_mb=-1)


@pytest.mark.parametrize("name", recipe_names())
def test_each_recipe_parses_and_describes_its_shipped_model(photos: Path, tmp_path: Path, name: str) -> None:
    from unetsr.model.checkpoint import SHIPPED, load_shipped

    cfg, model_cfg, _, _ = parse_args(["--recipe", name, "--data", str(photos), "--out", str(tmp_path)])
    assert cfg.recipe == name and name in SHIPPED  # each recipe is how one shipped model was made
    assert model_cfg == load_shipped(name).model.config
    assert cfg.init.removeprefix("shipped:") in SHIPPED


def test_a_last_stage_on_mse_trains_on_the_mse_term_and_saves_its_weight(photos: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="w_mse must be at least 0"):
        TrainConfig(data=("photos",), out="run", w_mse=-1.0)
    assert TrainConfig(data=(), out="").w_mse == 0.0
    summary = train(run_config(photos, tmp_path, 6, w_l1=0.0, w_mse=20.0, val_every=6), TINY)
    log = [r for r in read_log(tmp_path) if "loss" in r]
    assert all(r["loss"] == pytest.approx(20.0 * r["mse"] + 0.02 * (r["feat3"] + r["feat6"]), rel=1e-4) for r in log)
    assert TrainConfig.from_dict(load_checkpoint(summary.last).train_state["train_config"]).w_mse == 20.0
