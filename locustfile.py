"""Realistic traffic for nextword (``make loadtest`` runs it headless).

* ``Typist``: someone typing a sentence; after each word the client asks
  /predict_next for suggestions, so prefixes grow word by word, with short
  think times between keystrokes.
* ``Writer``: /generate calls of mixed lengths and sampling settings.

Every response is checked: status 200 and one answer per input. Any failure
makes Locust exit non-zero.
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

SENTENCES = [
    "The game was released in North America on the same day as the film",
    "In 1990 the band recorded their second album in London with a new producer",
    "The river flows through the city before it reaches the sea near the old port",
    "He was born in a small village and later moved to the capital to study law",
    "The species is found in forests across the eastern part of the country",
    "After the war the ship was sold to a private company and renamed",
    "She won the award for best actress at the ceremony held in New York",
    "The church was built in the 12th century and restored several times",
]


def check(response, inputs: int) -> None:
    """Mark the request failed unless it is a 200 with one answer per input."""
    if response.status_code != 200:
        response.failure(f"status {response.status_code}: {response.text[:200]}")
    elif not isinstance(body := response.json(), list) or len(body) != inputs:
        response.failure(f"expected {inputs} answers, got {str(body)[:200]}")
    else:
        response.success()


class Typist(FastHttpUser):
    weight = 4
    wait_time = between(0.05, 0.4)

    @task
    def type_a_sentence(self) -> None:
        words = random.choice(SENTENCES).split()
        for end in range(len(words) + 1):
            body = {"inputs": [{"text": " ".join(words[:end]), "top_k": random.choice((3, 5, 10))}]}
            with self.client.post("/predict_next", json=body, name="/predict_next", catch_response=True) as r:
                check(r, 1)
            self.wait()


class Writer(FastHttpUser):
    weight = 1
    wait_time = between(0.5, 2.0)

    @task
    def continue_a_prompt(self) -> None:
        words = random.choice(SENTENCES).split()
        request = {
            "prompt": " ".join(words[: random.randint(1, 6)]),
            "max_new_tokens": random.choice((5, 20, 50)),
            "temperature": random.choice((0.0, 0.7, 1.0)),
            "top_k": random.choice((0, 40)),
            "top_p": random.choice((1.0, 0.9)),
            "stop": random.choice(([], ["."])),
        }
        if random.random() < 0.5:
            request["seed"] = random.randint(0, 1000)
        with self.client.post("/generate", json={"inputs": [request]}, name="/generate", catch_response=True) as r:
            check(r, 1)
