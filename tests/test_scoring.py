"""The one-call scorer gives each padded row the softmax of its own last logits."""

import pytest
import torch

from models.bundle import load_bundle
from models.scoring import compile_top_words


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_top_words_match_the_model_row_by_row(tiny_model_tag: str, dtype: torch.dtype) -> None:
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), dtype)
    top_words = compile_top_words(bundle.model)
    texts = ["the first of the", "in", "he was born in the city of"]
    rows = [[bundle.vocab.eos_id, *bundle.vocab.encode(bundle.tokenizer.tokenize(t))] for t in texts]
    width = max(len(r) for r in rows)
    tokens = torch.tensor([r + [0] * (width - len(r)) for r in rows])  # right-padded with <unk>
    lengths = torch.tensor([len(r) for r in rows])

    with torch.inference_mode():
        probs, ids = top_words(tokens, lengths, 7)
        assert probs.shape == ids.shape == (3, 7)
        for row, (p, i) in zip(rows, zip(probs, ids, strict=True), strict=True):
            logits, _ = bundle.model(torch.tensor([row]), bundle.model.zero_state(1))
            alone = logits[0, -1].float().softmax(-1)
            expected_p, expected_i = alone.topk(7)
            torch.testing.assert_close(p, expected_p, rtol=1e-4, atol=1e-6)
            assert i.tolist() == expected_i.tolist()
            assert p[0] > p[-1] > 0
