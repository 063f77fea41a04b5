"""The ``Predictor``: a loaded model with every job the engine runs on it.

Each job lives in its own module, on the shared ``LoadedModel``
(``service.engine.loaded``): /predict_next's answers
(``service.engine.next_words``), generation a step at a time
(``service.engine.generation``) and scoring (``service.engine.scoring``).
``load_predictor`` loads one from the store and warms it up.
"""

from __future__ import annotations

import bentoml
import torch

from models.bundle import load_bundle
from models.device import pick_dtype
from service.engine.generation import DecodeBatch, GenerationJob
from service.engine.next_words import NextWordJob
from service.engine.scoring import ScoringJob
from service.engine.state_cache import StateCache
from service.engine.threads import TorchThreads
from service.engine.types import GenerationRequest, NextWordQuery

__all__ = ["PROBE", "DecodeBatch", "Predictor", "load_predictor"]
# The generation the warm-up and the scheduler's calibration run: a word every vocabulary has.
PROBE = GenerationRequest("the", max_new_tokens=2, seed=0)


class Predictor(NextWordJob, GenerationJob, ScoringJob):
    """Runs a loaded model for the engine: every job, one per worker, used from one thread."""

    def warm_up(self) -> None:
        """Serve a few dummy batches of each kind so the first client does not pay for compiling them."""
        for _ in range(3):
            self.predict_next([NextWordQuery("the", 5), NextWordQuery("", 5), NextWordQuery("a", 5, complete=True)])
            self.generate([PROBE])
            if self.cache is not None:
                self.cache.clear()
        self.take_tally()  # the warm-up's tokens are no client's


def load_predictor(
    stored: bentoml.Model,
    device: torch.device,
    precision: str,
    state_cache_mb: int,
    threads: TorchThreads,
    blocklist: tuple[str, ...] = (),
) -> Predictor:
    """Load the model, with a state cache of ``state_cache_mb`` MiB (0: none) and the words it
    never offers (``service.engine.blocklist``), and serve warm-up batches.

    ``precision``: as ``models.device.pick_dtype`` reads it. Call it on the
    thread that will run the model (``service.service`` says why).
    """
    torch.set_num_threads(threads.large_batch)
    bundle = load_bundle(stored, device, pick_dtype(precision, device))
    cache = None
    if state_cache_mb:
        config = bundle.config
        shape = (config.state_slots, config.num_layers, config.hidden_size)
        cache = StateCache(state_cache_mb * 2**20, shape, bundle.dtype, device)
    predictor = Predictor(bundle, device, cache, blocklist)
    predictor.warm_up()
    return predictor
