import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import photo_like
from PIL import Image

from unetsr.core.errors import UnetsrError
from unetsr.imaging.resize import make_lr
from unetsr.training.data import (
    CropDataset,
    StepBatchSampler,
    downscale,
    find_images,
    load_photo,
    validation_crops,
)


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, (h, w) in enumerate([(80, 120), (96, 64), (150, 100)]):
        name = folder / ("sub" if i == 2 else "") / f"p{i}.png"
        Image.fromarray((photo_like(h, w, seed=i) * 255).astype(np.uint8)).save(name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_find_images_recurses_and_sorts(photo_dir: Path) -> None:
    paths = find_images([photo_dir])
    assert [p.name for p in paths] == ["p0.png", "p1.png", "p2.png"]
    with pytest.raises(FileNotFoundError):
        find_images([photo_dir / "missing"])


def test_items_are_deterministic_pairs_of_the_right_sizes(photo_dir: Path) -> None:
    ds = CropDataset(find_images([photo_dir]), crop=32, scale=2, min_crop=40, seed=7)
    lr, hr = ds[5]
    assert lr.shape == (3, 16, 16) and hr.shape == (3, 32, 32)
    assert 0 <= hr.min() and hr.max() <= 1
    again = CropDataset(find_images([photo_dir]), crop=32, scale=2, min_crop=40, seed=7)[5]
    assert torch.equal(lr, again[0]) and torch.equal(hr, again[1])
    other = CropDataset(find_images([photo_dir]), crop=32, scale=2, min_crop=40, seed=8)[5]
    assert not torch.equal(hr, other[1])
    assert not torch.equal(ds[5][1], ds[6][1])


def test_lr_is_a_downscale_of_hr(photo_dir: Path) -> None:
    ds = CropDataset(find_images([photo_dir]), crop=32, scale=2)
    for i in range(5):
        lr, hr = ds[i]
        bicubic = downscale(hr[None], 2, "bicubic")[0]
        assert (lr - bicubic).abs().mean() < 0.03


def test_downscalers_choose_the_lr_kernel(photo_dir: Path) -> None:
    paths = find_images([photo_dir])
    mixed = CropDataset(paths, crop=32, scale=2, seed=2)
    kernels_seen = set()
    for i in range(12):
        lr, hr = CropDataset(paths, crop=32, scale=2, seed=2, downscalers=("bicubic",))[i]
        assert torch.equal(lr, downscale(hr[None], 2, "bicubic")[0])  # bicubic only: every item
        lr_m, hr_m = mixed[i]
        assert torch.equal(hr_m, hr)  # the kernel changes the LR only
        kernels_seen |= {m for m in ("bilinear", "bicubic", "area") if torch.equal(lr_m, downscale(hr[None], 2, m)[0])}
    assert kernels_seen == {"bilinear", "bicubic", "area"}  # the default draws all three
    with pytest.raises(UnetsrError, match="downscalers"):
        CropDataset(paths, crop=32, scale=2, downscalers=("nearest",))


def test_degradations_change_the_lr_only(photo_dir: Path) -> None:
    paths = find_images([photo_dir])
    clean = CropDataset(paths, crop=32, scale=2, seed=1)
    damaged = CropDataset(paths, crop=32, scale=2, seed=1, degrade="mild")
    changed = 0
    for i in range(6):
        (lr_c, hr_c), (lr_d, hr_d) = clean[i], damaged[i]
        assert torch.equal(hr_c, hr_d)
        changed += not torch.equal(lr_c, lr_d)
    assert changed >= 3


def test_photos_that_fail_to_decode_are_skipped_with_a_warning(photo_dir: Path) -> None:
    whole = (photo_dir / "p0.png").read_bytes()
    (photo_dir / "truncated.png").write_bytes(whole[: len(whole) // 2])  # a sound header, half the pixels
    ds = CropDataset(find_images([photo_dir]), crop=32, scale=2)
    assert photo_dir / "truncated.png" in ds.paths  # the header check passes it; decoding fails later
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(12)]
    assert all(hr.shape == (3, 32, 32) for _, hr in items)
    assert any("truncated.png" in str(w.message) for w in caught)


def test_unreadable_and_too_small_training_photos_are_left_out_up_front(photo_dir: Path) -> None:
    (photo_dir / "notes.jpg").write_text("a text file named like a photo")
    (photo_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.warns(UserWarning, match=r"skipping 4 of 5 training photos: .*broken\.png.*notes\.jpg") as caught:
        ds = CropDataset(find_images([photo_dir]), crop=100, scale=2)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert [p.name for p in ds.paths] == ["p2.png"]  # 150×100: the only one with a 100 px short side
    assert ds[0][1].shape == (3, 100, 100)


def test_a_folder_of_non_images_is_one_clear_error(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"<html>not a photo</html>")
    with pytest.raises(UnetsrError, match="none of the 2 training photos can be used") as caught:
        CropDataset(find_images([tmp_path]), crop=32, scale=2)
    message = str(caught.value)
    assert "\n" not in message and "a.jpg: not a supported image" in message


def test_photos_that_all_fail_to_decode_end_in_one_line_even_from_a_worker(photo_dir: Path, tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    folder = tmp_path / "truncated"
    folder.mkdir()
    for name in ("p0.png", "p1.png"):
        whole = (photo_dir / name).read_bytes()
        (folder / name).write_bytes(whole[: len(whole) // 2])  # headers pass the up-front check; pixels do not
    ds = CropDataset(find_images([folder]), crop=32, scale=2)
    with pytest.raises(UnetsrError) as caught:  # raised in the worker process, re-raised here by torch
        next(iter(DataLoader(ds, batch_size=2, num_workers=1)))
    message = str(caught.value)
    assert re.fullmatch(r"20 training photos in a row failed to decode \(the last: .*p[01]\.png is damaged or "
                        r"truncated: .*\); check the training folders", message), message
    assert "\n" not in message and "Traceback" not in message and "worker" not in message


def test_step_sampler_resumes_and_splits_ranks() -> None:
    full = list(StepBatchSampler(0, 4, batch=3))
    assert full[2:] == list(StepBatchSampler(2, 4, batch=3))
    rank0 = list(StepBatchSampler(0, 2, batch=2, rank=0, world=2))
    rank1 = list(StepBatchSampler(0, 2, batch=2, rank=1, world=2))
    assert rank0 == [[0, 1], [4, 5]] and rank1 == [[2, 3], [6, 7]]


def test_validation_crops_are_fixed(photo_dir: Path) -> None:
    paths = find_images([photo_dir])
    lr, hr = validation_crops(paths, crop=48, scale=2, per_image=2)
    lr2, hr2 = validation_crops(paths, crop=48, scale=2, per_image=2)
    assert hr.shape == (6, 3, 48, 48) and lr.shape == (6, 3, 24, 24)
    assert torch.equal(hr, hr2) and torch.equal(lr, lr2)


def test_validation_skips_photos_smaller_than_the_crop_with_a_note(photo_dir: Path) -> None:
    for name, (h, w) in {"tiny.png": (24, 30), "dot.png": (1, 1)}.items():
        Image.fromarray((photo_like(h, w) * 255).astype(np.uint8)).save(photo_dir / name)
    with pytest.warns(UserWarning, match=r"skipping 2 of 5 validation photos: .*dot\.png: 1×1 px .*tiny\.png") as caught:
        lr, hr = validation_crops(find_images([photo_dir]), crop=48, scale=2, per_image=2)
    assert len(caught) == 1
    assert hr.shape == (6, 3, 48, 48) and lr.shape == (6, 3, 24, 24)  # the crop is not shrunk to the small photos


def test_validation_with_no_usable_photo_is_one_clear_error(tmp_path: Path) -> None:
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    (tmp_path / "fake.jpg").write_text("not a photo")
    with pytest.raises(UnetsrError, match=r"none of the 2 validation photos can be used .*48×48") as caught:
        validation_crops(find_images([tmp_path]), crop=48, scale=2)
    assert "\n" not in str(caught.value) and "fake.jpg" in str(caught.value)


def test_hr_crops_are_never_upsampled(photo_dir: Path, tmp_path: Path) -> None:
    ds = CropDataset(find_images([photo_dir]), crop=32, scale=2)
    rng = np.random.default_rng(0)
    assert min(ds.crop_side(short, rng) for short in (32, 40, 64, 500) for _ in range(200)) >= 32
    with pytest.raises(UnetsrError, match="never upsampled"):
        CropDataset(find_images([photo_dir]), crop=32, scale=2, min_crop=24)
    # a photo exactly the crop's size: every HR crop is the photo itself, turned or flipped, not resized
    exact = tmp_path / "exact"
    exact.mkdir()
    pixels = (np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(exact / "noise.png")
    views = [np.rot90(a, k) for a in (pixels, pixels[:, ::-1]) for k in range(4)]
    for i in range(6):
        hr = (CropDataset(find_images([exact]), crop=32, scale=2)[i][1].permute(1, 2, 0).numpy() * 255).round()
        assert any(np.array_equal(hr, v) for v in views)


def test_downscaled_noise_stays_uncorrelated(tmp_path: Path) -> None:
    # Upsampling a patch of independent noise makes neighbours alike (correlation ~0.8 for x1.5 bicubic);
    # a 1:1 or downscaled crop keeps them nearly independent.
    folder = tmp_path / "noise"
    folder.mkdir()
    Image.fromarray((np.random.default_rng(2).random((200, 200, 3)) * 255).astype(np.uint8)).save(folder / "n.png")
    ds = CropDataset(find_images([folder]), crop=32, scale=2, seed=3)
    for i in range(8):
        hr = ds[i][1].numpy()
        a, b = hr[:, :, :-1].ravel() - hr.mean(), hr[:, :, 1:].ravel() - hr.mean()
        assert abs((a * b).mean() / (a * a).mean()) < 0.5


def test_sixteen_bit_photos_keep_their_levels(tmp_path: Path) -> None:
    grey = np.array([[1000, 30000], [65535, 0]], dtype=np.uint16).repeat(20, 0).repeat(20, 1)
    path = tmp_path / "grey16.png"
    Image.fromarray(grey).save(path)
    photo = load_photo(path)
    assert photo.dtype == np.uint16 and sorted(np.unique(photo[..., 0])) == [0, 1000, 30000, 65535]


def test_validation_lr_is_the_evaluation_protocol(photo_dir: Path) -> None:
    lr, hr = validation_crops(find_images([photo_dir]), crop=48, scale=2, per_image=1)
    expected = make_lr(hr[0].permute(1, 2, 0).numpy(), 2)[1]
    assert np.allclose(lr[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_jpeg_validation_lr_is_the_saved_jpeg_of_the_clean_lr(photo_dir: Path) -> None:
    from unetsr.training.degradations import jpeg_roundtrip

    clean, hr = validation_crops(find_images([photo_dir]), crop=48, scale=2, per_image=1)
    jpeg, hr_j = validation_crops(find_images([photo_dir]), crop=48, scale=2, per_image=1, quality=70)
    assert torch.equal(hr, hr_j)
    lr8 = np.round(clean[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.array_equal(np.round(jpeg[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8), jpeg_roundtrip(lr8, 70))


@pytest.mark.parametrize("preset", ["jpeg", "photo"])
def test_a_degraded_item_is_the_same_every_time_and_its_hr_is_clean(photo_dir: Path, preset: str) -> None:
    paths = find_images([photo_dir])
    clean = CropDataset(paths, crop=32, scale=2, seed=2)
    first, again = (CropDataset(paths, crop=32, scale=2, seed=2, degrade=preset) for _ in range(2))
    for i in range(5):
        (lr, hr), (lr2, hr2), (_, hr_c) = first[i], again[i], clean[i]
        assert torch.equal(lr, lr2) and torch.equal(hr, hr2) and torch.equal(hr, hr_c)
    assert sum(not torch.equal(first[i][0], clean[i][0]) for i in range(5)) >= 3
    with pytest.raises(UnetsrError, match="unknown degradation"):
        CropDataset(paths, crop=32, scale=2, degrade="heavy")


def test_old_runs_with_an_on_off_degrade_still_load() -> None:
    from unetsr.training.recipes import TrainConfig

    assert TrainConfig.from_dict({"data": ["a"], "out": "b", "degrade": True}).degrade == "mild"
    assert TrainConfig.from_dict({"data": ["a"], "out": "b", "degrade": False}).degrade == "none"
