"""What a training run tells its user and how it stops: the time left, validation lines beside bicubic's,
and Ctrl-C that ends the run after the step in progress, saved."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from unetsr.training.recipes import TrainConfig


def say(text: str) -> None:
    """One line of the run's own on stderr."""
    print(f"unetsr.train: {text}", file=sys.stderr, flush=True)


def validation_line(step: int, record: dict, reference: dict[str, float]) -> str:
    """What a validation says on the terminal: the model's scores beside bicubic's on the same crops."""
    line = f"unetsr.train: step {step}: val PSNR-Y {record['val_psnr']:.2f} dB, SSIM-Y {record['val_ssim']:.4f}"
    if reference:
        line += (f" (bicubic {reference['psnr']:.2f} dB, {reference['ssim']:.4f}; "
                 f"{record['val_psnr'] - reference['psnr']:+.2f} dB)")
    return line


class Estimate:
    """The time left, said once after the first steps have been timed (the first few warm up caches)."""

    WARMUP, TIMED = 5, 20

    def __init__(self, first_step: int, cfg: TrainConfig) -> None:
        self.first, self.cfg, self.started, self.said = first_step, cfg, None, False

    def update(self, step: int) -> str | None:
        """The line to print, once, when enough steps are timed; None otherwise."""
        done = step - self.first
        if done == self.WARMUP:
            self.started = time.perf_counter()
        if self.said or self.started is None or done < self.WARMUP + self.TIMED:
            return None
        self.said = True
        per_step = (time.perf_counter() - self.started) / (done - self.WARMUP)
        left = self.cfg.steps - step
        return (f"unetsr.train: {1 / per_step:.2f} steps/s; the remaining {left:,} steps take about "
                f"{format_duration(left * per_step)} (validation every {self.cfg.val_every:,} steps adds a little)")


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '3 h 20 min'."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Interrupted(KeyboardInterrupt):
    """The run stopped on Ctrl-C after saving `step` to `last`."""

    def __init__(self, step: int, last: Path) -> None:
        super().__init__(f"interrupted at step {step}, saved to {last}")
        self.step, self.last = step, last


class StopRequest:
    """Ctrl-C asks the loop to stop after the step in progress (and save); a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def on_sigint(self) -> Iterator[None]:
        """Handle SIGINT this way while the block runs (main thread only; elsewhere Ctrl-C stays as it was)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: object) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\nunetsr.train: stopping after this step and saving it (Ctrl-C again to stop at once)",
                  file=sys.stderr, flush=True)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
