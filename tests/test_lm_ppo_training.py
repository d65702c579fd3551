"""PPO (dpo_lab.lm.ppo_training) on the exact task, where the optimum is known: with the gold reward and a
fixed KL coefficient beta it approaches pi*_beta, never crosses the exact frontier, steers its KL when
given a target, and resumes a killed run exactly (tiny sizes, seconds, a temporary run store)."""

import numpy as np
import pytest
import torch
from exact_support import one_thread  # noqa: F401 - autouse fixture: one torch thread

from dpo_lab import exact, lm
from dpo_lab.lm.ppo_training import train_ppo


@pytest.fixture(scope="module")
def setting(space, reference):
    ref_probs = np.exp(exact.policy_logprobs(reference.model, space))
    prompt_of = {tuple(p): i for i, p in enumerate(space.prompt_id_lists())}

    def gold(prompt_ids, response_ids):  # r*(x, y) of the enumerated table: PPO-GT's reward
        return [space.reward[prompt_of[tuple(p)], space.responses.index(r)] for p, r in zip(prompt_ids, response_ids)]

    return ref_probs, gold


def run(reference, space, gold, tmp_path, **kwargs):
    args = dict(iterations=12, batch_size=128, minibatch_size=64, max_new_tokens=space.max_len, lr=1e-3, kl_coef=1.0)
    args |= {"reward_name": "gold r*"} | kwargs
    return train_ppo(
        lm.load_model(reference.path),
        lm.load_model(reference.path),
        space.prompt_id_lists(),
        gold,
        run_root=tmp_path,
        progress=False,
        **args,
    )


def test_ppo_with_the_gold_reward_approaches_the_optimum_and_stays_under_the_frontier(
    space, reference, setting, tmp_path
):
    ref_probs, gold = setting
    star = exact.optimal_policy(ref_probs, space, 1.0)
    start = exact.exact_kl(ref_probs, star, space).mean()
    seen = []

    def evaluate(policy, step):
        probs = exact.as_probs(policy, space)
        seen.append((exact.exact_kl(probs, star, space).mean() / start, exact.evaluate(probs, ref_probs, space)))
        return {"ratio": seen[-1][0]}

    out = run(reference, space, gold, tmp_path, eval_fn=evaluate, eval_every=4)
    ratios = [r for r, _ in seen]
    assert len(ratios) == 3 and ratios[-1] < 0.5 * ratios[0] and ratios[-1] < 0.3  # towards pi*_beta
    assert all(e["eval/enum_frontier_gap"] <= 1e-9 for _, e in seen)  # theorem (F) holds for PPO too
    train = [m for m in out.run.metrics() if m.get("split") == "train"]
    assert len(train) == 12 * 4 * 2 and {m["objective/kl_coef"] for m in train} == {1.0}  # fixed beta
    for key in ("objective/kl", "objective/scores", "objective/entropy", "policy/clipfrac", "val/vpred", "loss/value"):
        assert all(np.isfinite(m[key]) for m in train), key
    assert train[-1]["objective/scores"] > train[0]["objective/scores"]
    again = run(reference, space, gold, tmp_path, eval_fn=evaluate, eval_every=4)
    assert again.run.id == out.run.id and len(again.run.metrics()) == len(out.run.metrics())  # loaded
    other = run(reference, space, gold, tmp_path, iterations=1, reward_name="another reward")
    assert other.run.id != run(reference, space, gold, tmp_path, iterations=1).run.id  # the reward is in the identity


def test_the_adaptive_controller_lowers_beta_while_the_kl_is_below_its_target(space, reference, setting, tmp_path):
    out = run(reference, space, setting[1], tmp_path, iterations=4, kl_coef=0.5, target_kl=50.0, horizon=256)
    coefs = [m["objective/kl_coef"] for m in out.run.metrics() if m.get("split") == "train"][::8]
    assert coefs[0] == 0.5 and all(b == pytest.approx(a * 0.9) for a, b in zip(coefs, coefs[1:]))  # 1 - 0.2 x 128/256


def test_a_killed_run_resumes_to_the_same_policy(space, reference, setting, tmp_path):
    whole = run(reference, space, setting[1], tmp_path / "whole", iterations=4)

    def kill_after_two(policy, step):
        if step == 2 * 8:  # the end of the second rollout, after its checkpoint
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        run(reference, space, setting[1], tmp_path / "killed", iterations=4, eval_fn=kill_after_two, eval_every=1)
    resumed = run(
        reference, space, setting[1], tmp_path / "killed", iterations=4, eval_fn=lambda p, s: {}, eval_every=1
    )
    for (name, a), b in zip(whole.policy.state_dict().items(), resumed.policy.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize(
    "reward, kwargs, match",
    [
        (lambda p, r: [float("nan")] * len(r), {}, "reward_fn.*NaN"),
        (lambda p, r: [1.0] * (len(r) - 1), {}, "reward_fn.*shape"),
        (lambda p, r: ["good"] * len(r), {}, "reward_fn"),
        (None, {}, "reward_fn"),
        ("gold", {"minibatch_size": 48}, "minibatch_size"),
        ("gold", {"target_kl": 0.0}, "target"),
        ("gold", {"target_kl": -6.0}, "target"),
        ("gold", {"iterations": 0}, "iterations"),
        ("gold", {"eval_every": -1}, "eval_every"),
        ("gold", {"checkpoint_every": 0}, "checkpoint_every"),
        ("gold", {"reward_name": ""}, "reward_name"),
    ],
)
def test_bad_inputs_are_refused_by_name(space, reference, setting, tmp_path, reward, kwargs, match):
    reward_fn = setting[1] if reward == "gold" else reward
    with pytest.raises(ValueError, match=match):
        run(reference, space, reward_fn, tmp_path, iterations=kwargs.pop("iterations", 1), **kwargs)


def test_the_reference_must_be_a_separate_model(space, reference, setting, tmp_path):
    policy = lm.load_model(reference.path)
    with pytest.raises(ValueError, match="ref is the policy"):
        train_ppo(policy, policy, space.prompt_id_lists(), setting[1], reward_name="gold", iterations=1, batch_size=4,
                  minibatch_size=4, max_new_tokens=3, lr=1e-3, run_root=tmp_path, progress=False)  # fmt: skip
