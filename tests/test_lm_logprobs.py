"""Exact sequence log-probs (dpo_lab.lm.logprobs): agreement with a naive loop, invariance to
batching and padding, EOS handling, per-token output and every bad input."""

import random

import numpy as np
import pytest
import torch
from lm_support import EOS, TINY, naive_token_logps, one_thread  # noqa: F401 (autouse fixture)

from dpo_lab.lm import TokenLogprobs, load_model, sequence_logprobs
from dpo_lab.lm.logprobs import (
    as_id_lists,
    context_length,
    eos_id_of,
    pack_pairs,
    packing_capacity,
    per_sequence,
    prepare_pairs,
    response_logits,
    token_logprobs,
    vocab_size,
)


@pytest.fixture(scope="module")
def model():
    return load_model(TINY, seed=0)


@pytest.fixture(scope="module")
def pairs():
    rng = random.Random(0)
    prompts = [[rng.randrange(EOS) for _ in range(rng.randint(1, 8))] for _ in range(12)]
    responses = [[rng.randrange(EOS) for _ in range(rng.randint(1, 30))] for _ in range(12)]
    responses[3][len(responses[3]) // 2] = EOS  # an EOS inside a response must still be scored
    return prompts, responses


def naive(model, prompt, response):
    """The naive per-token log-probs (lm_support) without a graph, as float64."""
    with torch.no_grad():
        return naive_token_logps(model, prompt, response).double()


def test_matches_a_naive_one_sequence_loop(model, pairs):
    prompts, responses = pairs
    got = sequence_logprobs(model, prompts, responses)
    expected = torch.stack([naive(model, p, r + [EOS]).sum() for p, r in zip(prompts, responses)])
    assert got.shape == (12,) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-4)


def test_invariant_to_batch_size_order_and_padding(model, pairs):
    prompts, responses = pairs
    alone = sequence_logprobs(model, prompts, responses, batch_size=1)
    for batch_size in (3, 7, 12):
        batched = sequence_logprobs(model, prompts, responses, batch_size=batch_size)
        assert (batched - alone).abs().max() <= 1e-5
    reversed_ = sequence_logprobs(model, prompts[::-1], responses[::-1], batch_size=12).flip(0)
    assert (reversed_ - alone).abs().max() <= 1e-5
    # the shortest pair padded next to a 60-token neighbour
    padded = sequence_logprobs(model, [prompts[0], [1] * 30], [responses[0], [2] * 29], batch_size=2)
    assert abs(padded[0] - alone[0]) <= 1e-5


def test_eos_is_appended_unless_told_not_to(model, pairs):
    prompts, responses = pairs
    with_eos = sequence_logprobs(model, prompts, responses)
    explicit = sequence_logprobs(model, prompts, [r + [EOS] for r in responses], add_eos=False)
    assert torch.equal(with_eos, explicit)
    without = sequence_logprobs(model, prompts, responses, add_eos=False)
    eos_term = torch.stack([naive(model, p, r + [EOS])[-1] for p, r in zip(prompts, responses)])
    torch.testing.assert_close((with_eos - without).double(), eos_term, rtol=1e-5, atol=1e-4)


def test_per_token_output(model, pairs):
    prompts, responses = pairs
    out = sequence_logprobs(model, prompts, responses, per_token=True, batch_size=5)
    assert isinstance(out, TokenLogprobs)
    longest = max(len(r) for r in responses) + 1
    assert out.token_logps.shape == out.mask.shape == (12, longest)
    assert out.mask.sum(1).tolist() == [len(r) + 1 for r in responses]
    assert torch.all(out.token_logps[~out.mask] == 0)
    assert torch.equal(out.logps, out.token_logps.sum(1))
    for i in (0, 3):
        n = len(responses[i]) + 1
        expected = naive(model, prompts[i], responses[i] + [EOS])
        torch.testing.assert_close(out.token_logps[i, :n].double(), expected, rtol=1e-5, atol=1e-5)


def test_one_sequence_per_row_layout():
    batch = pack_pairs([[5, 6], [7]], [[1, 2, 3], [4]], pad_id=EOS)
    assert batch.input_ids.tolist() == [[5, 6, 1, 2, 3], [7, 4, EOS, EOS, EOS]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
    assert batch.predict_mask.int().tolist() == [[0, 1, 1, 1, 0], [1, 0, 0, 0, 0]]
    assert batch.targets.tolist() == [1, 2, 3, 4]
    assert (batch.target_seq.tolist(), batch.target_pos.tolist()) == ([0, 0, 0, 1], [0, 1, 2, 0])
    assert batch.response_mask.int().tolist() == [[1, 1, 1], [1, 0, 0]]


def test_packed_layout_longest_first_with_restarting_positions():
    batch = pack_pairs([[5, 6], [7], [8]], [[1, 2, 3], [4], [9, 9]], pad_id=EOS, capacity=8)
    # lengths 5, 2, 3: [seq 0, seq 2] fill 8 tokens, seq 1 opens a second row
    assert batch.input_ids.tolist() == [[5, 6, 1, 2, 3, 8, 9, 9], [7, 4] + [EOS] * 6]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3, 4, 5, 6, 7]]
    assert batch.predict_mask.int().tolist() == [[0, 1, 1, 1, 0, 1, 1, 0], [1, 0, 0, 0, 0, 0, 0, 0]]
    assert batch.targets.tolist() == [1, 2, 3, 9, 9, 4]
    assert (batch.target_seq.tolist(), batch.target_pos.tolist()) == ([0, 0, 0, 2, 2, 1], [0, 1, 2, 0, 1, 0])
    spread = per_sequence(torch.arange(1.0, 7.0), batch)
    assert spread.tolist() == [[1.0, 2.0, 3.0], [6.0, 0.0, 0.0], [4.0, 5.0, 0.0]]


def test_packing_is_probed_and_keeps_sequences_apart(model, pairs):
    assert packing_capacity(model) == 64
    prompts, responses = prepare_pairs(model, *pairs)
    packed = token_logprobs(model, pack_pairs(prompts, responses, EOS, capacity=64)).detach()
    alone = token_logprobs(model, pack_pairs(prompts, responses, EOS)).detach()
    assert (packed - alone).abs().max() < 1e-5


def test_token_logprobs_is_differentiable_and_agrees(model, pairs):
    prompts, responses = prepare_pairs(model, *pairs)
    batch = pack_pairs(prompts, responses, EOS, packing_capacity(model))
    token = token_logprobs(model, batch)
    token.sum().backward()
    grad = model.lm_head.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(token.detach().sum(1), sequence_logprobs(model, *pairs), rtol=0, atol=1e-5)


def test_model_mode_is_restored_and_no_graph_is_built(model, pairs):
    model.train()
    try:
        out = sequence_logprobs(model, *pairs)
        assert model.training and not out.requires_grad
    finally:
        model.eval()


@pytest.mark.parametrize(
    "prompts, responses, kwargs, match",
    [
        ([[1], [2]], [[3]], {}, "prompt_ids has 2 entries but response_ids has 1"),
        ([], [], {}, "prompt_ids is empty"),
        ([[1], []], [[3], [4]], {}, r"prompt_ids\[1\] is empty"),
        ([[1]], [[]], {}, r"response_ids\[0\] is empty"),
        ([[1, 300]], [[3]], {}, r"prompt_ids\[0\] holds token id 300 outside the vocabulary \[0, 300\)"),
        ([[1]], [[-1]], {}, r"response_ids\[0\] holds token id -1"),
        ([[1]], [[3, EOS]], {}, r"response_ids\[0\] already ends with EOS"),
        (
            [[1]],
            [[3] * 63],
            {},
            r"pair 0: prompt \(1 tokens\) \+ response \(64 tokens, EOS included\) = 65 > "
            r"the model's context of 64",
        ),
        ([[1] * 10], [[3] * 55], {"add_eos": False}, r"pair 0: .* = 65 > the model's context"),
        (["a prompt"], [[3]], {}, r"prompt_ids\[0\] must be a list of token ids, got str"),
        ([[1.5]], [[3]], {}, r"prompt_ids\[0\] must hold integer token ids"),
        ([[1]], [[3]], {"batch_size": 0}, "batch_size must be a positive integer"),
        ([[1]], [[3]], {"eos_id": 300}, "eos_id must be a token id below the vocabulary size 300"),
    ],
)
def test_bad_inputs_are_refused(model, prompts, responses, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sequence_logprobs(model, prompts, responses, **kwargs)


def test_a_pair_that_exactly_fills_the_context_is_accepted(model):
    assert sequence_logprobs(model, [[1]], [[3] * 62]).shape == (1,)


def test_model_facts_and_id_lists(model):
    assert (context_length(model), vocab_size(model)) == (64, 300)
    assert (eos_id_of(model), eos_id_of(model, 7)) == (EOS, 7)
    assert as_id_lists("x", [torch.tensor([1, 2]), (3,), []]) == [[1, 2], [3], []]
    with pytest.raises(ValueError, match="x must be a list of token-id lists, got int"):
        as_id_lists("x", 5)


def test_response_logits_cover_exactly_the_response_tokens(model):
    batch = pack_pairs([[5, 6], [7]], [[1, 2, 3], [4]], pad_id=EOS, capacity=64)
    logits = response_logits(model, batch)
    assert logits.shape == (4, 300) and logits.dtype == torch.float32
    with torch.no_grad():
        full = model(torch.tensor([[5, 6, 1, 2, 3]])).logits[0]
        short = model(torch.tensor([[7, 4]])).logits[0]
    torch.testing.assert_close(logits.detach(), torch.cat([full[1:4], short[:1]]), rtol=0, atol=1e-5)


class _Mixer(torch.nn.Module):
    """A stand-in model whose hidden state at t sums the embeddings of tokens 0..t: either of the
    whole row (as a transformers version that ignores restarting position ids would) or of the
    current sequence only."""

    def __init__(self, keeps_apart):
        super().__init__()
        self.embed = torch.nn.Embedding(4, 3)
        self.config = type("Config", (), {"max_position_embeddings": 16})()
        self.keeps_apart = keeps_apart

    @property
    def base_model(self):
        return self

    def forward(self, input_ids, position_ids, use_cache):
        x = self.embed(input_ids)
        if self.keeps_apart:
            segment = (position_ids == 0).cumsum(1)
            x = torch.stack(
                [(x * (segment == s)[..., None]).cumsum(1) * (segment == s)[..., None] for s in segment.unique()]
            ).sum(0)
        else:
            x = x.cumsum(1)
        return type("Out", (), {"last_hidden_state": x})()


def test_models_that_would_mix_packed_sequences_get_one_sequence_per_row():
    assert packing_capacity(_Mixer(keeps_apart=True)) == 16
    assert packing_capacity(_Mixer(keeps_apart=False)) is None


@pytest.mark.parametrize("bad", [[True, 2], [np.bool_(False)]])
def test_boolean_token_ids_are_refused(bad):
    from dpo_lab.lm.logprobs import as_id_lists

    with pytest.raises(ValueError, match=r"response_ids\[0\] must hold integer token ids"):
        as_id_lists("response_ids", [bad])
