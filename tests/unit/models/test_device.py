"""Device and precision choice."""

from pathlib import Path

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


def cpu_flags() -> set[str]:
    """The CPU's feature flags as the kernel lists them: an oracle independent of torch's probes."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    return {flag for line in cpuinfo.read_text().splitlines() if line.startswith("flags") for flag in line.split()}


def test_auto_precision_is_bfloat16_only_on_a_cpu_that_has_it() -> None:
    native = bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})
    assert cpu_has_native_bfloat16() == native
    expected = torch.bfloat16 if native else torch.float32
    assert pick_dtype("auto", torch.device("cpu")) == expected
    assert pick_dtype("auto", torch.device("cuda")) == torch.float32  # a GPU opts in explicitly


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        pick_dtype("float16", torch.device("cpu"))
