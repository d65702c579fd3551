"""lm.memory: GPT-2's parameter count against the model's, and the measured activation bytes against a real forward
of a deeper model on other rows (the plan extrapolates in layers, rows and lengths; it must land)."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from dpo_lab.lm import memory


@pytest.mark.parametrize("sizes", [(1, 32, 16, 300), (3, 64, 128, 1000), (36, 1280, 1024, 50257)])
def test_parameter_count_matches_the_model(sizes):
    n_layer, n_embd, n_positions, vocab = sizes
    with torch.device("meta"):  # gpt2-large's shapes without its memory
        cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=2, n_positions=n_positions, vocab_size=vocab)
        model = GPT2LMHeadModel(cfg)
    assert memory.gpt2_parameters(n_layer, n_embd, n_positions, vocab) == sum(p.numel() for p in model.parameters())
    if n_layer == 36:
        assert memory.gpt2_parameters(*sizes) == 774_030_080  # gpt2-large, as published


@pytest.mark.parametrize("bf16", [False, True])
def test_measured_bytes_predict_a_deeper_forward_on_other_rows(bf16):
    measured = memory.measure(32, 2, 300, bf16)
    assert measured.precision == ("bf16" if bf16 else "fp32") and measured.per_token_layer > 0
    assert (measured.per_layer_fixed > 0) == bf16  # bf16 copies of the weights exist only under autocast
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=300, n_layer=4, n_embd=32, n_head=2, n_positions=64, eos_token_id=299)
    model = GPT2LMHeadModel(cfg).eval()  # as the trainers run it: no dropout (lm.train)
    prompts, responses = [[0, 1]] * 3, [[7] * 30, [8] * 30, [9] * 30]  # 3 rows of 32 (2-token prompts, as measured)
    predicted = measured.total(4, rows=3, row_len=32)
    assert memory.saved_bytes(model, prompts, responses, bf16=bf16) == pytest.approx(predicted, rel=0.01)
    assert measured.per_token2_layer == pytest.approx(0, abs=1e-6)  # SDPA keeps no T x T attention weights


def test_the_plan_adds_its_terms():
    measured = memory.ActivationBytes(1000.0, 10.0, 0.0, 500.0, 0.0, "fp32")
    adamw = memory.memory_plan(2, 32, 16, 300, "adamw", 40, measured, copies=3)
    rmsprop = memory.memory_plan(2, 32, 16, 300, "rmsprop", 40, measured, copies=3)
    p = memory.gpt2_parameters(2, 32, 16, 300)
    assert adamw["parameters (millions)"] == p / 1e6
    assert adamw["total"] - rmsprop["total"] == pytest.approx(4 * p / memory.GIB)  # one more moment
    activations = (1000 * 2 + 500) * 48 + 10 * 2 * 3 * 16**2  # 3 rows of 16 tokens
    assert adamw["activations (40 tokens, fp32)"] == pytest.approx(activations / memory.GIB)
    assert adamw["total"] == pytest.approx((4 * p * (3 + 1 + 2) + activations) / memory.GIB)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: memory.memory_plan(2, 32, 16, 300, "sgd", 100, m), "optimizer must be one of adamw, rmsprop"),
        (lambda m: memory.memory_plan(2, 32, 16, 300, "adamw", 0, m), "tokens_per_forward must be an integer >= 1"),
        (lambda m: memory.memory_plan(2, 32, 16, 300, "adamw", 10, m, copies=True), "copies must be an integer"),
        (lambda m: memory.gpt2_parameters(0, 32, 16, 300), "n_layer must be an integer >= 1, got 0"),
        (lambda m: memory.gpt2_parameters(2, 32.0, 16, 300), "n_embd must be an integer >= 1"),
        (lambda m: memory.measure(32, 2, 300, False, lengths=(16, 8, 32)), "lengths must be three increasing"),
    ],
)
def test_bad_inputs_are_refused_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call(memory.ActivationBytes(1.0, 0.0, 0.0, 1.0, 0.0, "fp32"))
