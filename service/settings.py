"""Service configuration, read once from ``NEXTWORD_*`` environment variables.

Every variable, its default and its meaning is in ``VARIABLES``; docs/configuration.md's
table is this list. A bad value stops the server at start with a
message that names the variable.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from models.device import DEVICE_CHOICES, PRECISION_CHOICES
from service.engine.engine import EngineConfig
from service.engine.types import BatchingPolicy

BATCHING_MODES = ("on", "adaptive", "off")
GENERATE_BATCHING_MODES = tuple(policy.value for policy in BatchingPolicy)
CACHE_SHARE_OF_MEMORY = 0.01  # NEXTWORD_STATE_CACHE_MB=auto: this share of the machine's memory, split by workers
CACHE_AUTO_MAX_MB = 1024
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" in microseconds, or "max PERIOD"
CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")  # cgroup v2: bytes, or "max"
# cgroup v1 (Docker 20.10 on such hosts, older Kubernetes nodes): cpu.cfs_quota_us (-1: none) and
# cpu.cfs_period_us in the first, memory.limit_in_bytes in the second.
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")
CGROUP_V1_MEMORY_LIMIT = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")

# name -> (default, description)
VARIABLES: dict[str, tuple[str, str]] = {
    "NEXTWORD_MODEL": ("nextword:latest", "model tag in the BentoML store; unset in a Bento, the one it holds"),
    "NEXTWORD_DEVICE": ("auto", "auto (CUDA when present), cpu or cuda"),
    "NEXTWORD_PRECISION": ("auto", "auto (bfloat16 on a CPU with native bfloat16, else float32), float32 or bfloat16"),
    "NEXTWORD_WORKERS": ("1", "server worker processes"),
    "NEXTWORD_TORCH_THREADS": (
        "0",
        "torch threads per worker; 0 = cores (or the container's CPU limit) / workers, one fewer for /predict_next",
    ),
    "NEXTWORD_BATCHING": ("on", "/predict_next: greedy micro-batching; adaptive: BentoML's; off: one request a batch"),
    "NEXTWORD_GENERATE_BATCHING": (
        "continuous",
        "/generate: continuous (rows join and leave at every step); request (a batch runs to its end); off",
    ),
    "NEXTWORD_STATE_CACHE_MB": (
        "auto",
        "prefix state cache per worker in MiB; auto = 1% of memory (or the container's limit), <= 1024; 0 = off",
    ),
    "NEXTWORD_MAX_QUEUED_TOKENS": ("0", "most /generate tokens queued or running; 0 = what the rate finishes in time"),
    "NEXTWORD_MAX_BATCH_SIZE": ("128", "most inputs in one /predict_next batch, most rows decoding at once"),
    "NEXTWORD_MAX_LATENCY_MS": ("10000", "adaptive batching only: deadline; requests that would miss it get 503"),
    "NEXTWORD_MAX_INPUTS": ("64", "most inputs in one request"),
    "NEXTWORD_MAX_TEXT_CHARS": ("2000", "most characters in a text or prompt"),
    "NEXTWORD_MAX_TEXT_TOKENS": ("256", "most tokens in a text or prompt"),
    "NEXTWORD_MAX_NEW_TOKENS": ("256", "cap on max_new_tokens for /generate"),
    "NEXTWORD_MAX_BODY_BYTES": ("1048576", "largest request body; larger ones get 413"),
    "NEXTWORD_TIMEOUT_S": ("60", "request timeout in seconds (504 past it)"),
    "NEXTWORD_MAX_CONCURRENCY": ("1024", "requests in flight per server; more get 429"),
    "NEXTWORD_ACCESS_LOG": ("off", "log every request: on or off"),
    "NEXTWORD_DIRECT_ROUTE": (
        "on",
        "/predict_next's and /generate's JSON requests answered by the service's own ASGI layer, not BentoML's "
        "generic route; only with tracing off and batching not adaptive",
    ),
    "NEXTWORD_API_KEY": (
        "",
        "an API key: when set, every API route wants Authorization: Bearer <key>; "
        "/livez, /readyz, /metrics, /docs.json and the typing page stay open",
    ),
    "NEXTWORD_API_KEY_FILE": (
        "",
        "a file holding the API key (a mounted Kubernetes Secret); not with NEXTWORD_API_KEY",
    ),
    "NEXTWORD_BLOCKLIST": (
        "",
        "a file of words never offered in suggestions and completions nor generated, one a line, any case; "
        "# starts a comment",
    ),
    "NEXTWORD_TRACING_SAMPLE_RATE": (
        "0",
        "share of requests traced with OpenTelemetry, 0..1; at 0 the API routes skip the tracing middleware",
    ),
}
# The API's routes: those the edge answers errors on in its own shape, and those that skip
# BentoML's OpenTelemetry middleware when tracing is off (its spans cost every request).
API_ROUTES = ("/predict_next", "/generate", "/generate_stream")
OPENAI_ROUTES = ("/v1/completions", "/v1/models")  # service.http.openai; every path under /v1/ is OpenAI's
TOKENIZER_ROUTES = ("/tokenize", "/detokenize", "/tokenizer_info")  # vLLM's, for lm-evaluation-harness


@dataclass(frozen=True)
class Settings:
    model_tag: str
    device: str
    precision: str
    workers: int
    torch_threads: int
    batching: str
    generate_batching: BatchingPolicy
    state_cache_mb: int
    max_queued_tokens: int
    max_batch_size: int
    max_latency_ms: int
    max_inputs: int
    max_text_chars: int
    max_text_tokens: int
    max_new_tokens: int
    max_body_bytes: int
    timeout_s: int
    max_concurrency: int
    access_log: bool
    direct_route_switch: bool
    tracing_sample_rate: float
    api_key: str | None = field(default=None, repr=False)  # never in a log line
    blocklist: tuple[str, ...] = field(default=(), repr=False)  # NEXTWORD_BLOCKLIST's words

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def text(name: str) -> str:
            return env.get(name, VARIABLES[name][0]).strip()

        def integer(name: str, minimum: int) -> int:
            raw = text(name)
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"{name} must be an integer, got {raw!r}") from None
            if value < minimum:
                raise ValueError(f"{name} must be at least {minimum}, got {value}")
            return value

        def switch(name: str) -> bool:
            raw = text(name).lower()
            if raw not in ("on", "off", "1", "0", "true", "false"):
                raise ValueError(f"{name} must be on or off, got {raw!r}")
            return raw in ("on", "1", "true")

        def choice(name: str, choices: tuple[str, ...]) -> str:
            raw = text(name).lower()
            if raw not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
            return raw

        def share(name: str) -> float:
            raw = text(name)
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number from 0 to 1, got {raw!r}") from None
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number from 0 to 1, got {raw!r}")
            return value

        def cache_size() -> int:
            if text("NEXTWORD_STATE_CACHE_MB").lower() == "auto":
                workers = integer("NEXTWORD_WORKERS", 1)
                memory_mb = available_memory_mb()
                return min(CACHE_AUTO_MAX_MB, max(1, int(memory_mb * CACHE_SHARE_OF_MEMORY) // workers))
            return integer("NEXTWORD_STATE_CACHE_MB", 0)

        def api_key() -> str | None:
            key, path = env.get("NEXTWORD_API_KEY", "").strip(), text("NEXTWORD_API_KEY_FILE")
            source = "NEXTWORD_API_KEY"
            if key and path:
                raise ValueError(f"NEXTWORD_API_KEY_FILE must be unset when NEXTWORD_API_KEY is set, got {path!r}")
            if path:
                source = f"the key in NEXTWORD_API_KEY_FILE ({path})"
                try:
                    key = Path(path).read_text().strip()
                except (OSError, UnicodeDecodeError) as error:
                    reason = type(error).__name__
                    raise ValueError(
                        f"NEXTWORD_API_KEY_FILE must name a readable file, got {path!r} ({reason})"
                    ) from None
                if not key:
                    raise ValueError(f"NEXTWORD_API_KEY_FILE must name a file holding a key, got {path!r} (empty)")
            if key and not all(33 <= ord(char) < 127 for char in key):  # what a header carries unchanged
                raise ValueError(f"{source} must be printable ASCII without spaces (the key is not shown)")
            return key or None

        def blocklist() -> tuple[str, ...]:
            path = text("NEXTWORD_BLOCKLIST")
            if not path:
                return ()
            try:
                lines = Path(path).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as error:
                raise ValueError(
                    f"NEXTWORD_BLOCKLIST must name a readable UTF-8 file, got {path!r} ({type(error).__name__})"
                ) from None
            return tuple(word for line in lines if (word := line.split("#", 1)[0].strip()))

        return cls(
            model_tag=text("NEXTWORD_MODEL"),
            device=choice("NEXTWORD_DEVICE", DEVICE_CHOICES),
            precision=choice("NEXTWORD_PRECISION", PRECISION_CHOICES),
            workers=integer("NEXTWORD_WORKERS", 1),
            torch_threads=integer("NEXTWORD_TORCH_THREADS", 0),
            batching=choice("NEXTWORD_BATCHING", BATCHING_MODES),
            generate_batching=BatchingPolicy(choice("NEXTWORD_GENERATE_BATCHING", GENERATE_BATCHING_MODES)),
            state_cache_mb=cache_size(),
            max_queued_tokens=integer("NEXTWORD_MAX_QUEUED_TOKENS", 0),
            max_batch_size=integer("NEXTWORD_MAX_BATCH_SIZE", 2),
            max_latency_ms=integer("NEXTWORD_MAX_LATENCY_MS", 1),
            max_inputs=integer("NEXTWORD_MAX_INPUTS", 1),
            max_text_chars=integer("NEXTWORD_MAX_TEXT_CHARS", 1),
            max_text_tokens=integer("NEXTWORD_MAX_TEXT_TOKENS", 1),
            max_new_tokens=integer("NEXTWORD_MAX_NEW_TOKENS", 1),
            max_body_bytes=integer("NEXTWORD_MAX_BODY_BYTES", 1024),
            timeout_s=integer("NEXTWORD_TIMEOUT_S", 1),
            max_concurrency=integer("NEXTWORD_MAX_CONCURRENCY", 1),
            access_log=switch("NEXTWORD_ACCESS_LOG"),
            direct_route_switch=switch("NEXTWORD_DIRECT_ROUTE"),
            tracing_sample_rate=share("NEXTWORD_TRACING_SAMPLE_RATE"),
            api_key=api_key(),
            blocklist=blocklist(),
        )

    def engine_config(self) -> EngineConfig:
        """How each worker's engine runs its model."""
        return EngineConfig(
            device=self.device,
            precision=self.precision,
            threads=self.threads_per_worker(),
            predict_threads=self.threads_per_worker(spare_loop_core=True),
            state_cache_mb=self.state_cache_mb,
            blocklist=self.blocklist,
            merge_requests=self.batching == "on",
            max_batch_size=self.max_batch_size,
            generate_batching=self.generate_batching,
            timeout_s=self.timeout_s,
            max_queued_tokens=self.max_queued_tokens,
        )

    def service_config(self) -> dict:
        """Keyword arguments for ``@bentoml.service``."""
        return {
            "workers": self.workers,
            "traffic": {"timeout": self.timeout_s, "max_concurrency": self.max_concurrency},
            "logging": {"access": {"enabled": self.access_log}},
            "tracing": self.tracing_config(),
        }

    def tracing_config(self) -> dict:
        """Tracing on: every route traced at the sample rate. Off: the API routes skip the middleware."""
        if self.tracing_sample_rate > 0:
            return {"sample_rate": self.tracing_sample_rate}
        return {"excluded_urls": [*API_ROUTES, *OPENAI_ROUTES, *TOKENIZER_ROUTES]}

    @property
    def direct_route(self) -> bool:
        """Whether /predict_next takes the direct route (``service.http.direct_route``).

        Not with tracing on: BentoML's route sets the request id the tracing
        middleware found on each response. Not with adaptive batching: that is
        BentoML's route's own dispatcher.
        """
        return self.direct_route_switch and self.tracing_sample_rate == 0 and self.batching != "adaptive"

    def api_options(self) -> dict:
        """Keyword arguments for ``@bentoml.api`` of /predict_next, which BentoML may batch."""
        return {
            "batchable": self.batching == "adaptive",
            "max_batch_size": self.max_batch_size,
            "max_latency_ms": self.max_latency_ms,
        }

    def threads_per_worker(self, spare_loop_core: bool = False) -> int:
        """Torch threads for one worker's batches; the workers split the cores.

        With ``spare_loop_core`` one core is left to the worker's event loop:
        short requests keep the loop as busy as the model, and a torch thread
        that shares a core with it stalls the others at every OpenMP barrier.
        /generate's large decode steps take every core
        (``service.engine.threads``; docs/benchmarks.md has both measured). An explicit
        NEXTWORD_TORCH_THREADS is used as is.
        """
        if self.torch_threads:
            return self.torch_threads
        share = max(1, available_cores() // self.workers)
        return max(1, share - 1) if spare_loop_core else share


def available_cores(cpu_max: Path = CGROUP_CPU_MAX, cpu_v1: Path = CGROUP_V1_CPU) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota (v2, else v1).

    In a container ``os.cpu_count()`` is the node's cores, not the pod's CPU
    limit; sizing torch threads by it would oversubscribe the limit and get
    the pod throttled. A quota of 2.5 cores counts as 2.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(cpu_max, cpu_v1)
    return cores if quota is None else min(cores, max(1, int(quota)))


def cpu_quota(cpu_max: Path, cpu_v1: Path) -> float | None:
    """The cgroup's CPU quota in cores, or None where it has none (or there is no cgroup to read)."""
    try:
        quota, period = cpu_max.read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):  # no cgroup v2 CPU controller here
        pass
    try:
        quota_us = int((cpu_v1 / "cpu.cfs_quota_us").read_text())
        return None if quota_us < 0 else quota_us / int((cpu_v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):  # nor a v1 one
        return None


def available_memory_mb(memory_max: Path = CGROUP_MEMORY_MAX, memory_v1: Path = CGROUP_V1_MEMORY_LIMIT) -> int:
    """The machine's memory, capped by a cgroup memory limit (a container's; v2, else v1), in MiB.

    cgroup v1 writes a number near 2**63 for "no limit": the machine's memory is then the smaller.
    """
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in (memory_max, memory_v1):
        try:
            limit = path.read_text().strip()
        except OSError:  # no such cgroup controller here
            continue
        if limit.isdigit():
            memory = min(memory, int(limit))
        break
    return memory // 2**20


def settings_or_exit() -> Settings:
    """The settings, or one line naming the bad variable and exit status 2: a traceback would bury it."""
    try:
        return Settings.from_env()
    except ValueError as error:
        print(f"nextword: bad configuration: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


SETTINGS = settings_or_exit()
