"""The x2 model shipped in the package: intact, found without flags, and better than bicubic."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import as_batch, photo_like
from PIL import Image

from unetsr.core.errors import CheckpointError
from unetsr.core.fileio import sha256_of
from unetsr.evaluation.metrics import psnr_y, ssim_y
from unetsr.inference.upscaler import Upscaler
from unetsr.model import checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_checkpoint_matches_its_recorded_sha256() -> None:
    assert checkpoint.DEFAULT_SHA256 is not None
    assert checkpoint.DEFAULT_CHECKPOINT.stat().st_size < 10 * 2**20
    assert sha256_of(checkpoint.DEFAULT_CHECKPOINT) == checkpoint.DEFAULT_SHA256
    ckpt = checkpoint.load_default()
    assert ckpt.config.scale == 2 and ckpt.meta["steps"] > 0


def test_a_damaged_shipped_file_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    damaged = tmp_path / "unetsr_x2.pt"
    shutil.copy(checkpoint.DEFAULT_CHECKPOINT, damaged)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", damaged)
    with pytest.raises(CheckpointError, match="damaged"):
        checkpoint.load_default()


def test_beats_bicubic_on_a_photo_like_image() -> None:
    hr = (photo_like(192, 256, seed=11) * 255 + 0.5).astype(np.uint8)
    lr = Image.fromarray(hr).resize((128, 96), Image.BICUBIC)
    bicubic = np.asarray(lr.resize((256, 192), Image.BICUBIC), dtype=np.float32) / 255
    model = Upscaler.from_checkpoint(device="cpu").upscale_array(np.asarray(lr, dtype=np.float32) / 255)
    target = as_batch(hr / 255)
    gain = psnr_y(as_batch(model), target, 2).item() - psnr_y(as_batch(bicubic), target, 2).item()
    assert gain > 1.5  # the shipped model measured +3.1 dB here
    assert ssim_y(as_batch(model), target, 2).item() > ssim_y(as_batch(bicubic), target, 2).item()


def test_infer_uses_the_shipped_model_without_flags(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    Image.fromarray((photo_like(48, 64) * 255).astype(np.uint8)).save(photo, quality=95)
    proc = subprocess.run([sys.executable, "-m", "unetsr.infer", str(photo)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "photo_x2.png") as out:
        assert out.size == (128, 96)


def test_tiles_of_the_shipped_model_match_the_whole_image() -> None:
    image = photo_like(192, 256, seed=3)
    model = Upscaler.from_checkpoint(device="cpu").model
    whole = Upscaler(model, device="cpu").upscale_array(image)
    tiled = Upscaler(model, device="cpu", tile=64).upscale_array(image)  # 12 tiles, default 16 px of context
    assert np.abs(tiled - whole).max() < 1 / 255  # measured 0.42/255 in fp32 and in bf16 (32 px: 0.10 and 0.25)


def test_bf16_inference_of_the_shipped_model_stays_within_one_level_of_fp32() -> None:
    hr = photo_like(192, 256, seed=12)
    lr = np.asarray(Image.fromarray((hr * 255 + 0.5).astype(np.uint8)).resize((128, 96), Image.BICUBIC),
                    dtype=np.float32) / 255
    model = checkpoint.load_default().model
    fp32 = Upscaler(model, device="cpu", precision="fp32").upscale_array(lr)
    bf16 = Upscaler(model, device="cpu", precision="bf16").upscale_array(lr)
    diff = np.abs(bf16 - fp32)
    assert diff.max() < 1 / 255 and diff.mean() < 0.05 / 255  # on the val photos: 0.60/255 and 0.016/255
    change = psnr_y(as_batch(bf16), as_batch(hr), 2).item() - psnr_y(as_batch(fp32), as_batch(hr), 2).item()
    assert abs(change) < 0.01


def test_the_shipped_x4_model_loads_and_beats_bicubic_at_x4() -> None:
    from unetsr.imaging.resize import make_lr, upscale_baseline
    from unetsr.inference.choice import shipped_upscaler
    from unetsr.model.checkpoint import SHIPPED, WEIGHTS_DIR, load_shipped

    path = WEIGHTS_DIR / "unetsr_x4.pt"
    assert path.stat().st_size < 10 * 2**20 and sha256_of(path) == SHIPPED["x4"]
    assert load_shipped("x4").model.config.scale == 4
    up = shipped_upscaler(4.0, device="cpu")
    assert up.scale == 4 and up.passes_for(4.0) == 1
    hr, lr = make_lr(photo_like(192, 256, seed=3), 4)
    model = psnr_y(up.upscale_tensor(as_batch(lr), 4.0), as_batch(hr), 4).item()
    bicubic = psnr_y(as_batch(upscale_baseline(lr, (256, 192))), as_batch(hr), 4).item()
    assert model > bicubic + 0.5, (model, bicubic)


def test_the_shipped_jpeg_model_is_intact_and_better_than_the_clean_one_on_a_jpeg(tmp_path: Path) -> None:
    from unetsr.imaging.resize import make_lr, upscale_baseline
    from unetsr.inference.choice import shipped_upscaler
    from unetsr.model.checkpoint import SHIPPED, WEIGHTS_DIR, load_shipped

    path = WEIGHTS_DIR / "unetsr_x2_jpeg.pt"
    assert path.stat().st_size < 10 * 2**20 and sha256_of(path) == SHIPPED["x2_jpeg"]
    assert load_shipped("x2_jpeg").model.config == load_shipped("x2").model.config
    hr, lr = make_lr(photo_like(192, 256, seed=13), 2, quality=75)
    target = as_batch(hr)

    def score(image) -> float:
        return psnr_y(as_batch(image) if isinstance(image, np.ndarray) else image, target, 2).item()

    jpeg_model = score(shipped_upscaler(name="x2_jpeg", device="cpu").upscale_tensor(as_batch(lr)))
    clean_model = score(shipped_upscaler(name="x2", device="cpu").upscale_tensor(as_batch(lr)))
    bicubic = score(upscale_baseline(lr, (256, 192)))
    assert jpeg_model > bicubic + 0.3 and jpeg_model > clean_model + 0.3, (jpeg_model, clean_model, bicubic)

    photo = tmp_path / "shared.jpg"  # and infer picks it for a q75 JPEG without a flag
    Image.fromarray((photo_like(48, 64) * 255).astype(np.uint8)).save(photo, quality=75)
    proc = subprocess.run([sys.executable, "-m", "unetsr.infer", str(photo)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "shipped x2_jpeg model: JPEG q≈75" in proc.stdout, proc.stderr


def test_the_shipped_sharpened_model_is_intact_and_draws_no_halo_where_the_clean_one_does(tmp_path: Path) -> None:
    # A photo-like image, its LR sharpened by an unsharp mask (as cameras do) and saved at q95: the clean model
    # draws the halos larger (below bicubic), the sharpened model undoes them (above bicubic and the clean one).
    from PIL import ImageFilter

    from unetsr.evaluation.metrics import halo_y
    from unetsr.imaging.jpeg import jpeg_roundtrip
    from unetsr.imaging.resize import make_lr, upscale_baseline
    from unetsr.inference.choice import shipped_upscaler
    from unetsr.model.checkpoint import SHIPPED, WEIGHTS_DIR, load_shipped

    path = WEIGHTS_DIR / "unetsr_x2_sharpened.pt"
    assert path.stat().st_size < 10 * 2**20 and sha256_of(path) == SHIPPED["x2_sharpened"]
    assert load_shipped("x2_sharpened").model.config == load_shipped("x2").model.config
    hr, lr = make_lr(photo_like(192, 256, seed=21), 2)
    lr8 = Image.fromarray((lr * 255 + 0.5).astype(np.uint8)).filter(ImageFilter.UnsharpMask(1.5, 120, 2))
    lr = jpeg_roundtrip(np.asarray(lr8), 95).astype(np.float32) / 255
    target = as_batch(hr)

    def score(image) -> tuple[float, float]:
        batch = (as_batch(image) if isinstance(image, np.ndarray) else image).clamp(0, 1)
        return psnr_y(batch, target, 2).item(), halo_y(batch, target, 2).item()

    sharpened = score(shipped_upscaler(name="x2_sharpened", device="cpu").upscale_tensor(as_batch(lr)))
    clean = score(shipped_upscaler(name="x2", device="cpu").upscale_tensor(as_batch(lr)))
    bicubic = score(upscale_baseline(lr, (256, 192)))
    assert clean[0] < bicubic[0] < sharpened[0], (sharpened, clean, bicubic)
    assert sharpened[1] < bicubic[1] < clean[1], (sharpened, clean, bicubic)
