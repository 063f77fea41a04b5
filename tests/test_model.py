"""Each architecture learns, and the TorchScript export reproduces the eager model."""

import pytest
import torch

from models.rnn import ARCHITECTURES, ModelConfig, RecurrentLM
from models.tokenizer import Tokenizer
from models.vocab import Vocabulary
from training.corpus import load_corpus
from training.data import batchify, bptt_windows, encode_stream, line_tokens
from training.export import ExportError, check_scripted, script_model


@pytest.fixture(scope="module")
def slice_rows(corpus_dir) -> tuple[torch.Tensor, int]:
    lines = load_corpus(corpus_dir).train[:300]
    tokenizer = Tokenizer()
    vocab = Vocabulary.build(line_tokens(lines, tokenizer), max_size=500)
    return batchify(encode_stream(lines, tokenizer, vocab), 8), len(vocab)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_loss_falls(architecture: str, slice_rows) -> None:
    rows, vocab_size = slice_rows
    torch.manual_seed(0)
    config = ModelConfig(architecture=architecture, vocab_size=vocab_size, embedding_dim=32, hidden_size=32)
    model = RecurrentLM(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    windows = list(bptt_windows(rows, 20))[:30]
    losses = []
    for _ in range(2):
        state = model.zero_state(rows.size(0))
        for inputs, targets in windows:
            logits, state = model(inputs, state.detach())
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_state_is_one_tensor(architecture: str) -> None:
    model = RecurrentLM(ModelConfig(architecture=architecture, vocab_size=40, embedding_dim=8, hidden_size=8))
    state = model.zero_state(3)
    logits, new_state = model(torch.zeros(3, 5, dtype=torch.long), state)
    assert logits.shape == (3, 5, 40)
    assert new_state.shape == state.shape == (2 if architecture == "lstm" else 1, 2, 3, 8)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_scripted_equals_eager(architecture: str) -> None:
    torch.manual_seed(1)
    model = RecurrentLM(ModelConfig(architecture=architecture, vocab_size=60, embedding_dim=16, hidden_size=16))
    scripted = script_model(model)
    sample = torch.randint(0, 60, (2, 12))
    assert check_scripted(model, scripted, sample) < 1e-5
    hidden, _ = scripted.encode(sample, scripted.zero_state(2))
    torch.testing.assert_close(scripted.decode(hidden), model.eval()(sample, model.zero_state(2))[0])


def test_check_scripted_catches_a_different_model() -> None:
    config = ModelConfig(vocab_size=30, embedding_dim=8, hidden_size=8)
    torch.manual_seed(2)
    scripted = script_model(RecurrentLM(config))
    with pytest.raises(ExportError):
        check_scripted(RecurrentLM(config), scripted, torch.randint(0, 30, (2, 6)))


def test_untied_weights_allow_different_sizes() -> None:
    config = ModelConfig(vocab_size=30, embedding_dim=8, hidden_size=12, tie_weights=False)
    logits, _ = RecurrentLM(config)(torch.zeros(1, 2, dtype=torch.long), RecurrentLM(config).zero_state(1))
    assert logits.shape == (1, 2, 30)
    with pytest.raises(ValueError, match="tie_weights"):
        ModelConfig(vocab_size=30, embedding_dim=8, hidden_size=12, tie_weights=True)
