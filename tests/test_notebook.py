"""The walkthrough notebook: committed without outputs, and runs top to bottom in quick mode.

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


def test_notebook_runs_in_quick_mode(tmp_path: Path) -> None:
    pytest.importorskip("ipykernel")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    import torchvision

    nb = nbformat.read(NOTEBOOK, as_version=4)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    work, scratch = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    scratch.mkdir()
    # Quick mode; no photos, so the synthetic ones; the notebook's temporary files under tmp_path.
    env = {"UNETSR_QUICK": "1", "UNETSR_PHOTOS": str(tmp_path / "no-photos-here"), "PYTHONPATH": pythonpath,
           "TMPDIR": str(scratch)}
    client = nbclient.NotebookClient(nb, km=_kernel_manager(tmp_path, env), timeout=600,
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
    assert "synthetic photo-like images" in text
    assert f"files in {scratch}" in text

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

    m = re.search(r"training loss: mean of first \d+ steps ([\d.]+) -> mean of last \d+ steps ([\d.]+)", text)
    assert m, text
    first, last = map(float, m.groups())
    assert last < first

    assert re.search(r"Results below use the (shipped model|model trained above)", text)
    m = re.search(r"mean PSNR-Y over \d+ validation crops: bilinear ([\d.]+) dB, bicubic ([\d.]+) dB, "
                  r"model ([\d.]+) dB", text)
    assert m, text
    assert all(15 < float(v) < 60 for v in m.groups())

    figures = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(figures) >= 3
