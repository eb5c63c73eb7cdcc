"""Shared by the benchmarks: the header line every table starts with, and the model to measure."""

from __future__ import annotations

import platform
import sys

import torch

from unetsr.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, load_default
from unetsr.config import ModelConfig
from unetsr.errors import CheckpointError
from unetsr.model import UNetSR, build_model


def header() -> str:
    """The command, torch version, thread count and processor: how and where the figures were measured."""
    return (f"command: python {' '.join(sys.argv)}\n"
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()} "
            f"{platform.processor() or ''}".rstrip())


def benchmark_model(checkpoint: str | None) -> tuple[UNetSR, str]:
    """The given checkpoint, else the shipped model, else an untrained default-size model (same speed)."""
    if checkpoint:
        return load_checkpoint(checkpoint).model, checkpoint
    try:
        return load_default().model, str(DEFAULT_CHECKPOINT.name)
    except CheckpointError:
        return build_model(ModelConfig(backbone="random")).eval(), "untrained default-size model"
