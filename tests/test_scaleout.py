"""Scale-out: a 2-process torchrun over a folder writes each output once, the same as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers import photo_like
from PIL import Image

from unetsr import infer
from unetsr.batch.sharding import shard
from unetsr.core.torchrun import Rank

ROOT = Path(__file__).resolve().parents[1]


def test_shards_take_every_item_exactly_once() -> None:
    items = list(range(7))
    parts = [shard(items, Rank(r, 3, r, 3)) for r in range(3)]
    assert sorted(sum(parts, [])) == items and all(parts) and shard(items, Rank()) == items


def test_two_process_torchrun_writes_each_output_once_as_one_process_does(tmp_path: Path,
                                                                           tiny_checkpoint: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        Image.fromarray((photo_like(20 + i, 28, seed=i) * 255 + 0.5).astype(np.uint8)).save(folder / f"p{i}.png")
    common = ["--checkpoint", str(tiny_checkpoint), "--precision", "fp32", "--device", "cpu"]
    assert infer.main([str(folder), "-o", str(tmp_path / "one"), "--quiet", *common]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "unetsr.infer", str(folder), "-o", str(tmp_path / "two"), *common],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    written = [line.split(" -> ")[0] for line in run.stdout.splitlines() if " -> " in line]
    assert sorted(written) == sorted(str(p) for p in folder.iterdir()), run.stdout  # each file once, by one rank
    assert run.stderr.count("upscaled 5, failed 0, skipped 0") == 1  # one summary, for all ranks
    one, two = sorted((tmp_path / "one").iterdir()), sorted((tmp_path / "two").iterdir())
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 5
    for a, b in zip(one, two):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name


def test_the_onnx_runtime_under_torchrun_joins_the_group_before_the_summary(capsys, monkeypatch, tmp_path: Path,
                                                                           tiny_model) -> None:
    import torch.distributed as dist

    from unetsr.inference.choice import ModelPicker
    from unetsr.inference.upscaler import Upscaler

    photo = tmp_path / "p.png"
    Image.fromarray((photo_like(8, 8) * 255).astype(np.uint8)).save(photo)
    calls: list[str] = []
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(f"join {backend}"))
    monkeypatch.setattr(dist, "is_initialized", lambda: "join gloo" in calls)

    def all_reduce(tensor) -> None:  # as torch does without a group: every rank died here
        if "join gloo" not in calls:
            raise ValueError("Default process group has not been initialized")
        calls.append("all_reduce")

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append("leave"))
    monkeypatch.setattr(infer, "load_models", lambda *args, **kwargs: ModelPicker(
        2.0, fixed=Upscaler(tiny_model, device="cpu", precision="fp32")))  # stands in for the ONNX model

    code = infer.main([str(photo), "-o", f"{tmp_path / 'out'}/", "--checkpoint", str(tmp_path / "m.onnx"),
                       "--device", "cpu", "--quiet"])

    assert code == 0, capsys.readouterr().err
    assert calls == ["join gloo", "all_reduce", "leave"]
    assert (tmp_path / "out" / "p_x2.png").exists()  # rank 0 of 2 takes the first file


def test_a_malformed_torchrun_environment_is_one_line_and_nothing_is_written(capsys, monkeypatch, tmp_path: Path,
                                                                             tiny_checkpoint: Path) -> None:
    photo = tmp_path / "p.png"
    Image.fromarray((photo_like(8, 8) * 255).astype(np.uint8)).save(photo)
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "2")

    code = infer.main([str(photo), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"])

    err = capsys.readouterr().err
    assert code == 1
    assert err == "unetsr.infer: error: torchrun environment: RANK=5 must be below WORLD_SIZE=2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]  # not every rank upscaling every file
