"""unetsr.core.fileio: the one atomic write, and its SIGTERM clean-up that hands the signal on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unetsr.core.fileio import atomic_write, sha256_of

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_write_replaces_in_one_step_and_leaves_nothing_on_error(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    atomic_write(path, lambda f: f.write(b"first"))

    def fail(f) -> None:
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert sha256_of(path) == "a7937b64b8caa58f03721bb6bacf5c78cb235febe0e70b1b84cd99541461a08e"  # sha256(b"first")


@pytest.mark.parametrize("before, expected", [
    ("signal.signal(signal.SIGTERM, lambda s, f: (print('mine', flush=True), sys.exit(7)))", (7, "mine")),
    ("signal.signal(signal.SIGTERM, signal.SIG_IGN)", (0, "survived")),
    ("pass", (143, "")),
])
def test_sigterm_during_a_write_cleans_up_then_hands_the_signal_on(tmp_path: Path, before: str,
                                                                    expected: tuple[int, str]) -> None:
    """The handler installed before the first atomic write still runs (or the signal stays ignored)."""
    script = f"""if True:
        import os, signal, sys
        from unetsr.core.fileio import atomic_write
        {before}
        def save(f):
            f.write(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
        try:
            atomic_write(sys.argv[1], save)
        finally:
            pass
        print("survived", flush=True)
    """
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.bin")], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert (proc.returncode, proc.stdout.strip()) == expected, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == (["out.bin"] if expected[1] == "survived" else [])
