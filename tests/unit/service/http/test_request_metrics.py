"""The ``endpoint`` label of BentoML's request metrics (service.http.request_metrics): bounded whatever the path."""

import pytest

from service.http.request_metrics import OTHER, endpoint_label

KNOWN = frozenset({"/predict_next", "/generate", "/v1/completions", "/v1/models", "/readyz"})


@pytest.mark.parametrize("path", sorted(KNOWN))
def test_a_route_is_labelled_with_its_own_path(path: str) -> None:
    assert endpoint_label(path, KNOWN) == path


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/v1/models/nextword:latest", "/v1/models/{model}"),
        ("/v1/models/a/b/c", "/v1/models/{model}"),
        ("/demo/demo.js", "/demo/"),
        ("/demo/no-such-file", "/demo/"),
    ],
)
def test_a_routes_variable_part_is_not_a_label(path: str, label: str) -> None:
    assert endpoint_label(path, KNOWN) == label


@pytest.mark.parametrize("path", ["/predict_nextx", "/predict_next/", "/wp-login.php", "/" + "a" * 5000, "/v1/other"])
def test_any_other_path_shares_one_label(path: str) -> None:
    assert endpoint_label(path, KNOWN) == OTHER
