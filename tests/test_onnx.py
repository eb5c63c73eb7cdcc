"""ONNX export and the onnxruntime path: dynamic sizes, metadata, outputs within 1/255 of torch, clear errors."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import as_batch, photo_like
from PIL import Image

from unetsr import export, infer
from unetsr.core.errors import CheckpointError, UnetsrError
from unetsr.core.fileio import sha256_of
from unetsr.model.config import ModelConfig
from unetsr.model.network import build_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from unetsr.inference.onnx_export import OPSET, export_onnx, onnx_bytes  # noqa: E402  (needs onnx)
from unetsr.inference.onnx_runtime import OnnxModel  # noqa: E402


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> tuple[Path, str]:
    """The tiny checkpoint exported once through the CLI (ONNX chosen by the suffix), and what it printed."""
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert export.main([str(tiny_checkpoint), str(path)]) == 0
    return path, out.getvalue()


def test_export_writes_opset_17_with_dynamic_axes_metadata_and_sha256(exported: tuple[Path, str],
                                                                      tiny_model) -> None:
    path, printed = exported
    assert f"sha256 {sha256_of(path)}" in printed and "max output difference" in printed
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= OPSET >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["scale"] == "2" and meta["stride"] == str(tiny_model.config.stride) and meta["format"] == "unetsr-onnx"
    (graph_input,) = proto.graph.input
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = graph_input.type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1] == 3 and all(dims[i].dim_param for i in (0, 2, 3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.onnx"]  # no temporary file left


@pytest.mark.parametrize("shape", [(1, 21, 34), (2, 33, 17), (1, 32, 48)])
def test_onnxruntime_matches_torch_on_sizes_off_the_stride(exported: tuple[Path, str], tiny_model,
                                                           shape: tuple[int, int, int]) -> None:
    n, h, w = shape
    x = torch.cat([as_batch(photo_like(h, w, seed=i)) for i in range(n)])
    model = OnnxModel(exported[0])
    assert (model.config.scale, model.config.stride) == (2, tiny_model.config.stride)
    y = model(x)
    with torch.no_grad():
        ref = tiny_model(x)
        bilinear = tiny_model.base(x)
    assert y.dtype == torch.float32 and tuple(y.shape) == (n, 3, 2 * h, 2 * w)
    assert (y - ref).abs().max().item() <= 1 / 255
    assert (ref - bilinear).abs().max().item() > 4 / 255  # the residual matters, so a match means something


def _upscale_with(checkpoint: Path, image: Path, out: Path, *extra: str) -> np.ndarray:
    assert infer.main([str(image), "-o", f"{out}/", "--checkpoint", str(checkpoint), "--tile", "16",
                       "--quiet", *extra]) == 0
    (result,) = out.iterdir()
    return np.asarray(Image.open(result), dtype=np.int16)


def test_infer_runtime_onnx_writes_what_the_torch_path_writes(exported: tuple[Path, str], tiny_checkpoint: Path,
                                                              tmp_path: Path) -> None:
    image = tmp_path / "odd.png"
    Image.fromarray((photo_like(21, 34, seed=3) * 255 + 0.5).astype(np.uint8)).save(image)
    via_onnx = _upscale_with(exported[0], image, tmp_path / "onnx", "--runtime", "onnx")
    via_torch = _upscale_with(tiny_checkpoint, image, tmp_path / "torch", "--precision", "fp32")
    assert via_onnx.shape == via_torch.shape == (42, 68, 3)
    assert np.abs(via_onnx - via_torch).max() <= 1


def test_ensemble_runs_on_onnx_as_on_torch(exported: tuple[Path, str], tiny_checkpoint: Path, tmp_path: Path) -> None:
    image = tmp_path / "odd.png"
    Image.fromarray((photo_like(21, 34, seed=4) * 255 + 0.5).astype(np.uint8)).save(image)
    via_onnx = _upscale_with(exported[0], image, tmp_path / "onnx", "--runtime", "onnx", "--ensemble")
    via_torch = _upscale_with(tiny_checkpoint, image, tmp_path / "torch", "--precision", "fp32", "--ensemble")
    single = _upscale_with(tiny_checkpoint, image, tmp_path / "single", "--precision", "fp32")
    assert via_onnx.shape == via_torch.shape == (42, 68, 3)
    assert np.abs(via_onnx - via_torch).max() <= 1
    assert np.abs(via_torch - single).max() > 1  # so --ensemble reached both runtimes


def test_bad_onnx_files_give_one_line_and_exit_1(tmp_path: Path, photo_png: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "bad.onnx"
    garbage.write_bytes(b"not an onnx model\n" * 10)
    foreign = tmp_path / "foreign.onnx"
    node = onnx.helper.make_node("Identity", ["input"], ["output"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "g", [value("input", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
                                   [value("output", onnx.TensorProto.FLOAT, [1, 3, 4, 4])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), foreign)
    for path, reason in [(garbage, "not an ONNX file"), (foreign, "not a unetsr export"),
                         (tmp_path / "missing.onnx", "no such file")]:
        assert infer.main([str(photo_png), "--checkpoint", str(path), "-o", str(tmp_path / "out.png")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and reason in err[0] and "Traceback" not in err[0], err
        assert not (tmp_path / "out.png").exists()
        with pytest.raises(CheckpointError, match=reason):
            OnnxModel(path)


def test_runtime_flags_that_contradict_are_usage_errors(tmp_path: Path, photo_png: Path, tiny_checkpoint: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--runtime", "onnx"], ["--checkpoint", "m.onnx", "--precision", "bf16"],
                 ["--checkpoint", "m.onnx", "--runtime", "torch"]):
        with pytest.raises(SystemExit) as caught:
            infer.main([str(photo_png), *argv])
        assert caught.value.code == 2 and "--runtime" in capsys.readouterr().err
    assert infer.pick_runtime(None, "Model.ONNX") == "onnx" and infer.pick_runtime(None, str(tiny_checkpoint)) == "torch"


def test_export_format_choice_and_refusals(exported: tuple[Path, str], tiny_checkpoint: Path) -> None:
    assert export.release_format("a/model.ONNX", None) == "onnx" and export.release_format("m.pt", None) == "pt"
    assert export.release_format("model.bin", "onnx") == "onnx" and export.release_format("m.onnx", "pt") == "pt"
    path = exported[0]
    before = path.read_bytes()
    with pytest.raises(UnetsrError, match="--overwrite"):
        export_onnx(tiny_checkpoint, path)
    with pytest.raises(UnetsrError, match="being exported"):
        export_onnx(tiny_checkpoint, tiny_checkpoint, overwrite=True)
    assert path.read_bytes() == before


def test_a_two_step_x4_model_exports_and_matches_torch(tmp_path: Path) -> None:
    model = build_model(ModelConfig(scale=4, widths=(8, 8, 8, 8, 8), blocks=(1, 1, 1, 1, 1), up_blocks=2,
                                    backbone="random")).eval()
    torch.nn.init.normal_(model.tail.weight, std=0.05)  # a non-zero residual, so a match means something
    path = tmp_path / "x4.onnx"
    path.write_bytes(onnx_bytes(model, {}))
    x = as_batch(photo_like(19, 26, seed=3))
    onnx_model = OnnxModel(path)
    with torch.no_grad():
        ref, bilinear = model(x), model.base(x)
    y = onnx_model(x)
    assert onnx_model.config.scale == 4 and tuple(y.shape) == (1, 3, 76, 104)
    assert (y - ref).abs().max().item() <= 1 / 255
    assert (ref - bilinear).abs().max().item() > 4 / 255


def test_a_graph_whose_output_contradicts_its_scale_is_refused(exported: tuple[Path, str], tmp_path: Path,
                                                                photo_png: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The tiny x2 graph relabelled x4 would write a scrambled image: a probe run at load refuses it."""
    proto = onnx.load(str(exported[0]))
    for prop in proto.metadata_props:
        if prop.key == "scale":
            prop.value = "4"
    relabelled = tmp_path / "relabelled.onnx"
    onnx.save(proto, str(relabelled))
    with pytest.raises(CheckpointError, match="metadata says x4, but a 16×16 input comes out 32×32"):
        OnnxModel(relabelled)
    assert infer.main([str(photo_png), "--checkpoint", str(relabelled), "-o", str(tmp_path / "out.png")]) == 1
    assert "metadata says x4" in capsys.readouterr().err and not (tmp_path / "out.png").exists()
