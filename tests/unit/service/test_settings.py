"""Service settings from the environment, and the README that documents them."""

import os
import subprocess
import sys

import psutil
import pytest

from bench.launcher import REPO
from service.settings import Settings, available_cores, available_memory_mb


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.model_tag == "nextword:latest" and settings.device == "auto" and settings.batching == "on"
    assert settings.api_options()["max_batch_size"] == 128


@pytest.mark.parametrize(
    ("cores", "env", "spare_loop_core", "threads"),
    [
        (2, {}, False, 2),
        (2, {}, True, 1),  # one core for the event loop, one for torch
        (16, {}, True, 15),
        (16, {"NEXTWORD_WORKERS": "4"}, False, 4),
        (16, {"NEXTWORD_WORKERS": "4"}, True, 3),
        (2, {"NEXTWORD_WORKERS": "4"}, True, 1),  # never fewer than one
        (16, {"NEXTWORD_TORCH_THREADS": "6"}, True, 6),  # an explicit count is used as is
    ],
)
def test_torch_threads_split_the_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, env: dict[str, str], spare_loop_core: bool, threads: int
) -> None:
    monkeypatch.setattr("service.settings.available_cores", lambda: cores)
    assert Settings.from_env(env).threads_per_worker(spare_loop_core) == threads


@pytest.mark.parametrize(
    ("cpu_max", "limit"), [("max 100000", None), ("200000 100000", 2), ("250000 100000", 2), ("50000 100000", 1)]
)
def test_cores_are_capped_by_the_container_cpu_limit(tmp_path, cpu_max: str, limit: int | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max + "\n")
    affinity = len(os.sched_getaffinity(0))
    assert available_cores(path, tmp_path / "no-v1") == (affinity if limit is None else min(affinity, limit))
    assert available_cores(tmp_path / "missing", tmp_path / "no-v1") == affinity


@pytest.mark.parametrize(("quota_us", "limit"), [(-1, None), (200000, 2), (150000, 1), (50000, 1)])
def test_cores_are_capped_by_a_cgroup_v1_cpu_quota(tmp_path, quota_us: int, limit: int | None) -> None:
    """Docker 20.10 on a cgroup v1 host (as here) writes --cpus as cpu.cfs_quota_us over cpu.cfs_period_us."""
    (tmp_path / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    (tmp_path / "cpu.cfs_period_us").write_text("100000\n")
    affinity = len(os.sched_getaffinity(0))
    assert available_cores(tmp_path / "no-v2", tmp_path) == (affinity if limit is None else min(affinity, limit))


def test_memory_is_capped_by_the_container_memory_limit(tmp_path) -> None:
    machine = available_memory_mb(tmp_path / "missing", tmp_path / "no-v1")
    assert machine == psutil.virtual_memory().total // 2**20  # the machine's memory, as psutil reads /proc
    path = tmp_path / "memory.max"
    path.write_text("max\n")
    assert available_memory_mb(path, tmp_path / "no-v1") == machine
    path.write_text(f"{512 * 2**20}\n")
    assert available_memory_mb(path, tmp_path / "no-v1") == min(machine, 512)
    v1 = tmp_path / "memory.limit_in_bytes"
    v1.write_text("9223372036854771712\n")  # cgroup v1's "no limit"
    assert available_memory_mb(tmp_path / "missing", v1) == machine
    v1.write_text(f"{1024 * 2**20}\n")
    assert available_memory_mb(tmp_path / "missing", v1) == min(machine, 1024)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NEXTWORD_WORKERS", "zero"),
        ("NEXTWORD_WORKERS", "0"),
        ("NEXTWORD_DEVICE", "tpu"),
        ("NEXTWORD_PRECISION", "float16"),
        ("NEXTWORD_BATCHING", "sometimes"),
        ("NEXTWORD_MAX_BATCH_SIZE", "1"),
        ("NEXTWORD_GENERATE_BATCHING", "eventually"),
        ("NEXTWORD_STATE_CACHE_MB", "lots"),
        ("NEXTWORD_STATE_CACHE_MB", "-1"),
        ("NEXTWORD_MAX_QUEUED_TOKENS", "-5"),
        ("NEXTWORD_TRACING_SAMPLE_RATE", "1.5"),
        ("NEXTWORD_TRACING_SAMPLE_RATE", "some"),
        ("NEXTWORD_DIRECT_ROUTE", "maybe"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_tracing_off_skips_the_api_routes_and_on_traces_every_route() -> None:
    off = Settings.from_env({}).service_config()["tracing"]
    assert off == {
        "excluded_urls": [
            "/predict_next",
            "/generate",
            "/generate_stream",
            "/v1/completions",
            "/v1/models",
            "/tokenize",
            "/detokenize",
            "/tokenizer_info",
        ]
    }
    on = Settings.from_env({"NEXTWORD_TRACING_SAMPLE_RATE": "0.25"}).service_config()["tracing"]
    assert on == {"sample_rate": 0.25}


def test_state_cache_auto_is_a_bounded_share_of_memory() -> None:
    auto = Settings.from_env({}).state_cache_mb
    assert 1 <= auto <= 1024
    assert Settings.from_env({"NEXTWORD_WORKERS": "2"}).state_cache_mb <= max(1, auto // 2 + 1)
    assert Settings.from_env({"NEXTWORD_STATE_CACHE_MB": "0"}).state_cache_mb == 0


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_service_sets_a_passive_openmp_wait_policy_unless_told(given: str | None, expected: str) -> None:
    """It must be in the environment before torch loads libgomp, so importing the package sets it."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | (
        {"OMP_WAIT_POLICY": given} if given else {}
    )
    code = "import service, os, sys; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [expected, "False"]


def test_the_direct_route_only_without_tracing_or_adaptive_batching() -> None:
    assert Settings.from_env({}).direct_route
    assert not Settings.from_env({"NEXTWORD_DIRECT_ROUTE": "off"}).direct_route
    assert not Settings.from_env({"NEXTWORD_TRACING_SAMPLE_RATE": "0.1"}).direct_route
    assert not Settings.from_env({"NEXTWORD_BATCHING": "adaptive"}).direct_route


def test_the_api_key_comes_from_the_variable_or_a_file_and_is_never_shown(tmp_path) -> None:
    assert Settings.from_env({}).api_key is None
    assert Settings.from_env({"NEXTWORD_API_KEY": " k3y \n"}).api_key == "k3y"
    secret = tmp_path / "key"
    secret.write_text("from-a-secret\n")
    settings = Settings.from_env({"NEXTWORD_API_KEY_FILE": str(secret)})
    assert settings.api_key == "from-a-secret" and "from-a-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NEXTWORD_API_KEY": "a", "NEXTWORD_API_KEY_FILE": "/k"}, "NEXTWORD_API_KEY_FILE must be unset"),
        ({"NEXTWORD_API_KEY_FILE": "/nonexistent/key"}, "NEXTWORD_API_KEY_FILE must name a readable file"),
        ({"NEXTWORD_API_KEY_FILE": "EMPTY"}, "NEXTWORD_API_KEY_FILE must name a file holding a key"),
        ({"NEXTWORD_API_KEY": "söme key"}, "NEXTWORD_API_KEY must be printable ASCII"),
    ],
)
def test_a_bad_api_key_setting_is_named_without_showing_the_key(tmp_path, env: dict, message: str) -> None:
    if env.get("NEXTWORD_API_KEY_FILE") == "EMPTY":
        (tmp_path / "empty").write_text(" \n")
        env = {"NEXTWORD_API_KEY_FILE": str(tmp_path / "empty")}
    with pytest.raises(ValueError, match=message) as refused:
        Settings.from_env(env)
    assert "söme" not in str(refused.value)
