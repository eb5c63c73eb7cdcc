"""unetsr.core.precision: the one rule for which number format computes, for training and inference alike."""

from __future__ import annotations

import warnings

import pytest
import torch

from unetsr.core import precision
from unetsr.core.precision import PRECISIONS, resolve_precision
from unetsr.inference import upscaler as upscaler_module
from unetsr.inference.upscaler import Upscaler


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_the_cpu_is_the_same_answer_for_training_and_the_upscaler(tiny_model, native: bool,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: native)
    expected = "bf16" if native and torch.backends.mkldnn.is_available() else "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert Upscaler(tiny_model, device="cpu", precision="auto").precision == expected


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_is_half_precision(bf16: bool, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolve_precision("auto", torch.device("cuda")) == expected
    assert resolve_precision("auto", torch.device("cuda"), half=True) == "fp16"


def test_named_formats_are_checked_and_half_is_ignored_on_the_cpu() -> None:
    assert PRECISIONS == ("auto", "bf16", "fp16", "fp32")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="fp16 is for GPUs"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", torch.device("cpu"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_precision("fp32", torch.device("cpu"), half=True) == "fp32"
    assert "ignored on the CPU" in str(caught[0].message)


def test_there_is_no_second_rule() -> None:
    assert not hasattr(upscaler_module, "inference_precision")
