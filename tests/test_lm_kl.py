"""KL(pi || pi_ref) estimators (dpo_lab.lm.kl) against the exact KL of tiny models, computed by
enumerating every response."""

import math

import numpy as np
import pytest
import torch
from lm_support import FOUR_EOS, FOUR_TOKENS, all_responses, one_thread  # noqa: F401 (autouse fixture)
from transformers import GPT2Config

from dpo_lab.lm import KLEstimate, estimate_kl, load_model, sequence_kl, sequence_logprobs

EOS = FOUR_EOS
PROMPTS = [[EOS, 1], [2]]
MAX_NEW = 3


@pytest.fixture(scope="module")
def policy():
    return load_model(FOUR_TOKENS, seed=2)


@pytest.fixture(scope="module")
def ref():
    return load_model(FOUR_TOKENS, seed=1)


def exact_kl(policy, ref, prompt):
    """KL(pi || pi_ref) = sum_y pi(y) log(pi(y) / pi_ref(y)) over all 40 responses."""
    responses = all_responses(MAX_NEW)
    logp = sequence_logprobs(policy, [prompt] * len(responses), responses, add_eos=False).double()
    logq = sequence_logprobs(ref, [prompt] * len(responses), responses, add_eos=False).double()
    assert abs(logp.exp().sum().item() - 1) < 1e-5
    return (logp.exp() * (logp - logq)).sum().item(), logp.exp(), responses


def test_both_estimators_have_the_exact_kl_as_expectation(policy, ref):
    """Weighting the per-response terms by pi(y) over every y gives the KL exactly (chain rule)."""
    for prompt in PROMPTS:
        kl, probs, responses = exact_kl(policy, ref, prompt)
        assert kl > 0.1
        logratio, exact = sequence_kl(policy, ref, [prompt] * len(responses), responses)
        assert logratio.dtype == exact.dtype == torch.float64 and logratio.shape == (40,)
        assert abs((probs * logratio).sum().item() - kl) < 1e-5
        assert abs((probs * exact).sum().item() - kl) < 1e-5
        assert (exact >= -1e-6).all()  # per-token KLs are non-negative; log-ratios need not be
        assert (logratio < 0).any()


def test_sampled_estimates_agree_with_enumeration(policy, ref):
    est = estimate_kl(policy, ref, PROMPTS, num_samples=2000, max_new_tokens=MAX_NEW, seed=0, batch_size=1000)
    assert isinstance(est, KLEstimate) and est.logratio.shape == est.exact.shape == (4000,)
    truth = np.mean([exact_kl(policy, ref, p)[0] for p in PROMPTS])
    assert abs(est.logratio_mean - truth) < 4 * est.logratio_se
    assert abs(est.exact_mean - truth) < 4 * est.exact_se
    assert est.exact_se < est.logratio_se  # the point of the second estimator
    assert est.logratio_se == pytest.approx(est.logratio.std(ddof=1) / math.sqrt(4000))
    summary = est.summary()
    assert summary["kl/exact"] == est.exact_mean and set(summary) == {
        "kl/logratio",
        "kl/logratio_se",
        "kl/exact",
        "kl/exact_se",
    }
    assert est.samples.prompt_index[:2000] == [0] * 2000


def test_kl_of_a_model_with_itself_is_zero(policy):
    est = estimate_kl(policy, policy, PROMPTS, num_samples=5, max_new_tokens=MAX_NEW, seed=0)
    assert np.all(est.logratio == 0) and np.abs(est.exact).max() < 1e-6


def test_same_seed_same_estimate(policy, ref):
    a = estimate_kl(policy, ref, PROMPTS, 10, MAX_NEW, seed=3)
    b = estimate_kl(policy, ref, PROMPTS, 10, MAX_NEW, seed=3)
    assert np.array_equal(a.logratio, b.logratio) and np.array_equal(a.exact, b.exact)


def test_sequence_kl_does_not_depend_on_batch_size(policy, ref):
    responses = all_responses(MAX_NEW)
    prompts = [PROMPTS[i % 2] for i in range(len(responses))]
    one = sequence_kl(policy, ref, prompts, responses, batch_size=1)
    many = sequence_kl(policy, ref, prompts, responses, batch_size=17)
    for a, b in zip(one, many):
        assert (a - b).abs().max() < 1e-5


def test_a_single_sample_has_no_standard_error(policy, ref):
    est = estimate_kl(policy, ref, [[1]], 1, MAX_NEW, seed=0)
    assert math.isnan(est.exact_se) and math.isfinite(est.exact_mean)


def test_bad_inputs_are_refused(policy, ref):
    other = load_model(GPT2Config(vocab_size=5, n_layer=1, n_embd=8, n_head=2, n_positions=8, eos_token_id=EOS), seed=0)
    with pytest.raises(ValueError, match="policy has a vocabulary of 4 tokens but ref has 5"):
        sequence_kl(policy, other, [[1]], [[2]])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        sequence_kl(policy, ref, [[1]], [[2]], batch_size=0)
    with pytest.raises(ValueError, match=r"response_ids\[0\] is empty"):
        sequence_kl(policy, ref, [[1]], [[]])
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        estimate_kl(policy, ref, [[1]], 0, MAX_NEW, seed=0)
    with pytest.raises(ValueError, match=r"prompts\[0\] has 6 tokens; with max_new_tokens=3"):
        estimate_kl(policy, ref, [[1] * 6], 1, MAX_NEW, seed=0)


def test_the_samplers_kl_terms_are_sequence_kl_of_its_samples(policy, ref):
    """estimate_kl reads both estimators off the sampling logits (ref stepping along on its own cache):
    the same per-row numbers as a separate scoring pass over the samples."""
    from dpo_lab.lm import sample

    s = sample(policy, None, PROMPTS * 3, 4, MAX_NEW, seed=7, batch_size=5, ref=ref)  # rows finish at different steps
    logratio, exact = sequence_kl(policy, ref, s.prompt_ids, s.response_ids)
    np.testing.assert_allclose(s.kl_logratio, logratio.numpy(), atol=1e-4)
    np.testing.assert_allclose(s.kl_exact, exact.numpy(), atol=1e-4)
    assert sample(policy, None, PROMPTS, 2, MAX_NEW, seed=7).kl_exact is None  # no ref, no terms
    plain = sample(policy, None, PROMPTS * 3, 4, MAX_NEW, seed=7, batch_size=5)
    assert plain.response_ids == s.response_ids  # stepping ref along does not change the draws
    with pytest.raises(ValueError, match="temperature 1"):
        sample(policy, None, PROMPTS, 1, MAX_NEW, seed=0, temperature=0.5, ref=ref)
    other = load_model(GPT2Config(vocab_size=5, n_layer=1, n_embd=8, n_head=2, n_positions=8), seed=0)
    with pytest.raises(ValueError, match="ref: a vocabulary"):
        sample(policy, None, PROMPTS, 1, MAX_NEW, seed=0, ref=other)


def test_the_exact_kl_is_never_negative_when_the_policies_nearly_agree():
    """KL >= 0; summed in float32 over a 50,257-token vocabulary it can land at -1e-7 when pi ~ pi_ref (seen in the
    gpu path's stand-in run), which both the sampler's and sequence_kl's per-token sums clamp away."""
    import copy

    cfg = GPT2Config(vocab_size=50257, n_layer=1, n_embd=16, n_head=2, n_positions=32, eos_token_id=50256)
    policy = load_model(cfg, seed=0)
    near = copy.deepcopy(policy)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in near.parameters():
            p.add_(1e-7 * torch.randn(p.shape, generator=gen))
    prompts = [[50256, 11, 12], [50256, 13]] * 8
    est = estimate_kl(policy, near, prompts, num_samples=2, max_new_tokens=6, seed=0)
    assert est.samples.kl_exact.min() >= 0 and est.exact_mean < 1e-4
    _, exact = sequence_kl(policy, near, [[50256, 11]] * 4, [[5, 6, 7]] * 4)
    assert exact.min() >= 0 and exact.max() < 1e-4
