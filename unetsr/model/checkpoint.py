"""One self-contained checkpoint file: config, every weight inference needs, metadata, and optionally
the training state. Read with `torch.load(weights_only=True)`: a checkpoint is data, not code.

Every file carries a SHA-256 of its contents (each tensor's name, dtype, shape and bytes, and every
other value), checked on load, because torch does not check the CRCs of its zip: a flipped bit in a
weight would otherwise load silently and give garbage. Files written before the checksum existed
still load; the shipped model is also checked against its recorded whole-file SHA-256.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unetsr.core.errors import CheckpointError, first_line
from unetsr.core.fileio import atomic_write, sha256_of
from unetsr.model.config import ModelConfig
from unetsr.model.network import UNetSR

FORMAT = "unetsr-checkpoint"
VERSION = 1  # the checksum is an optional key, so version-1 files from before it still load
CHECKSUM_KEY = "sha256"
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "unetsr_x2.pt"
DEFAULT_SHA256: str | None = "4c3b25c500d61c80867f4a424a4eb72dddc2ee1f91c2138296f343b165da268e"
X4_SHA256: str | None = "af2cac34f9e73ca69459e29dc4b3e319afd1587f2a7dd55bbe48ea156641ce3a"
X2_JPEG_SHA256: str | None = "db066ac21ceeaf808207ee026c8d4f84d3676df249cc11ea8a8e340d846f0438"
X2_SHARPENED_SHA256: str | None = "6174751aa948945a5091ae2b07e9fb74433361b793886fb0cef7fced7923a36d"
MAX_FILE_BYTES = 512 * 2**20
"""The largest checkpoint file read: a training checkpoint of a large model is ~20 MB; this leaves room for many."""
MAX_PARAMETERS = 50_000_000
"""The most parameters a checkpoint's config may ask for (the shipped models have ~1.5 M), checked before building."""
SHIPPED: dict[str, str | None] = {"x2": DEFAULT_SHA256, "x4": X4_SHA256, "x2_jpeg": X2_JPEG_SHA256,
                                  "x2_sharpened": X2_SHARPENED_SHA256}  # unetsr/model/weights/unetsr_<name>.pt


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
    """Write the model (encoder slice included), its config, metadata and checksum atomically to `path`.

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
    payload[CHECKSUM_KEY] = content_sha256(payload)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, expected_sha256: str | None = None) -> Checkpoint:
    """Rebuild the model a checkpoint describes; CheckpointError for anything that is not a sound one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if expected_sha256 is not None and (actual := sha256_of(path)) != expected_sha256:
        raise CheckpointError(f"checkpoint {path} is damaged: SHA-256 {actual[:12]}… does not match the "
                              f"recorded {expected_sha256[:12]}…; restore it (git checkout / reinstall)")
    check_container(path)
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
    recorded = payload.pop(CHECKSUM_KEY, None)
    if recorded is not None and recorded != content_sha256(payload):
        raise CheckpointError(f"checkpoint {path} is damaged: its contents do not match the SHA-256 stored in "
                              "it; use another copy (or an earlier checkpoint of the run)")
    try:
        config = ModelConfig.from_dict(payload["config"])
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path}: its config is not a valid model ({first_line(exc)})") from exc
    check_shapes(path, config, payload.get("state_dict"))
    try:
        model = UNetSR(config)
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        model.load_state_dict(state)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not match its config ({first_line(exc)})") from exc
    if bad := [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]:
        raise CheckpointError(f"checkpoint {path}: weight {bad[0]!r} holds NaN or infinite values "
                              f"({len(bad)} tensor(s) affected): the training run diverged, or the file is damaged")
    return Checkpoint(model.eval(), payload.get("meta", {}), payload.get("train_state"))


def check_container(path: Path) -> None:
    """Refuse, before torch reads it, a file that is too large, not a zip as torch writes them, or whose entries
    are compressed or inflate past the limit (a zip bomb): `weights_only` stops code, not size."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"checkpoint {path}: {size / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB a "
                              "unetsr checkpoint can be; not loaded")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        with open(path, "rb") as f:
            head = f.read(64)
        if _looks_like_onnx(head):
            raise CheckpointError(f"checkpoint {path}: this is an ONNX model, not a unetsr checkpoint; give it a "
                                  ".onnx name (or pass --runtime onnx)") from exc
        raise CheckpointError(f"checkpoint {path}: unreadable, truncated or not a PyTorch file") from exc
    if any(e.compress_type != zipfile.ZIP_STORED for e in entries):
        raise CheckpointError(f"checkpoint {path}: holds compressed entries, which torch never writes; not loaded")
    if sum(e.file_size for e in entries) > size:  # stored entries lie inside the file: more is a lie
        raise CheckpointError(f"checkpoint {path}: its entries claim more bytes than the file holds; not loaded")


def check_shapes(path: Path, config: ModelConfig, state: Any) -> None:
    """Refuse a config too large to build, or whose tensors do not match the checkpoint's, before any memory
    is spent on it: the model is first built on the meta device, which allocates nothing."""
    with torch.device("meta"):
        skeleton = UNetSR(config)
    wanted = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    count = sum(math.prod(shape) for shape in wanted.values())
    if count > MAX_PARAMETERS:
        raise CheckpointError(f"checkpoint {path}: its config asks for {count:,} weights, over the "
                              f"{MAX_PARAMETERS:,} a unetsr model can have; not loaded")
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: not a unetsr checkpoint (no weights)")
    have = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if have != wanted:
        diff = sorted(set(have) ^ set(wanted)) or sorted(k for k in wanted if have.get(k) != wanted[k])
        raise CheckpointError(f"checkpoint {path}: weights do not match its config (first difference: {diff[0]!r})")


def _looks_like_onnx(head: bytes) -> bool:
    """True for the first bytes of an ONNX protobuf: field 1 (ir_version, varint) then a producer name or graph."""
    return len(head) > 2 and head[0] == 0x08 and (b"pytorch" in head or b"onnx" in head.lower() or head[2] in (0x12, 0x1A, 0x3A))


def load_default() -> Checkpoint:
    """The x2 model shipped inside the package, verified against its recorded SHA-256."""
    return load_shipped("x2")


def shipped_path(name: str) -> Path:
    """Where the shipped model `name` (a key of SHIPPED) lives: unetsr/model/weights/unetsr_<name>.pt."""
    return DEFAULT_CHECKPOINT if name == "x2" else WEIGHTS_DIR / f"unetsr_{name}.pt"


def load_shipped(name: str) -> Checkpoint:
    """A model shipped inside the package by name ('x2', 'x4', 'x2_jpeg', 'x2_sharpened'), verified against its recorded SHA-256:
    the one way every caller (Upscaler.from_shipped, the model choice, the web page) loads a shipped model."""
    if name not in SHIPPED:
        raise CheckpointError(f"no shipped model {name!r}; the shipped ones are {', '.join(SHIPPED)}")
    path = shipped_path(name)
    sha = SHIPPED[name]
    if sha is None or not path.is_file():
        raise CheckpointError(f"no {'default ' if name == 'x2' else ''}{name} model installed (expected {path}); restore it "
                              "(git checkout / reinstall unetsr) or pass --checkpoint PATH to a unetsr checkpoint")
    return load_checkpoint(path, expected_sha256=sha)


def content_sha256(payload: Any) -> str:
    """Hex SHA-256 of everything in a checkpoint payload: each tensor's name, dtype, shape and bytes, and
    the repr of every other value, in sorted order of their names, so it survives a save and load."""
    digest = hashlib.sha256()
    for name, value in sorted(_leaves(payload, ""), key=lambda leaf: leaf[0]):
        digest.update(f"{name}\0".encode())
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}\0".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
        else:
            digest.update(f"{type(value).__name__}:{value!r}\0".encode())
    return digest.hexdigest()


def _leaves(value: Any, name: str) -> Iterator[tuple[str, Any]]:
    """(path, value) for every tensor and plain value inside nested dicts, lists and tuples, and for
    each container its type and length (so an emptied one counts as a change)."""
    if isinstance(value, dict):
        yield name, (type(value).__name__, len(value))
        for key, item in value.items():
            yield from _leaves(item, f"{name}/{key!r}")
    elif isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        yield name, (type(value).__name__, len(value))
        for i, item in enumerate(value):
            yield from _leaves(item, f"{name}[{i}]")
    else:
        yield name, value
