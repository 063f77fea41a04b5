"""Small HTTP helpers shared by the tests that talk to a real server."""

from __future__ import annotations

import httpx


def predict(client: httpx.Client, *inputs: dict) -> list[dict]:
    """POST /predict_next with these inputs; asserts a 200 and returns the answers."""
    response = client.post("/predict_next", json={"inputs": list(inputs)})
    assert response.status_code == 200, response.text
    return response.json()


def generate(client: httpx.Client, *inputs: dict) -> list[dict]:
    """POST /generate with these inputs; asserts a 200 and returns the answers."""
    response = client.post("/generate", json={"inputs": list(inputs)})
    assert response.status_code == 200, response.text
    return response.json()
