"""unetsr.batch.plan, infer's planning on plain values: inputs found, output names, refusals and skips, size limits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetsr.batch.plan import (
    Source,
    collect_inputs,
    format_scale,
    glob_root,
    mirrored,
    output_file_problem,
    output_is_file,
    output_path,
    output_suffix,
    plan_jobs,
    size_problem,
)
from unetsr.imaging.formats import READ_FORMATS
from unetsr.imaging.photos import Picture, write_image


def save(path: Path) -> Path:
    """A tiny real image, as a camera or an editor would write it (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(path)
    return path


def save_output(path: Path, bit_depth: int = 8) -> Path:
    """A tiny image written by unetsr (write_image), so it carries the output marker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, Picture(np.full((4, 6, 3), 0.5, np.float32), None, bit_depth, False, None, None))


def test_output_names_use_scale_and_format() -> None:
    assert format_scale(2.0) == "2"
    assert format_scale(1.5) == "1.5"
    assert format_scale(4 / 3) == "1.333333"
    assert output_suffix(2.0, None) == "_x2.png"
    assert output_suffix(1.5, "jpg") == "_x1.5.jpg"
    assert output_suffix(3.0, "webp") == "_x3.webp"
    assert output_path(Source(Path("a/b/photo.jpg"), Path("photo.jpg")), "_x2.png") == Path("a/b/photo_x2.png")
    assert output_path(Source(Path("in/s/p.jpg"), Path("s/p.jpg")), "_x2.png", Path("out")) == Path("out/s/p_x2.png")
    assert output_path(Source(Path("p.jpg"), Path("p.jpg")), "_x2.png", Path("r.png"), True) == Path("r.png")
    assert glob_root("photos/**/*.png") == Path("photos")
    assert glob_root("*.png") == Path(".")


def test_output_is_file_only_for_one_named_file(tmp_path: Path) -> None:
    a, b = save(tmp_path / "a.png"), save(tmp_path / "b.png")
    assert output_is_file(str(tmp_path / "r.png"), [str(a)])
    assert output_is_file(str(tmp_path / "r.png"), [str(a), str(tmp_path / "." / "a.png")])  # one file twice
    assert not output_is_file(str(tmp_path / "r.png"), [str(a), str(b)])
    assert not output_is_file(str(tmp_path / "out") + "/", [str(a)])
    assert not output_is_file(str(tmp_path), [str(a)])  # an existing folder
    assert not output_is_file(str(tmp_path / "r.png"), [str(tmp_path)])  # a folder input
    assert not output_is_file(str(tmp_path / "r.png"), [str(tmp_path / "a*.png")])  # a pattern


def test_output_file_suffix_must_fit_the_format() -> None:
    assert output_file_problem("out.png", None) is None
    assert output_file_problem("out.JPEG", "jpg") is None
    assert output_file_problem("out", "webp") is None
    assert "cannot write .tif files" in output_file_problem("out.tif", None)
    assert "does not match --format jpg" in output_file_problem("out.png", "jpg")


def test_plan_refuses_inputs_and_conflicts_and_skips_existing(tmp_path: Path) -> None:
    sources = [Source(tmp_path / n, Path(n)) for n in ("a.png", "a.jpg", "b.png", "b_x2.png", "c.png")]
    (tmp_path / "c_x2.png").write_bytes(b"an earlier result")
    jobs = plan_jobs(sources, "_x2.png")
    assert (jobs[0].refusal, jobs[0].skip, jobs[0].dest) == (None, None, tmp_path / "a_x2.png")
    assert "conflicts with the output of" in jobs[1].refusal  # a.jpg -> a_x2.png as well
    assert "also an input" in jobs[2].refusal  # b.png -> b_x2.png, which is an input
    assert jobs[3].refusal is None and jobs[3].dest == tmp_path / "b_x2_x2.png"
    assert jobs[4].refusal is None and "already exists" in jobs[4].skip
    assert plan_jobs(sources[4:], "_x2.png", overwrite=True)[0].skip is None
    (job,) = plan_jobs(sources[:1], "_x2.png", tmp_path / "a.png", output_is_a_file=True)
    assert "the input itself" in job.refusal


def test_collect_dedupes_identical_paths_and_reports_missing(tmp_path: Path) -> None:
    a = save(tmp_path / "a.png")
    (tmp_path / "empty").mkdir()
    found = collect_inputs([str(a), str(tmp_path / "." / "a.png"), str(tmp_path / "nope.png"),
                            str(tmp_path / "empty"), str(tmp_path / "z*.png")], False)
    assert [s.path for s in found.sources] == [a]
    assert [p.reason.split()[0] for p in found.problems] == ["no", "no", "no"]
    assert [p.name for p in found.problems] == [str(tmp_path / n) for n in ("nope.png", "empty", "z*.png")]


def test_a_file_and_a_link_to_it_are_two_inputs_with_two_outputs(tmp_path: Path) -> None:
    a = save(tmp_path / "photos" / "a.png")
    link = tmp_path / "photos" / "link.png"
    link.symlink_to(a)
    found = collect_inputs([str(tmp_path / "photos")], False)
    assert found.problems == []
    assert [s.path for s in found.sources] == [a, link]
    jobs = plan_jobs(found.sources, "_x2.png")
    assert [(j.dest.name, j.refusal) for j in jobs] == [("a_x2.png", None), ("link_x2.png", None)]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_named_or_found_are_reported_and_never_taken(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    good = save(folder / "good.png")
    os.mkfifo(folder / "pipe.png")
    os.mkfifo(tmp_path / "named.jpg")
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")

    found = collect_inputs([str(folder), str(tmp_path / "named.jpg")], False)

    assert [s.path for s in found.sources] == [good]
    reasons = {Path(p.name).name: p.reason for p in found.problems}
    assert set(reasons) == {"pipe.png", "named.jpg", "dangling.png"}
    assert "not a regular file (a FIFO)" in reasons["pipe.png"] and "FIFO" in reasons["named.jpg"]
    assert reasons["dangling.png"] == "a link to nothing"


def test_size_limit_checks_the_largest_intermediate_too() -> None:
    assert size_problem(1000, 1000, 2.0) is None
    assert "output would be 1600 MP" in size_problem(10_000, 10_000, 4.0)
    assert size_problem(10_000, 10_000, 2.0, largest=(20_000, 20_000)) is None  # 400 MP: at the limit, allowed
    problem = size_problem(7000, 7000, 2.01, largest=(28_000, 28_000))  # the output is 198 MP, its path 784 MP
    assert "784 MP intermediate" in problem and "400 MP" in problem


# --- earlier outputs, by their marker; unsupported formats; globs that climb -----------------------------------


def test_a_scan_passes_over_unetsr_outputs_by_marker_whatever_their_name(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    photo, named_like_one = save(folder / "a.png"), save(folder / "holiday_x2.png")  # the user's own photos
    outputs = [save_output(folder / "a_x2.png"), save_output(folder / "a_x4.jpg"), save_output(folder / "big.webp"),
               save_output(folder / "deep_x2.png", bit_depth=16)]

    found = collect_inputs([str(folder)], False)
    by_glob = collect_inputs([str(folder / "*")], False)
    named = collect_inputs([str(outputs[0])], False)  # a file named on purpose is taken

    assert [s.path for s in found.sources] == [photo, named_like_one] and found.problems == []
    assert sorted(found.own_outputs) == sorted(outputs)
    assert found.passed_over() == ["passed over 4 earlier unetsr outputs (name a file to upscale it again)"]
    assert [s.path for s in by_glob.sources] == [photo, named_like_one] and len(by_glob.own_outputs) == 4
    assert [s.path for s in named.sources] == [outputs[0]] and named.own_outputs == []


def test_a_folder_of_earlier_outputs_only_says_so(tmp_path: Path) -> None:
    save_output(tmp_path / "out" / "a_x2.png")
    found = collect_inputs([str(tmp_path / "out")], False)
    (problem,) = found.problems
    assert problem.reason == "no image files to upscale in this folder: only 1 earlier unetsr output"
    assert found.own_outputs == [] and found.passed_over() == []  # told once, in the problem


def test_unsupported_formats_are_counted_with_the_reason(tmp_path: Path) -> None:
    only_heic, mixed = tmp_path / "phone", tmp_path / "mixed"
    for folder in (only_heic, mixed):
        folder.mkdir()
        (folder / "IMG_1.HEIC").write_bytes(b"not decoded")
        (folder / "IMG_2.heic").write_bytes(b"not decoded")
    photo = save(mixed / "c.png")

    only = collect_inputs([str(only_heic)], False)
    (problem,) = only.problems
    found = collect_inputs([str(mixed)], False)
    pattern = collect_inputs([str(only_heic / "*")], False)

    assert problem.reason == ("no image files to upscale in this folder: only 2 .heic files "
                              "(HEIC is not supported; convert to JPEG or PNG)")
    assert not only.unsupported  # told once, in the problem
    assert [s.path for s in found.sources] == [photo] and found.problems == []
    assert found.passed_over() == ["passed over 2 .heic files: HEIC is not supported; convert to JPEG or PNG"]
    assert "only 2 .heic files (HEIC is not supported" in pattern.problems[0].reason


@pytest.mark.skipif("AVIF" not in READ_FORMATS, reason="this Pillow has no AVIF")
def test_a_folder_scan_takes_avif_when_pillow_reads_it(tmp_path: Path) -> None:
    avif = save(tmp_path / "photos" / "a.avif")
    found = collect_inputs([str(tmp_path / "photos")], False)
    assert [s.path for s in found.sources] == [avif] and not found.unsupported


def test_a_glob_that_climbs_with_dotdot_still_writes_under_the_output_folder(tmp_path: Path) -> None:
    outside = save(tmp_path / "a.png")
    save(tmp_path / "in" / "sub" / "b.png")
    out = tmp_path / "out"

    found = collect_inputs([str(tmp_path / "in" / "*" / ".." / ".." / "a.png"),
                            str(tmp_path / "in" / "*" / ".." / "sub" / "b.png")], False)
    jobs = plan_jobs(found.sources, "_x2.png", out)

    assert [j.source.path.resolve() for j in jobs] == [outside, tmp_path / "in" / "sub" / "b.png"]
    assert [j.dest for j in jobs] == [out / "a_x2.png", out / "sub" / "b_x2.png"]  # `..` resolved, never kept
    assert all(j.dest.resolve().is_relative_to(out) for j in jobs)
    assert mirrored(Path("in/x/../../../etc/p.png"), Path("in")) == Path("p.png")
    climbing = Source(tmp_path / "p.png", Path("../../p.png"))  # a Source made by other code: still inside
    assert output_path(climbing, "_x2.png", out) == out / "p_x2.png"
