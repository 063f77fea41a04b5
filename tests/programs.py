"""Debian programs some tests drive (nginx, Prometheus, promtool): found, or the test skipped or failed."""

from __future__ import annotations

import os
import shutil

import pytest


def require_program(name: str, package: str, flag: str) -> str:
    """The path of ``name``. Without it the test is skipped, saying which Debian package brings it, unless
    the environment sets ``flag`` to 1 (CI does, having installed it), which makes that a failure."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        reason = f"{name} is not installed (apt-get install {package})"
        if os.environ.get(flag) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
