"""BentoML's per-request metrics, with the ``endpoint`` label bounded and each label set looked up once.

BentoML 1.4.39's ``RunnerTrafficMetricsMiddleware`` labels every request
with its raw path. A client that asks for ever new paths (a scanner, a typo
in a loop, ``/v1/models/<anything>``) adds a new series to three metrics each
time: the worker's memory, its Prometheus files and every scrape grow
without bound. Here a path outside the service's routes is counted as
``endpoint="other"``, the OpenAI model lookups as ``/v1/models/{model}``
and the typing page's files as ``/demo/``.

It also keeps each label set's child metric instead of resolving it from
keyword arguments four times a request: the lookups were most of the cost of
these metrics, which are written on the event loop's thread for every
request. The metrics' names, labels and meaning are otherwise BentoML's
(``bentoml_service_request_total``, ``_duration_seconds``,
``_in_progress``, ``_last_request_timestamp_seconds``); WebSocket traffic is
left to BentoML's own code.

``install()`` swaps it in for BentoML's class, which BentoML looks up when it
builds the app, so it must run at import of the service module.
"""

from __future__ import annotations

from timeit import default_timer
from typing import Any

from bentoml._internal.context import server_context
from bentoml._internal.server.http import instruments

from service.settings import API_ROUTES, OPENAI_ROUTES, TOKENIZER_ROUTES

# Routes BentoML serves itself, besides the service's API methods (``server_context.service_routes``).
BENTOML_ROUTES = ("/", "/docs.json", "/livez", "/readyz", "/healthz", "/metrics", "/schema.json")
OTHER = "other"
GROUPED = (("/v1/models/", "/v1/models/{model}"), ("/demo/", "/demo/"), ("/static_content/", "/static_content/"))


def endpoint_label(path: str, known: frozenset[str]) -> str:
    """The ``endpoint`` label of a request's path: the path of a route, a route's template, or ``other``."""
    if path in known:
        return path
    for prefix, label in GROUPED:
        if path.startswith(prefix):
            return label
    return OTHER


class RequestMetrics(instruments.RunnerTrafficMetricsMiddleware):
    def _setup(self, *args: Any, **kwargs: Any) -> None:
        super()._setup(*args, **kwargs)
        self.known = frozenset((*server_context.service_routes, *API_ROUTES, *OPENAI_ROUTES, *TOKENIZER_ROUTES))
        self.known |= frozenset(BENTOML_ROUTES)
        self.service_labels = {
            "service_name": server_context.bento_name,
            "service_version": server_context.bento_version,
            "runner_name": server_context.service_name,
        }
        self.last_request = self.metrics_last_request_timestamp.labels(**self.service_labels)
        self.in_progress: dict[str, Any] = {}
        self.answered: dict[tuple[str, int], tuple[Any, Any]] = {}  # (endpoint, status): (total, duration)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await super().__call__(scope, receive, send)  # WebSockets, and /metrics unmeasured, as BentoML does
            return
        if not self._is_setup:
            self._setup()
        path = scope["path"]
        endpoint = endpoint_label(path, self.known)
        if not path.startswith(tuple(self.skip_paths)):
            self.last_request.set_to_current_time()
        start_time = default_timer()
        status_code = 0

        async def measured_send(message: dict[str, Any]) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                total, duration = self.answered_metrics(endpoint, status_code)
                total.inc()
                duration.observe(max(default_timer() - start_time, 0))
            await send(message)

        in_progress = self.in_progress.get(endpoint)
        if in_progress is None:
            in_progress = self.in_progress[endpoint] = self.metrics_request_in_progress.labels(
                endpoint=endpoint, **self.service_labels
            )
        with in_progress.track_inprogress():
            await self.app(scope, receive, measured_send)

    def answered_metrics(self, endpoint: str, status: int) -> tuple[Any, Any]:
        """The request counter's and the duration histogram's children for an answered request."""
        children = self.answered.get((endpoint, status))
        if children is None:
            labels = {"endpoint": endpoint, "http_response_code": status, **self.service_labels}
            children = self.metrics_request_total.labels(**labels), self.metrics_request_duration.labels(**labels)
            self.answered[(endpoint, status)] = children
        return children


def install() -> None:
    """Make BentoML build its apps with this middleware instead of its own."""
    instruments.RunnerTrafficMetricsMiddleware = RequestMetrics
