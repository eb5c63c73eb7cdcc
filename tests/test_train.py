import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import photo_like
from unetsr import train as train_module
from unetsr.checkpoint import load_checkpoint
from unetsr.config import ModelConfig
from unetsr.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ModelConfig(widths=(8, 8, 8, 8, 8), blocks=(1, 1, 1, 1, 1), backbone="random")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(4):
        Image.fromarray((photo_like(72, 96, seed=i) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def run_config(photos: Path, out: Path, steps: int, **kw) -> TrainConfig:
    base = dict(data=(str(photos),), val=(str(photos),), out=str(out), steps=steps, batch=4, crop=32,
                min_crop=32, lr=2e-3, warmup=2, workers=0, val_every=10, ckpt_every=5, log_every=1)
    return TrainConfig(**{**base, **kw})


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_a_few_dozen_steps_lower_the_loss(photos: Path, tmp_path: Path) -> None:
    best = train(run_config(photos, tmp_path, 40, w_l1=1.0), TINY)
    losses = [r["loss"] for r in read_log(tmp_path) if "loss" in r]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.9 * np.mean(losses[:8])
    ckpt = load_checkpoint(best)
    assert ckpt.meta["steps"] > 0 and "val_psnr" in ckpt.meta
    assert any("val_bicubic_psnr" in r for r in read_log(tmp_path))


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(photos: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    whole = tmp_path / "whole"
    train(run_config(photos, whole, 10), TINY)

    real_save = train_module.save_checkpoint

    def save_then_die(path, model, meta=None, train_state=None, half=False):
        real_save(path, model, meta, train_state, half)
        if train_state is not None and train_state["step"] == 5:
            raise KeyboardInterrupt

    killed = tmp_path / "killed"
    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(run_config(photos, killed, 10), TINY)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    first_leg = load_checkpoint(killed / "last.pt")
    assert first_leg.train_state["step"] == 5
    # pretend the first leg took 1000 s: the resumed run's wall time must add to it, not restart from zero
    real_save(killed / "last.pt", first_leg.model, first_leg.meta, {**first_leg.train_state, "train_seconds": 1000.0})
    train(run_config(photos, killed, 10), TINY, resume=True)
    assert 1000 < load_checkpoint(killed / "last.pt").train_state["train_seconds"] < 1100

    a = load_checkpoint(whole / "last.pt").model.state_dict()
    b = load_checkpoint(killed / "last.pt").model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not torch.equal(a["tail.weight"], torch.zeros_like(a["tail.weight"]))


def test_cli_reports_a_missing_data_folder_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "unetsr.train", "--data", str(tmp_path / "none"),
                           "--out", str(tmp_path / "run"), "--backbone", "random", "--steps", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "not a folder of images" in proc.stderr


def test_two_process_torchrun_writes_one_checkpoint(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "unetsr.train", "--data", str(photos), "--out", str(out), "--backbone", "random",
           "--steps", "4", "--batch", "2", "--crop", "32", "--min-crop", "32", "--workers", "0",
           "--widths", "8", "8", "8", "8", "8", "--blocks", "1", "1", "1", "1", "1", "--ckpt-every", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "world 2" in proc.stderr
    assert sorted(p.name for p in out.glob("*.pt")) == ["best.pt", "last.pt"]
    assert load_checkpoint(out / "last.pt").train_state["step"] == 4
    assert [r["step"] for r in read_log(out) if "loss" in r] == []  # log_every 20 > 4 steps: nothing logged
