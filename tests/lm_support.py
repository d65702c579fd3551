"""Shared setup of the dpo_lab.lm tests (tests/test_lm_*.py): tiny GPT-2 configurations, exact
enumeration of responses, a naive log-prob reference and a one-thread fixture (import the fixture
into a test module to use it)."""

import itertools

import pytest
import torch
from transformers import GPT2Config

from dpo_lab.lm.model import torch_threads

EOS = 299
# 2 layers x 32 dims, 300-token vocabulary whose last id is EOS: fast, yet a real GPT-2.
TINY = GPT2Config(vocab_size=300, n_layer=2, n_embd=32, n_head=2, n_positions=64, bos_token_id=EOS, eos_token_id=EOS)

# Vocabulary {0, 1, 2, EOS=3} with large weights: next-token distributions far from uniform, so
# sampling and KL errors show, while every response of up to 3 tokens can be enumerated (40).
FOUR_EOS = 3
FOUR_TOKENS = GPT2Config(
    vocab_size=4,
    n_layer=2,
    n_embd=16,
    n_head=2,
    n_positions=8,
    initializer_range=0.6,
    bos_token_id=FOUR_EOS,
    eos_token_id=FOUR_EOS,
)


def all_responses(max_new_tokens, eos=FOUR_EOS):
    """Every response of at most ``max_new_tokens`` tokens over {0 .. eos-1} + EOS: those stopped by
    EOS and those cut by the cap. Under any model their probabilities sum to 1."""
    out = []
    for n in range(max_new_tokens):
        out += [list(body) + [eos] for body in itertools.product(range(eos), repeat=n)]
    return out + [list(body) for body in itertools.product(range(eos), repeat=max_new_tokens)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread and lose a lot when other jobs share the cores."""
    with torch_threads(1):
        yield


def naive_token_logps(model, prompt, response):
    """log pi(y_t | x, y_<t) per response token from one unpadded forward, a full log-softmax and a
    gather: slow and obviously right (keeps the gradient)."""
    logp = model(torch.tensor([list(prompt) + list(response)])).logits[0].log_softmax(-1)
    return torch.stack([logp[len(prompt) - 1 + j, t] for j, t in enumerate(response)])
