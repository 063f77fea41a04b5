"""What a worker settles before it serves: which model, whether the store has it, what to log, and
how to stop the whole server when it cannot serve.

``service.service`` calls these at import (the model, checked before any
worker starts) and in the worker's ``__init__`` (the log line; a model that
fails to load stops the server rather than a worker restarting forever).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import NoReturn

import bentoml

from models.bundle import check_entry
from models.device import precision_name
from service import metrics
from service.engine.engine import Engine
from service.serve import mark_failed_start, store_home
from service.settings import SETTINGS

logger = logging.getLogger("nextword")


def model_to_serve() -> str:
    """NEXTWORD_MODEL when set; else the model the Bento was built with (``make build`` passes
    ``--arg model=TAG``, which the Bento keeps and its server reads back); else nextword:latest."""
    if "NEXTWORD_MODEL" in os.environ:
        return SETTINGS.model_tag
    return str(getattr(bentoml.use_arguments(), "model", SETTINGS.model_tag))


def stored_model_or_exit(tag: str) -> bentoml.Model:
    """The model to serve, checked before any worker starts; else one line and exit status 3."""
    try:
        stored = bentoml.models.get(tag)
        check_entry(stored)
    except bentoml.exceptions.NotFound:
        store = os.path.realpath(store_home(dict(os.environ)) / "models")
        message = f"model {tag} is not in the BentoML store at {store}; train one with make train"
    except ValueError as error:
        message = f"model {tag} cannot be loaded: {error}"
    else:
        return stored
    print(f"nextword: {message}", file=sys.stderr, flush=True)
    raise SystemExit(3)


def start_engine_or_stop(stored: bentoml.Model, **options: object) -> Engine:
    """``Engine.start`` on the settings; a store entry that cannot load (corrupt, incompatible)
    stops the whole server, since no worker could ever serve it."""
    try:
        return Engine.start(stored, SETTINGS.engine_config(), **options)
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [""])[0]
        stop_server(f"cannot load model {stored.tag} from {stored.path}: {type(error).__name__}: {first_line}")


def announce(engine: Engine) -> None:
    """The served model on /metrics (``nextword_model_info``, every series at 0) and in one log line."""
    bundle = engine.bundle
    precision = precision_name(bundle.dtype)
    metrics.MODEL_INFO.labels(str(bundle.tag), bundle.config.architecture, engine.device.type, precision).set(1)
    metrics.show_every_series()
    logger.info(
        "loaded %s (%s) on %s in %s; /predict_next batching %s, /generate batching %s at %.0f tokens/s, "
        "state cache %d MiB",
        bundle.tag,
        bundle.config.architecture,
        engine.device,
        precision,
        SETTINGS.batching,
        SETTINGS.generate_batching,
        engine.stats().decode_rate,
        SETTINGS.state_cache_mb,
    )


def stop_server(message: str) -> NoReturn:
    """Log one line and stop the whole server with a failure status.

    A worker whose ``__init__`` raises is restarted by BentoML's process
    manager every few seconds, forever, never ready. So the worker asks the
    server process (its parent) to shut down, and exits with status 3. The
    server process itself then exits 0 (its process manager quit cleanly), so
    the worker also leaves a mark that ``service.serve`` turns into status 3.
    """
    logger.critical("nextword: %s; stopping the server", message)
    mark_failed_start(message)  # service.serve (make serve) then exits with status 3
    os.kill(os.getppid(), signal.SIGTERM)
    os._exit(3)
