"""One self-contained checkpoint file: config, every weight inference needs, metadata, and optionally
the training state. Read with `torch.load(weights_only=True)`: a checkpoint is data, not code."""

from __future__ import annotations

import hashlib
import pickle
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import ModelConfig
from .errors import CheckpointError, first_line
from .model import UNetSR

FORMAT = "unetsr-checkpoint"
VERSION = 1
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "unetsr_x2.pt"
DEFAULT_SHA256: str | None = "20e59443f2b958a8f181073520a56138362e81d0587ff1d76ef2bd3ff0f34a7f"


@dataclass
class Checkpoint:
    """What a checkpoint file holds, with the model already rebuilt."""

    model: UNetSR
    meta: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def save_checkpoint(path: str | Path, model: UNetSR, meta: dict[str, Any] | None = None,
                    train_state: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Write the model (encoder slice included), its config and metadata atomically to `path`.

    `half` stores floating-point weights as float16 to halve the file; they load back as float32.
    """
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        payload["train_state"] = train_state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, expected_sha256: str | None = None) -> Checkpoint:
    """Rebuild the model a checkpoint describes; CheckpointError for anything that is not a sound one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if expected_sha256 is not None and (actual := sha256_of(path)) != expected_sha256:
        raise CheckpointError(f"checkpoint {path} is damaged: SHA-256 {actual[:12]}… does not match the "
                              f"recorded {expected_sha256[:12]}…; restore it (git checkout / reinstall)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused it: it holds code or foreign objects
        raise CheckpointError(f"checkpoint {path}: unreadable as data only; not a unetsr checkpoint") from exc
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable, truncated or not a PyTorch file "
                              f"({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a unetsr checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {payload.get('version')} is not supported "
                              f"(this unetsr reads version {VERSION})")
    try:
        config = ModelConfig.from_dict(payload["config"])
        model = UNetSR(config)
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        model.load_state_dict(state)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not match its config ({first_line(exc)})") from exc
    return Checkpoint(model.eval(), payload.get("meta", {}), payload.get("train_state"))


def load_default() -> Checkpoint:
    """The x2 model shipped inside the package, verified against its recorded SHA-256."""
    if DEFAULT_SHA256 is None or not DEFAULT_CHECKPOINT.is_file():
        raise CheckpointError(f"no default model installed (expected {DEFAULT_CHECKPOINT}); restore it "
                              "(git checkout / reinstall unetsr) or pass --checkpoint PATH to a unetsr checkpoint")
    return load_checkpoint(DEFAULT_CHECKPOINT, expected_sha256=DEFAULT_SHA256)


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

