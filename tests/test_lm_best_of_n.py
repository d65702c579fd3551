"""Best-of-N on the engine (dpo_lab.lm.best_of_n) against its closed form on the exact task, where every
response's probability is known (tiny pi_ref, seconds)."""

import numpy as np
import pytest
import torch
from exact_support import one_thread  # noqa: F401 - autouse fixture: one torch thread

from dpo_lab import bandits, exact
from dpo_lab.lm.best_of_n import best_of_n


@pytest.fixture(scope="module")
def gold(space):
    prompt_of = {tuple(p): i for i, p in enumerate(space.prompt_id_lists())}

    def reward(prompt_ids, response_ids):
        return [space.reward[prompt_of[tuple(p)], space.responses.index(r)] for p, r in zip(prompt_ids, response_ids)]

    return reward


def test_the_kept_responses_follow_the_closed_form_of_best_of_n(space, reference, gold):
    ref_probs = np.exp(exact.policy_logprobs(reference.model, space))
    repeats, n = 1500, 4
    prompts = [p for p in space.prompt_id_lists() for _ in range(repeats)]
    out = best_of_n(reference.model, prompts, n, gold, space.max_len, seed=0)
    assert len(out.response_ids) == len(prompts) and out.all_scores.shape == (len(prompts), n)
    torch.testing.assert_close(out.scores, out.all_scores.max(dim=1).values)  # the best is kept
    expected = bandits.best_of_n(space.reward, ref_probs, n)
    for p in range(space.n_prompts):
        kept = [space.responses.index(r) for r in out.response_ids[p * repeats : (p + 1) * repeats]]
        freq = np.bincount(kept, minlength=space.n_responses) / repeats
        top = np.argsort(-expected[p])[:8]
        se = np.sqrt(expected[p, top] * (1 - expected[p, top]) / repeats)
        assert (np.abs(freq[top] - expected[p, top]) < 5 * se + 1e-9).all()
    again = best_of_n(reference.model, prompts[:40], n, gold, space.max_len, seed=0)
    assert again.response_ids == best_of_n(reference.model, prompts[:40], n, gold, space.max_len, seed=0).response_ids


def test_one_draw_is_plain_sampling_and_bad_inputs_are_refused(space, reference, gold):
    prompts = space.prompt_id_lists()
    one = best_of_n(reference.model, prompts, 1, gold, space.max_len, seed=3)
    assert one.all_scores.shape == (4, 1) and torch.equal(one.scores, one.all_scores[:, 0])
    for n in (0, 2.5, True):
        with pytest.raises(ValueError, match="n"):
            best_of_n(reference.model, prompts, n, gold, space.max_len, seed=0)
    with pytest.raises(ValueError, match="reward_fn"):
        best_of_n(reference.model, prompts, 2, "gold", space.max_len, seed=0)
    with pytest.raises(ValueError, match="reward_fn.*NaN"):
        best_of_n(reference.model, prompts, 2, lambda p, r: [float("nan")] * len(r), space.max_len, seed=0)
    with pytest.raises(ValueError, match="reward_fn.*shape"):
        best_of_n(reference.model, prompts, 2, lambda p, r: [0.0], space.max_len, seed=0)
