"""The README's commands do what they say, run verbatim from a copy of the repository root after the set-up
commands: cheap ones as written, the training run with tiny settings appended (later flags win)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = {  # what each README line that is not run here is, and where it is tested instead
    "python3 -m venv": "the set-up itself: CI runs it",
    ". .venv/bin/activate": "the set-up itself: CI runs it",
    "pip install": "the set-up itself: CI runs it",
    "python -m pytest": "the tests themselves",
    "python -m unetsr.serve": "a server until Ctrl-C: tests/test_serve.py starts it for real",
    'UNETSR_CONTACT="you@example.org" python -m unetsr.download': "needs Wikimedia Commons: tests/test_download.py "
                                                                   "runs it against a local server",
}
TINY_TRAINING = " --steps 2 --val-every 2 --widths 8 8 8 8 8 --blocks 1 1 1 1 1 --crop 32 --batch 2 --workers 0"


def readme_commands() -> list[str]:
    """Every command line of the README's ```sh blocks, comments removed."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_every_readme_command_is_run_here_or_said_where_it_is_tested() -> None:
    commands = readme_commands()
    assert "python -m unetsr.infer photo.jpg" in commands and len(commands) >= 10
    for line in commands:
        parts = [part.strip() for part in line.split("&&")]
        for part in parts:
            assert part.startswith(("python -m unetsr.", "unetsr-", "mkdir ", "cp ", *NOT_RUN)), part


def test_the_readmes_commands_run_verbatim(tmp_path: Path) -> None:
    """About 40 s on 2 cores: three runs of the shipped models, a tiny training run, evaluate and export."""
    repo = tmp_path / "repo"
    repo.mkdir()
    with Image.open(ROOT / "photo.jpg") as im:  # the example photo, smaller, so the x3 ensemble stays quick
        im.resize((342, 192), Image.LANCZOS).save(repo / "photo.jpg", quality=90)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT)}
    ran = []
    for line in readme_commands():
        if line.startswith(tuple(NOT_RUN)):
            continue
        command = line + (TINY_TRAINING if "unetsr.train" in line else "")
        proc = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr
        ran.append(line)
    written = {str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()}
    for expected in ("photo_x2.png", "photo_x4.jpg", "photo_x3_ensemble.png", "album_x2/2024/photo_x2.png",
                     "runs/mine/best.pt", "mine.pt", "photo_mine_x2.png"):
        assert expected in written, (expected, sorted(written))
    assert sorted(p.name for p in (repo / "album" / "2024").iterdir()) == ["photo.jpg", "photo_x2.png", "photo_x4.png"]
    with Image.open(repo / "photo_x4.jpg") as im:
        assert im.size == (1368, 768) and im.format == "JPEG"
    assert len(ran) >= 8
