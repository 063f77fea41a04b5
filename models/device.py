"""Device and precision choice shared by training, evaluation and serving."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")
PRECISION_CHOICES = ("auto", "float32", "bfloat16")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU; asking for CUDA without one is an error."""
    if name not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype to serve in: ``auto`` is bfloat16 on a CPU that computes in it natively.

    On such a CPU (AMX or AVX512-BF16) bfloat16 halves the model's time at an
    unchanged test perplexity (docs/benchmarks.md). Elsewhere ``auto`` keeps
    float32: an older CPU emulates bfloat16 slowly, and the GPU path was not
    measured in bfloat16, so there it is opt-in.
    """
    if name not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {name!r}")
    if name == "auto":
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bfloat16() else torch.float32
    return getattr(torch, name)


def precision_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``bfloat16``: the spelling of NEXTWORD_PRECISION, logs and metrics."""
    return str(dtype).removeprefix("torch.")


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (torch's own probes, private API)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
