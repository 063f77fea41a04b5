"""An outside check of our perplexity: lm-evaluation-harness scores the test split's texts through /v1/completions.

Each sentence of the test split (``training.fresh_texts.split_texts``) is a
document of a local lm-eval task (``loglikelihood_rolling``). lm-eval's
``local-completions`` model tokenizes it with the server's own tokenizer
(``tokenizer_backend=remote``: /tokenizer_info and /tokenize), puts the
tokenizer's BOS token first (the line break that starts every text) and asks
for ``echo`` with ``logprobs`` and ``max_tokens: 1``, in batches. That is the
fresh-text mode of ``training.fresh_texts``: each text alone, from the zero
state and a leading line break. So lm-eval's word perplexity over these
documents (words are their whitespace-separated tokens) must equal
``evaluate_fresh_texts``' per-token perplexity of the same texts, computed
here in process from the training code's own forward pass.

The server runs in float32 with an API key (a fresh one per run), which
lm-eval sends; lm-eval runs from its own environment (``.venv-eval``: its
dependencies are heavy), offline. Usage::

    make eval-harness                                    # the default model
    python -m bench.eval_harness --model nextword:latest --lm-eval .venv-eval/bin/lm-eval
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.launcher import Server
from models.bundle import load_bundle
from training.corpus import load_corpus
from training.download import wikitext2_corpus
from training.fresh_texts import encode_texts, evaluate_fresh_texts, split_texts

TASK = "nextword_fresh_texts"
LAST_WORD_TASK = "nextword_last_words"
AGREEMENT = 0.01  # the issue's bound on the two perplexities' relative difference
MAX_PROMPT_TOKENS = 256  # the server's NEXTWORD_MAX_TEXT_TOKENS default; lm-eval's max_length
RESULTS = Path("bench/results/eval_harness.json")


def documents(tag: str, corpus: str, limit: int | None) -> tuple[list[str], list[list[int]]]:
    """The test split's sentences as documents (tokens joined by spaces) and as the ids the service runs.

    Only sentences that read back as the same tokens, and that fit one lm-eval
    window (its BOS token, the text, one generated token), are kept.
    """
    bundle = load_bundle(tag, torch.device("cpu"), torch.float32)
    read = load_corpus(wikitext2_corpus() if corpus == "auto" else corpus)
    docs, ids = [], []
    for tokens in split_texts(read.test, bundle.tokenizer, read.texts):
        doc = " ".join(tokens)
        if bundle.tokenizer.tokenize(doc) == tokens and len(tokens) + 2 <= MAX_PROMPT_TOKENS:
            docs.append(doc)
            ids.extend(encode_texts([tokens], bundle.vocab))
    return docs[:limit], ids[:limit]


def ours(tag: str, ids: list[list[int]]) -> float:
    """Per-token perplexity of the texts in the fresh-text mode, from the training code (float32)."""
    bundle = load_bundle(tag, torch.device("cpu"), torch.float32)
    return evaluate_fresh_texts(bundle.model, ids, bundle.vocab, torch.device("cpu")).perplexity


def last_words(docs: list[str]) -> list[tuple[str, str]]:
    """LAMBADA's question of each sentence: (the text before its last word of letters, that word)."""
    pairs = []
    for doc in docs:
        tokens = doc.split(" ")
        last = max((i for i, token in enumerate(tokens) if token.isalpha()), default=0)
        if last >= 2:
            pairs.append((" ".join(tokens[:last]), " " + tokens[last]))
    return pairs


@torch.inference_mode()
def our_last_words(tag: str, pairs: list[tuple[str, str]]) -> float:
    """lm-eval's ``perplexity`` (exp of minus the mean log-likelihood of each last word) from the model's
    own forward pass: the context's ids as lm-eval sends them, from the zero state, no line break first."""
    bundle = load_bundle(tag, torch.device("cpu"), torch.float32)
    total = 0.0
    for context, word in pairs:
        before = bundle.vocab.encode(bundle.tokenizer.tokenize(context))
        after = bundle.vocab.encode(bundle.tokenizer.tokenize(word))
        ids = torch.tensor([before + after])
        logits, _ = bundle.model(ids[:, :-1], bundle.model.zero_state(1))
        logp = logits[0, len(before) - 1 :].float().log_softmax(-1)
        total += float(logp.gather(1, torch.tensor(after).unsqueeze(1)).sum())
    return math.exp(-total / len(pairs))


def write_tasks(folder: Path, docs: list[str], pairs: list[tuple[str, str]]) -> None:
    """Both tasks' data (JSON lines) and configs (JSON, which YAML reads as it is)."""
    texts = folder / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": doc}) + "\n" for doc in docs), encoding="utf-8")
    questions = folder / "last_words.jsonl"
    lines = (json.dumps({"context": context, "word": word}) + "\n" for context, word in pairs)
    questions.write_text("".join(lines), encoding="utf-8")
    lower = {"higher_is_better": False}
    write_task(
        folder / f"{TASK}.yaml",
        texts,
        {"output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{text}}"},
        {
            "word_perplexity": lower | {"aggregation": "weighted_perplexity"},
            "byte_perplexity": lower | {"aggregation": "weighted_perplexity"},
            "bits_per_byte": lower | {"aggregation": "bits_per_byte"},
        },
    )
    write_task(
        folder / f"{LAST_WORD_TASK}.yaml",
        questions,
        {"output_type": "loglikelihood", "doc_to_text": "{{context}}", "doc_to_target": "{{word}}"},
        {
            "perplexity": lower | {"aggregation": "perplexity"},
            "acc": {"aggregation": "mean", "higher_is_better": True},
        },
    )


def write_task(path: Path, data: Path, reading: dict[str, str], metrics: dict[str, dict]) -> None:
    config = {
        "task": path.stem,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        **reading,
        "metric_list": [{"metric": name} | how for name, how in metrics.items()],
        "metadata": {"version": 1.0},
    }
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def theirs(lm_eval: str, url: str, tag: str, key: str, folder: Path, batch_size: int) -> tuple[dict, float]:
    """lm-eval's metrics for both tasks, run against the server at ``url``, and its wall time."""
    model_args = ",".join(
        [
            f"base_url={url}/v1/completions",
            f"model={tag}",
            "tokenizer_backend=remote",
            "tokenized_requests=True",
            f"max_length={MAX_PROMPT_TOKENS}",
            f"auth_token={key}",  # the remote tokenizer's; the completions read OPENAI_API_KEY
        ]
    )
    command = [lm_eval, "run", "--model", "local-completions", "--model_args", model_args]
    command += ["--batch_size", str(batch_size), "--tasks", f"{TASK},{LAST_WORD_TASK}", "--include_path", str(folder)]
    command += ["--output_path", str(folder / "out")]
    env = os.environ | {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": key}
    started = time.perf_counter()
    if subprocess.run(command, env=env).returncode != 0:  # its own output says why; the command holds the key
        raise SystemExit("lm-eval failed (its output is above)")
    seconds = time.perf_counter() - started
    (found,) = (folder / "out").rglob("results_*.json")
    return json.loads(found.read_text())["results"], seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eval_harness", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest", help="model tag in the BentoML store")
    parser.add_argument("--corpus", default="auto", help="corpus directory or file; auto: the default corpus")
    parser.add_argument("--lm-eval", default=".venv-eval/bin/lm-eval", help="lm-eval's command")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N sentences")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per lm-eval request")
    args = parser.parse_args(argv)

    docs, ids = documents(args.model, args.corpus, args.limit)
    pairs = last_words(docs)
    words = sum(len(doc.split()) for doc in docs)
    print(f"{len(docs):,} sentences of the test split, {words:,} words; {len(pairs):,} last words")
    our_perplexity = ours(args.model, ids)
    our_last = our_last_words(args.model, pairs)
    key = secrets.token_hex(16)
    env = {"NEXTWORD_MODEL": args.model, "NEXTWORD_PRECISION": "float32", "NEXTWORD_API_KEY": key}
    with tempfile.TemporaryDirectory(prefix="nextword-lm-eval-") as folder, Server(env=env) as server:
        write_tasks(Path(folder), docs, pairs)
        results, seconds = theirs(args.lm_eval, server.url, args.model, key, Path(folder), args.batch_size)
    their_perplexity = results[TASK]["word_perplexity,none"]
    their_last = results[LAST_WORD_TASK]["perplexity,none"]
    difference = their_perplexity / our_perplexity - 1
    last_difference = their_last / our_last - 1
    print(f"lm-eval took {seconds:.0f} s over HTTP; ours are in process (float32)")
    print(f"{'':44s} {'ours':>10s} {'lm-eval':>10s} {'difference':>11s}")
    print(
        f"{'sentences, each alone: word perplexity':44s} {our_perplexity:10.3f} {their_perplexity:10.3f} "
        f"{difference:+11.4%}"
    )
    print(
        f"{'last words (LAMBADA-style): perplexity':44s} {our_last:10.3f} {their_last:10.3f} {last_difference:+11.4%}"
    )
    print(f"last words: lm-eval's accuracy (greedy) {results[LAST_WORD_TASK]['acc,none']:.1%}; bound ±{AGREEMENT:.0%}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "model": args.model,
        "sentences": len(docs),
        "words": words,
        "ours_perplexity": our_perplexity,
        "lm_eval_word_perplexity": their_perplexity,
        "lm_eval_byte_perplexity": results[TASK].get("byte_perplexity,none"),
        "relative_difference": difference,
        "last_words": len(pairs),
        "ours_last_word_perplexity": our_last,
        "lm_eval_last_word_perplexity": their_last,
        "lm_eval_last_word_accuracy": results[LAST_WORD_TASK]["acc,none"],
        "last_word_relative_difference": last_difference,
        "lm_eval_seconds": seconds,
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    agree = all(math.isfinite(d) and abs(d) <= AGREEMENT for d in (difference, last_difference))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
