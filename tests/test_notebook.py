"""The walkthrough notebook and its helper module: committed without outputs, a lean first cell, set-up
plumbing in notebooks/notebook_helpers.py, the scale parameter honoured, and it runs top to bottom in quick mode.

The kernel is started from a kernel spec written for this test whose command is this interpreter
(`sys.executable -m ipykernel_launcher`), so the notebook runs in the same environment as pytest
whatever kernels Jupyter has (or has not) registered.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "upscale_unet.ipynb"
KERNEL_NAME = "unetsr-notebook-test"


def test_committed_notebook_has_no_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    for i, cell in enumerate(code):
        assert cell.get("outputs") == [], f"code cell {i} has outputs: strip them before committing"
        assert cell.get("execution_count") is None, f"code cell {i} has an execution count"


def _cells(kind: str) -> list[str]:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return ["".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == kind]


def test_the_first_cell_says_what_you_will_see_and_how_long() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    first = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown" and len(first.splitlines()) <= 16
    assert "**What you will see**" in first and "**How long**" in first
    assert re.search(r"quick mode .*\d+ s", first, re.S) and re.search(r"full run .*\d+ min", first, re.S)


def test_set_up_plumbing_lives_in_the_helper_module() -> None:
    code = "\n".join(_cells("code"))
    for plumbing in ("sys.path", "tempfile", "def ", "mkdir", ".save(folder"):
        assert plumbing not in code, f"{plumbing!r} in a code cell: it belongs in notebooks/notebook_helpers.py"
    assert "import notebook_helpers as nh" in code and "nh.start(" in code and "session.cleanup()" in code


def test_the_scale_parameter_is_honoured_everywhere() -> None:
    # No code cell names a fixed factor (x2 models, ×2 labels, scale=2); the prose says ×`SCALE`, and its
    # only "×2" is the diagram's fixed feature upsampling between encoder levels ("up×2").
    for source in _cells("code"):
        assert not re.search(r"\bx2\b|×2|scale=2\b|outscale=2\b", source), source
    for source in _cells("markdown"):
        assert not re.findall(r"(?<!up)×2\b", source), source
    params = next(s for s in _cells("code") if "QUICK =" in s)
    assert 'SCALE = int(os.environ.get("UNETSR_SCALE", "2"))' in params


def test_quick_copies_keep_a_whole_validation_crop(tmp_path: Path) -> None:
    # Quick mode shrinks photos to 192 px on the short side, so a 3:2 photo still gives 192-px validation crops
    # (shrunk by its long side to 256 px, it would be 256×171 and skipped as too small).
    import numpy as np
    from PIL import Image

    from notebooks import notebook_helpers as nh
    from unetsr.training.data import validation_crops

    Image.fromarray(nh.synthetic_photo(600, 1)[:400]).save(tmp_path / "wide.png")
    nh.shrunk_copy(tmp_path / "wide.png", tmp_path / "copy.png")
    with Image.open(tmp_path / "copy.png") as im:
        assert im.size == (288, 192)
    _, hr = validation_crops([tmp_path / "copy.png"], scale=2, per_image=1)
    assert hr.shape == (1, 3, 192, 192) and np.isfinite(hr.numpy()).all()


def test_the_shipped_model_line_never_says_nan(capsys, tmp_path: Path) -> None:
    from notebooks import notebook_helpers as nh
    from unetsr.inference.choice import installed
    from unetsr.model.checkpoint import load_shipped

    if "x2" not in installed():
        pytest.skip("the shipped x2 model is not installed")
    model, which = nh.results_model("auto", 2, tmp_path / "unused.pt", "unused")
    line = capsys.readouterr().out
    assert which == "the shipped x2 model" and model.config.scale == 2
    steps = load_shipped("x2").meta["steps"]  # what the file records, read here on its own
    assert line.startswith(f"Results below use the shipped x2 model (unetsr_x2.pt): {steps:,} training steps")
    assert "nan" not in line and "records no validation score" in line


def _kernel_manager(tmp_path: Path, env: dict[str, str]):
    """An AsyncKernelManager for a kernel spec, in a private folder, that runs sys.executable."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    spec_dir = tmp_path / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "unetsr test", "language": "python", "env": env}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def _output_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stdout":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _photos(folder: Path, count: int, seed: int) -> None:
    """`count` 320×240 photo-like PNGs: a gradient, a few shapes, noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        ramp = np.linspace(0, 1, 320)[None, :, None] * rng.uniform(60, 200, 3) + rng.uniform(0, 50, 3)
        image = Image.fromarray(np.broadcast_to(ramp, (240, 320, 3)).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = (int(v) for v in rng.integers(0, 300, 2))
            draw.ellipse([x, y, x + 40, y + 25], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 4, (240, 320, 3))
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / f"photo_{i}.png")


def test_notebook_runs_in_quick_mode(tmp_path: Path) -> None:
    pytest.importorskip("ipykernel")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    import torchvision

    nb = nbformat.read(NOTEBOOK, as_version=4)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    work, scratch, photos = tmp_path / "cwd", tmp_path / "tmp", tmp_path / "photos"
    work.mkdir()
    scratch.mkdir()
    _photos(photos / "train", 6, seed=0)
    _photos(photos / "val", 3, seed=1)
    # Quick mode on a folder of photos made here (UNETSR_PHOTOS); the notebook's temporary files under tmp_path.
    env = {"UNETSR_QUICK": "1", "UNETSR_PHOTOS": str(photos), "PYTHONPATH": pythonpath, "TMPDIR": str(scratch)}
    # startup_timeout: nbclient's 60 s default for the kernel to answer is too short on a loaded 2-core machine
    client = nbclient.NotebookClient(nb, km=_kernel_manager(tmp_path, env), timeout=600, startup_timeout=300,
                                     resources={"metadata": {"path": str(work)}})
    start = time.perf_counter()
    client.execute(cleanup_kc=True)  # raises CellExecutionError if any cell fails
    elapsed = time.perf_counter() - start
    print(f"notebook ran in {elapsed:.1f} s")

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    text = _output_text(nb)
    # The kernel ran this interpreter, in quick mode, on the synthetic images.
    assert f"python {sys.executable}\n" in text
    assert "mode: QUICK" in text
    assert f"files in {scratch}" in text
    # Quick mode takes 4 of the 9 photos, shrunk, and removes its temporary folder at the end.
    assert f"photos: 4 of those in {photos}, shrunk to 192 px on the short side" in text
    assert "3 training and 1 validation images" in text
    assert "validation: 4 crops of 192 px" in text  # 256×192 copies: the crops are the whole short side
    assert "nan" not in text.lower()
    assert not list(scratch.glob("unetsr-notebook-*")), "the notebook left its temporary folder behind"

    # Parameter counts: the frozen part is exactly ResNet18's conv1, bn1, layer1 and layer2.
    m = re.search(r"parameters: ([\d,]+) trainable, ([\d,]+) frozen", text)
    assert m, text
    trainable, frozen = (int(g.replace(",", "")) for g in m.groups())
    r18 = torchvision.models.resnet18(weights=None)
    assert frozen == sum(p.numel() for part in (r18.conv1, r18.bn1, r18.layer1, r18.layer2)
                         for p in part.parameters())
    assert 0 < trainable < frozen  # the quick decoder is tiny

    assert "untrained model equals bilinear: True" in text
    for key in ("feat3", "feat6", "l1"):
        assert f"{key} grows with blur: True" in text

    m = re.search(r"loss on 16 fixed training crops: untrained \(bilinear\) ([\d.]+) -> after 40 steps ([\d.]+)", text)
    assert m, text
    before, after = map(float, m.groups())
    assert after < before

    lines = [line for line in text.splitlines() if line.startswith("Results below use the ")]
    assert len(lines) == 1 and len(lines[0]) < 300, lines  # a short description, not the metadata dict
    which = re.match(r"Results below use (the shipped x2 model|the model trained above)", lines[0]).group(1)
    m = re.search(r"mean PSNR-Y over \d+ validation crops: bilinear ([\d.]+) dB, bicubic ([\d.]+) dB, "
                  r"model ([\d.]+) dB", text)
    assert m, text
    assert all(15 < float(v) < 60 for v in m.groups())
    bicubic, model = float(m.group(2)), float(m.group(3))
    # The sentence about the results names the model they came from and agrees with the numbers.
    m = re.search(rf"{which} is ([\d.]+) dB (above|below) bicubic on these crops \(x2, ", text)
    assert m, text
    assert float(m.group(1)) == pytest.approx(abs(model - bicubic), abs=0.02)
    assert m.group(2) == ("above" if model >= bicubic else "below")
    m = re.search(r"x8 self-ensemble \(ensemble=True\): model ([\d.]+) -> ([\d.]+) dB", text)
    assert m, text
    assert float(m.group(1)) == model and 15 < float(m.group(2)) < 60

    took = re.search(r"this run took \d+ s \(\d+ s of CPU time in this kernel\)", text)
    assert took, text
    print(took.group(0))  # the figure the first cell quotes (pytest -s shows it)

    figures = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(figures) >= 3
