"""Torch checkpoint -> ONNX file (opset 17) for onnxruntime, chaiNNer and vs-mlrt, checked against torch.

The graph takes float32 (N, 3, H, W) RGB in [0, 1] with N, H and W free, and gives (N, 3, H*scale,
W*scale); sides that are not multiples of the encoder's stride are padded inside the graph (replicate,
as the torch model does) and cropped back. Scale and stride are in the model's metadata_props.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from unetsr.core.errors import UnetsrError
from unetsr.inference.onnx_runtime import FORMAT, INPUT_NAME, OUTPUT_NAME, OnnxModel
from unetsr.inference.release import (
    TOLERANCE,
    Export,
    check_images,
    max_output_difference,
)

if TYPE_CHECKING:
    from unetsr.model.network import UNetSR

OPSET = 17


def onnx_metadata(model: UNetSR, meta: dict[str, Any]) -> dict[str, str]:
    """The metadata_props of an export: format, scale, stride, the input contract and the checkpoint's metadata."""
    return {"format": FORMAT, "scale": str(model.config.scale), "stride": str(model.config.stride),
            "input": "float32 NCHW RGB in [0, 1]; any N, H, W", "output": "float32 NCHW RGB, H*scale x W*scale",
            "config": json.dumps(model.config.to_dict()), "meta": json.dumps(meta, default=str)}


def onnx_bytes(model: UNetSR, meta: dict[str, Any], opset: int = OPSET) -> bytes:
    """`model` as a serialised ONNX model (float32, dynamic N, H and W) with `onnx_metadata` attached."""
    import copy

    import onnx
    import torch

    model = copy.deepcopy(model).float().eval()
    stride = model.config.stride
    sample = torch.rand(1, 3, 2 * stride + 3, 2 * stride + 5)  # sides off the stride, so padding is traced
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(model, (sample,), buffer, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamo=False,
                          dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                                        OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}})
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in onnx_metadata(model, meta).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "unetsr"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def export_onnx(src: str | Path, dst: str | Path, meta: dict[str, Any] | None = None, check: Sequence[Path] = (),
                tolerance: float = TOLERANCE, overwrite: bool = False, opset: int = OPSET) -> Export:
    """Write `src`'s model to `dst` as ONNX; UnetsrError if onnxruntime's outputs differ from torch's by more
    than `tolerance` on the LR of the `check` photos (default: one random image).

    Both run through the Upscaler in float32 on the CPU, tile by tile as infer does. `dst` is written
    atomically and only when the check passes; an existing `dst` is replaced only with `overwrite`.
    """
    from unetsr.core.fileio import atomic_write, sha256_of
    from unetsr.imaging.photos import same_file
    from unetsr.inference.upscaler import Upscaler
    from unetsr.model.checkpoint import load_checkpoint

    dst = Path(dst)
    if same_file(src, dst):
        raise UnetsrError(f"{dst} is the checkpoint being exported; choose another output file")
    if dst.exists() and not overwrite:
        raise UnetsrError(f"{dst} already exists; pass --overwrite to replace it")
    try:
        import onnx  # noqa: F401  (the exporter and the metadata need it)
    except ImportError as exc:
        raise UnetsrError("ONNX export needs the onnx package: pip install -e '.[onnx]'") from exc
    source = load_checkpoint(src)
    images = check_images(check, source.config.scale)
    data = onnx_bytes(source.model, {**source.meta, **(meta or {})}, opset)
    exported = OnnxModel(data, name=str(dst))
    torch_side = Upscaler(source.model, device="cpu", precision="fp32", tile=512)
    diff = max_output_difference(torch_side, Upscaler(exported, tile=512), images)
    if diff > tolerance:
        raise UnetsrError(f"onnxruntime's outputs differ from torch's by {diff * 255:.2f}/255 "
                          f"(> {tolerance * 255:.2f}/255); nothing written")
    atomic_write(dst, lambda f: f.write(data))
    return Export(dst, sha256_of(dst), dst.stat().st_size, diff)
