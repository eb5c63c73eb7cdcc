"""`OnnxModel`: an exported unetsr ONNX file run by onnxruntime, shaped like the torch model for `Upscaler`.

It offers what the Upscaler uses of a model (`config.scale`, `config.stride`, `eval()`, calling it on a
(N, 3, H, W) float32 tensor in [0, 1]), so tiling, colour, alpha and metadata handling stay the Upscaler's
and infer's, the same for both runtimes. onnxruntime is an optional extra: `pip install unetsr[onnx]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetsr.core.errors import CheckpointError, UnetsrError, first_line

INPUT_NAME = "input"
OUTPUT_NAME = "output"
MAX_SCALE = 16
MAX_STRIDE = 64
MAX_FILE_BYTES = 512 * 2**20  # an exported unetsr model is a few MB
FORMAT = "unetsr-onnx"
"""The `format` entry of an exported model's metadata_props: what marks a file as a unetsr ONNX model."""


@dataclass(frozen=True)
class OnnxConfig:
    """The part of a model's config the Upscaler needs, read from the ONNX file's metadata."""

    scale: int
    stride: int


def import_onnxruntime() -> Any:
    """The onnxruntime module, or UnetsrError saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise UnetsrError("onnxruntime is not installed: pip install -e '.[onnx]' "
                          "(or pip install onnxruntime)") from exc
    return onnxruntime


def onnx_providers(device: str = "auto") -> list[str]:
    """onnxruntime execution providers for `device` (auto, cpu, cuda); ValueError when it cannot be had."""
    available = import_onnxruntime().get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        raise ValueError("--device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
    raise ValueError(f"--device {device} is not supported by the onnx runtime; use cpu or cuda")


class OnnxModel:
    """An exported unetsr model in an onnxruntime session; call it like the torch model (float32 in and out)."""

    def __init__(self, source: str | Path | bytes, providers: list[str] | None = None,
                 name: str | None = None) -> None:
        """Open `source` (a path, or the file's bytes); CheckpointError if it is not a unetsr ONNX model."""
        ort = import_onnxruntime()
        self.name = name or (str(source) if not isinstance(source, bytes) else "the exported model")
        if not isinstance(source, bytes) and not Path(source).is_file():
            raise CheckpointError(f"ONNX model {self.name}: no such file")
        size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
        if size > MAX_FILE_BYTES:
            raise CheckpointError(f"ONNX model {self.name}: {size / 2**20:.0f} MB, over the "
                                  f"{MAX_FILE_BYTES // 2**20} MB a unetsr model can be; not loaded")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's own warnings would break one-line reports
        try:
            self.session = ort.InferenceSession(source if isinstance(source, bytes) else str(source), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors are plain Exception subclasses (InvalidProtobuf, ...)
            raise CheckpointError(f"ONNX model {self.name}: unreadable, truncated or not an ONNX file "
                                  f"({first_line(exc).replace('[ONNXRuntimeError] : ', '')})") from exc
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.config = self._read_config()

    def _read_config(self) -> OnnxConfig:
        """Scale and stride from the metadata, after checking the graph's input and output names."""
        if self.metadata.get("format") != FORMAT:
            raise CheckpointError(f"ONNX model {self.name}: not a unetsr export (no format={FORMAT} in its "
                                  "metadata); export one with python -m unetsr.export CHECKPOINT model.onnx")
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or OUTPUT_NAME not in outputs:
            raise CheckpointError(f"ONNX model {self.name}: expected input {INPUT_NAME!r} and output "
                                  f"{OUTPUT_NAME!r}, found {inputs} and {outputs}")
        try:
            scale, stride = int(self.metadata["scale"]), int(self.metadata["stride"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"ONNX model {self.name}: its metadata lacks a whole-number scale and "
                                  "stride") from exc
        if not (2 <= scale <= MAX_SCALE and 1 <= stride <= MAX_STRIDE):
            raise CheckpointError(f"ONNX model {self.name}: scale {scale} and stride {stride} are not those of a unetsr "
                                  f"model (scale 2 to {MAX_SCALE}, stride 1 to {MAX_STRIDE})")
        config = OnnxConfig(scale, stride)
        self._check_output(config)
        return config

    def _check_output(self, config: OnnxConfig) -> None:
        """Run one small input through the graph: its output must be the size the metadata's scale says, or
        every photo would come out scrambled (a x4 graph labelled x2)."""
        side = config.stride * max(1, 16 // config.stride)
        try:
            (out,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.zeros((1, 3, side, side), np.float32)})
        except Exception as exc:
            raise CheckpointError(f"ONNX model {self.name}: does not run on a {side}×{side} image "
                                  f"({first_line(exc).replace('[ONNXRuntimeError] : ', '')})") from exc
        expected = (1, 3, side * config.scale, side * config.scale)
        if tuple(out.shape) != expected:
            raise CheckpointError(f"ONNX model {self.name}: its metadata says x{config.scale}, but a {side}×{side} "
                                  f"input comes out {'×'.join(map(str, out.shape[2:]))}; not used")

    def eval(self) -> "OnnxModel":
        """A no-op, as for a torch model in eval mode: the exported graph is always in inference mode."""
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H*scale, W*scale) float32 on the CPU, not clamped (as the model)."""
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (out,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        n, _, h, w = array.shape
        if out.shape != (n, 3, h * self.config.scale, w * self.config.scale):
            raise CheckpointError(f"ONNX model {self.name}: a {h}×{w} input came out {out.shape[2]}×{out.shape[3]}, "
                                  f"not x{self.config.scale}")
        return torch.from_numpy(out)


def load_onnx(path: str | Path, device: str = "auto") -> OnnxModel:
    """The unetsr ONNX model at `path` on `device`'s provider; CheckpointError/ValueError with one line."""
    return OnnxModel(path, onnx_providers(device))
