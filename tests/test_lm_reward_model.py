"""The reward model of dpo_lab.lm.reward_model on the exact task's tiny pi_ref: Eq. 2, scores that do
not depend on their batch, and training that learns r*'s order from pairs (seconds, temporary store)."""

import math

import numpy as np
import pytest
import torch
from exact_support import one_thread  # noqa: F401 - autouse fixture: one torch thread

from dpo_lab.exact import sample_pairs
from dpo_lab.lm import reward_model as rm


def test_the_loss_is_the_bradley_terry_likelihood_of_eq_2():
    chosen = torch.tensor([2.0, 0.0, -1.0, 30.0])
    rejected = torch.tensor([1.0, 0.0, 3.0, -30.0])
    expected = [-math.log(1 / (1 + math.exp(-(w - r)))) for w, r in zip(chosen.tolist(), rejected.tolist())]
    torch.testing.assert_close(rm.reward_model_loss(chosen, rejected), torch.tensor(expected))
    assert rm.pair_accuracy(chosen, rejected) == pytest.approx((1 + 0.5 + 0 + 1) / 4)  # a tie counts half
    with pytest.raises(ValueError, match="chosen, rejected"):
        rm.reward_model_loss(chosen, rejected[:2])
    with pytest.raises(ValueError, match="finite"):
        rm.reward_model_loss(chosen, torch.tensor([1.0, float("nan"), 0.0, 0.0]))


def test_a_score_does_not_depend_on_its_batch_and_the_policy_is_not_touched(space, reference):
    model = rm.RewardModel.from_policy(reference.model, seed=1)
    before = {k: v.clone() for k, v in reference.model.state_dict().items()}
    prompts = [list(p) for p in space.prompt_ids] * 3
    responses = [list(space.responses.ids[k]) for k in (0, 5, 57, 300, 1110, 888, 12, 400, 1000, 3, 77, 1100)]
    batched = rm.reward_scores(model, prompts, responses, batch_size=12)
    for i in range(len(prompts)):  # alone, without any padding: the same score
        alone = rm.reward_scores(model, prompts[i : i + 1], responses[i : i + 1])
        assert float(alone[0]) == pytest.approx(float(batched[i]), abs=1e-5)
    torch.testing.assert_close(rm.reward_scores(model, prompts, responses, batch_size=5), batched, atol=1e-5, rtol=0)
    assert batched.std() > 0  # a fresh head already tells responses apart: the check has teeth
    assert all(torch.equal(v, reference.model.state_dict()[k]) for k, v in before.items())


def test_saved_and_loaded_the_model_scores_the_same(space, reference, tmp_path):
    model = rm.RewardModel.from_policy(reference.model, seed=2)
    model.save_pretrained(tmp_path / "rm")
    again = rm.RewardModel.load(tmp_path / "rm")
    prompts, responses = [list(space.prompt_ids[0])] * 3, [list(space.responses.ids[k]) for k in (1, 20, 700)]
    torch.testing.assert_close(rm.reward_scores(again, prompts, responses), rm.reward_scores(model, prompts, responses))
    with pytest.raises(ValueError, match="no reward model"):
        rm.RewardModel.load(tmp_path)


def test_training_learns_the_order_of_r_star_and_keeps_the_best_epoch(space, reference, tmp_path):
    pairs = sample_pairs(space, reference.model, 900, seed=0, labels="order")
    train, heldout = pairs[:700], pairs[700:]
    before = rm.reward_scores(
        rm.RewardModel.from_policy(reference.model, seed=0),
        [p["prompt_ids"] for p in heldout] * 2,
        [p["chosen_ids"] for p in heldout] + [p["rejected_ids"] for p in heldout],
    )
    out = rm.train_reward_model(
        reference.model, train, heldout, epochs=3, batch_size=32, lr=3e-3, run_root=tmp_path, progress=False
    )
    evals = [m for m in out.run.metrics() if "heldout/accuracy" in m]
    assert [m["step"] for m in evals] == [22, 44, 66]  # once per epoch of ceil(700 / 32) steps
    best = max(evals, key=lambda m: m["heldout/accuracy"])
    assert (out.result["best_step"], out.result["best_accuracy"]) == (best["step"], best["heldout/accuracy"])
    assert out.result["best_accuracy"] > 0.85 > rm.pair_accuracy(before[: len(heldout)], before[len(heldout) :])
    w = rm.reward_scores(out.model, [p["prompt_ids"] for p in heldout], [p["chosen_ids"] for p in heldout])
    r = rm.reward_scores(out.model, [p["prompt_ids"] for p in heldout], [p["rejected_ids"] for p in heldout])
    assert rm.pair_accuracy(w, r) == pytest.approx(out.result["best_accuracy"])  # the returned model is the best
    gold = np.array([p["score_chosen"] - p["score_rejected"] for p in heldout])
    assert np.corrcoef((w - r).numpy(), gold)[0, 1] > 0.5  # larger reward gaps, larger score gaps
    again = rm.train_reward_model(
        reference.model, train, heldout, epochs=3, batch_size=32, lr=3e-3, run_root=tmp_path, progress=False
    )
    assert again.run.id == out.run.id and len(again.run.metrics()) == len(out.run.metrics())  # loaded, not retrained


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pairs": []}, "pairs"),
        ({"pairs": [{"prompt_ids": [1], "chosen_ids": [2]}]}, "rejected_ids"),
        ({"heldout": [{"prompt_ids": [1], "chosen_ids": [], "rejected_ids": [3]}]}, r"heldout\[0\]"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
    ],
)
def test_bad_training_input_is_refused_by_name(reference, kwargs, match):
    good = [{"prompt_ids": [10, 0], "chosen_ids": [7, 10], "rejected_ids": [8, 10]}]
    args = {"pairs": good, "heldout": good, "epochs": 1, "batch_size": 1, "lr": 1e-3} | kwargs
    with pytest.raises(ValueError, match=match):
        rm.train_reward_model(reference.model, args.pop("pairs"), args.pop("heldout"), progress=False, **args)


def test_bad_scoring_input_is_refused_by_name(space, reference):
    model = rm.RewardModel.from_policy(reference.model)
    with pytest.raises(ValueError, match="model"):
        rm.reward_scores(reference.model, [[10]], [[1]])
    with pytest.raises(ValueError, match="rows"):
        rm.reward_scores(model, [[10], [10]], [[1]])
    with pytest.raises(ValueError, match="vocabulary"):
        rm.reward_scores(model, [[10]], [[99]])
    with pytest.raises(ValueError, match="batch_size"):
        rm.reward_scores(model, [[10]], [[1]], batch_size=0)
    with pytest.raises(ValueError, match="policy"):
        rm.RewardModel.from_policy(torch.nn.Linear(2, 2))


def test_calibration_bins_what_the_model_predicts_against_what_the_labels_say():
    gen = torch.Generator().manual_seed(0)
    gap = 3 * torch.randn(20_000, generator=gen, dtype=torch.float64)
    labels_follow = torch.rand(20_000, generator=gen, dtype=torch.float64) < torch.sigmoid(gap.abs())
    # a calibrated model: the labelled winner is its preferred side with exactly the probability it predicts
    chosen = torch.where(labels_follow, gap.abs(), torch.zeros_like(gap))
    rejected = torch.where(labels_follow, torch.zeros_like(gap), gap.abs())
    rows = rm.calibration(chosen, rejected, bins=5)
    assert len(rows) == 5 and sum(r["pairs"] for r in rows) == 20_000
    for r in rows:
        assert 0.5 <= r["predicted"] <= 1.0
        assert abs(r["observed"] - r["predicted"]) < 4 * math.sqrt(0.25 / r["pairs"])
    overconfident = rm.calibration(3 * chosen, 3 * rejected, bins=5)  # the same ranking, 3x the confidence
    assert overconfident[-1]["observed"] < overconfident[-1]["predicted"] - 0.01
    assert rm.calibration(torch.tensor([1.0]), torch.tensor([1.0]), bins=2) == [
        {"predicted": 0.5, "observed": 0.5, "pairs": 1}
    ]
    with pytest.raises(ValueError, match="bins"):
        rm.calibration(chosen, rejected, bins=0)


def test_implicit_rewards_are_log_ratios_and_order_pairs_as_the_policy_prefers(space, reference):
    from dpo_lab.lm import sequence_logprobs

    ids = space.responses.ids
    pairs = [{"prompt_ids": list(space.prompt_ids[0]), "chosen_ids": list(ids[k]), "rejected_ids": list(ids[k + 1])}
             for k in (0, 5, 57, 300)]  # fmt: skip
    w, r = rm.implicit_rewards(reference.model, reference.model, pairs)
    assert torch.equal(w, torch.zeros(4)) and torch.equal(r, torch.zeros(4)) and rm.pair_accuracy(w, r) == 0.5
    policy = type(reference.model)(reference.model.config)  # another policy: pi_ref with a perturbed head
    policy.load_state_dict(reference.model.state_dict())
    with torch.no_grad():
        policy.lm_head.weight.add_(0.3 * torch.randn_like(policy.lm_head.weight))
    w, r = rm.implicit_rewards(policy, reference.model, pairs, batch_size=3)
    prompts = [q["prompt_ids"] for q in pairs]
    for got, key in ((w, "chosen_ids"), (r, "rejected_ids")):
        resp = [q[key] for q in pairs]
        want = sequence_logprobs(policy, prompts, resp, add_eos=False) - sequence_logprobs(
            reference.model, prompts, resp, add_eos=False
        )
        torch.testing.assert_close(got, want)
    assert w.abs().max() > 0.01  # the perturbation moved the log-ratios: the comparison has teeth
    with pytest.raises(ValueError, match="pairs: need a non-empty list"):
        rm.implicit_rewards(policy, reference.model, [])
    with pytest.raises(ValueError, match=r"pairs\[1\]: missing rejected_ids"):
        rm.implicit_rewards(policy, reference.model, [pairs[0], {"prompt_ids": [1], "chosen_ids": [2]}])
