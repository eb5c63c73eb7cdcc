"""The models the web page offers, each loaded once and shared by the queue's workers, and an Upscaler that
reports every tile it computes (the page's progress bar)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from unetsr.inference.choice import choose, installed
from unetsr.inference.upscaler import Upscaler
from unetsr.model.checkpoint import shipped_path


class TrackedUpscaler(Upscaler):
    """An Upscaler that calls the current thread's `tick` after every tile it computes (for progress)."""

    _hooks = threading.local()

    def _run_model(self, patch: torch.Tensor) -> torch.Tensor:
        result = super()._run_model(patch)
        if (tick := getattr(self._hooks, "tick", None)) is not None:
            tick()
        return result

    @contextmanager
    def reporting(self, tick: Callable[[], None]) -> Iterator[None]:
        """Within this block, `tick()` runs after each tile computed by this thread; it may raise to stop."""
        self._hooks.tick = tick
        try:
            yield
        finally:
            self._hooks.tick = None


class Models:
    """The models the page offers: 'auto' (the --checkpoint, else the shipped model `choice.choose` picks per
    photo, as infer does) and each installed shipped model by its SHIPPED name, never another file beside them;
    each loaded once, when first used (shipped ones SHA-256-checked, by `Upscaler.from_shipped`), and shared."""

    def __init__(self, checkpoint: str | Path | None = None, **options: object) -> None:
        self.options = options
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.names: tuple[str, ...] = ("auto", *sorted(installed()))
        self._loaded: dict[tuple[str, bool], TrackedUpscaler] = {}
        self._lock = threading.Lock()

    def labels(self) -> dict[str, str]:
        """Model name -> what the page shows for it."""
        auto = f"auto ({self.checkpoint.name if self.checkpoint else 'by scale and JPEG quality'})"
        return {name: auto if name == "auto" else f"{name} (shipped)" for name in self.names}

    def files(self) -> list[Path]:
        """The model files the page may load: messages shown on the page name them without their folders."""
        return [path for path in (self.checkpoint, *map(shipped_path, self.names[1:])) if path is not None]

    def get(self, name: str, source: Path | None = None, outscale: float = 2.0, ensemble: bool = False,
            ) -> tuple[TrackedUpscaler, str]:
        """The upscaler for a model name, and which model that is and why, as infer's per-file line says it
        (KeyError for an unknown name; CheckpointError if it cannot load). 'auto' without a --checkpoint is the
        shipped model chosen for the photo at `source` and `outscale`; `ensemble`: the x8 self-ensemble."""
        if name not in self.names:
            raise KeyError(name)
        why = "" if name == "auto" else " (chosen on the page)"
        if name == "auto" and self.checkpoint is None:
            choice = choose(source, outscale)
            name, why = choice.name, f": {choice.reason}"
        with self._lock:
            if (name, ensemble) not in self._loaded:
                self._loaded[name, ensemble] = (
                    TrackedUpscaler.from_checkpoint(self.checkpoint, **self.options, ensemble=ensemble)
                    if name == "auto" else TrackedUpscaler.from_shipped(name, **self.options, ensemble=ensemble))
            upscaler = self._loaded[name, ensemble]
        return upscaler, upscaler.name + upscaler.ensemble_note + why
