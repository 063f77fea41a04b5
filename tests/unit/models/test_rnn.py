"""Each architecture learns, and the TorchScript export reproduces the eager model."""

import pytest
import torch

from models.rnn import ARCHITECTURES, LockedDropout, ModelConfig, RecurrentLM
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
    hidden, state = scripted.encode(sample, scripted.zero_state(2))
    last = model.eval()(sample, model.zero_state(2))[0][:, -1]
    torch.testing.assert_close(scripted.decode(hidden[:, -1], state), last)


def test_locked_dropout_keeps_one_mask_over_time_and_is_the_identity_in_eval() -> None:
    torch.manual_seed(3)
    dropout = LockedDropout(0.5)
    dropped = dropout(torch.ones(4, 7, 16))  # (B, T, H)
    assert set(dropped.unique().tolist()) == {0.0, 2.0}  # kept entries scaled by 1 / (1 - p)
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # the same mask at every step
    assert not torch.equal(dropped[0], dropped[1])  # a mask per sequence
    x = torch.randn(4, 7, 16)
    assert torch.equal(dropout.eval()(x), x)


def test_a_model_with_locked_dropout_scripts_and_serves_like_eager() -> None:
    torch.manual_seed(4)
    config = ModelConfig(vocab_size=60, embedding_dim=16, hidden_size=16, dropout=0.5, locked_dropout=True)
    model = RecurrentLM(config)
    sample = torch.randint(0, 60, (2, 12))
    train_logits, _ = model.train()(sample, model.zero_state(2))
    assert check_scripted(model, script_model(model), sample) < 1e-5  # scripting puts it in eval mode
    assert not torch.allclose(train_logits, model(sample, model.zero_state(2))[0])  # dropout was on


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


def test_adaptive_softmax_is_a_softmax_and_its_loss_is_cross_entropy(slice_rows) -> None:
    rows, vocab_size = slice_rows
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=vocab_size,
        embedding_dim=16,
        hidden_size=16,
        dropout=0.0,
        tie_weights=False,
        softmax_cutoffs=(50, 200),
    )
    model = RecurrentLM(config).eval()
    inputs, targets = next(bptt_windows(rows, 20))
    logits, _ = model(inputs, model.zero_state(rows.size(0)))
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(logits.shape[:-1]))  # log-probabilities
    loss, _ = model.loss(inputs, targets, model.zero_state(rows.size(0)))
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))
    torch.testing.assert_close(loss, expected)
    assert check_scripted(model, script_model(model), inputs) < 1e-5
    # Cutoffs past a small vocabulary leave a plain softmax.
    small = RecurrentLM(ModelConfig(vocab_size=20, embedding_dim=8, hidden_size=8, softmax_cutoffs=(50,)))
    assert len(small.decoder.tails) == 0 and small(inputs % 20, small.zero_state(rows.size(0)))[0].shape[-1] == 20


@pytest.mark.parametrize("tie", [False, True])
def test_adaptive_input_is_tied_to_the_softmax(tie: bool, slice_rows) -> None:
    rows, vocab_size = slice_rows
    config = ModelConfig(
        vocab_size=vocab_size, embedding_dim=16, hidden_size=16, tie_weights=tie, softmax_cutoffs=(50, 200)
    )
    model = RecurrentLM(config).eval()
    parameters = sum(p.numel() for p in model.parameters())
    assert (parameters < 16 * vocab_size) == tie  # tied: no (V, H) embedding of its own
    inputs, _ = next(bptt_windows(rows, 20))
    assert check_scripted(model, script_model(model), inputs) < 1e-5
    if tie:
        embedded = model.embedding(inputs)  # (B, T, H)
        word = int(inputs.reshape(-1)[(inputs.reshape(-1) >= 200)][0])  # a word of the second cluster
        cluster = model.decoder.tails[1]
        expected = cluster.weight[word - 200] @ cluster.projection
        torch.testing.assert_close(embedded.reshape(-1, 16)[(inputs.reshape(-1) == word)][0], expected)
        head_word = int(inputs[0, 0]) if int(inputs[0, 0]) < 50 else 5
        torch.testing.assert_close(
            model.embedding(torch.tensor([[head_word]]))[0, 0], model.decoder.head.weight[head_word]
        )
