"""Device and precision choice."""

import pytest
import torch

from models.device import cpu_has_native_bfloat16, pick_device, pick_dtype


def test_auto_device_is_cuda_only_when_present() -> None:
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        pick_device("tpu")


def test_explicit_precision_is_kept() -> None:
    cpu = torch.device("cpu")
    assert pick_dtype("float32", cpu) == torch.float32 and pick_dtype("bfloat16", cpu) == torch.bfloat16


def test_auto_precision_is_bfloat16_only_on_a_cpu_that_has_it() -> None:
    expected = torch.bfloat16 if cpu_has_native_bfloat16() else torch.float32
    assert pick_dtype("auto", torch.device("cpu")) == expected
    assert pick_dtype("auto", torch.device("cuda")) == torch.float32  # a GPU opts in explicitly


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        pick_dtype("float16", torch.device("cpu"))
