"""The exact task as a :class:`dpo_lab.task.Task`: the experiment of the IMDb task on an enumerable one.

Introduced in notebook 04. ``python -m dpo_lab.sweep --task exact`` trains
every method of the grid on this task with the same trainers, run store and evaluator as the IMDb
task, and every evaluation record also carries the task's exact quantities (``exact_evaluation``: ``eval/enum_kl``,
``eval/enum_reward``, the exact frontier's reward at that KL and the gap to it, per prompt too).

=========================  =====================================================================
Task member                the exact task
=========================  =====================================================================
build_reference            ``reference.train_reference``: a tiny GPT-2 trained by ``lm.train_sft``
train_prompts,             the task's prompts, both: the exact evaluation averages over the whole
test_prompts               prompt distribution, as the bandit notebooks do (nothing is held out)
prompt_ids                 ``[EOS] + word ids``, as the IMDb task
preference_pairs           ``pairs.sample_pairs``: two distinct responses of pi_ref, labelled by
                           Bradley-Terry on r* (``profile.exact_labels = "order"``: by r*'s order)
gold_reward                r*(x, y) of prompt + response texts (``space.score``)
second_scorer              the polarity of the same word values: 1 positive, 0.5 neutral, 0 negative.
                           It does not pay for repetition, so it stays flat where r* is gamed
exact_evaluation           ``quantities.evaluate`` against pi_ref's enumerated probabilities
=========================  =====================================================================

The experiment's sizes: a 27k-weight model trains in milliseconds per step, so the task runs the
sweep with its own knobs (``profile.exact_*``) in place of the IMDb ones (``pref_*``, ``eval_*``,
``max_new_tokens``). ``self.profile`` is that profile; its name stays the profile's, and every run's
tag names the task, so the two tasks' runs never mix. The variants of notebook 04 change ``exact_*``
knobs (pairs, labels, offset function); the tasks of one process share pi_ref's enumeration and the
sampled pairs (``_CACHE``), since a variant that changes neither should not pay for them again.
"""

from __future__ import annotations

import numpy as np

from .. import bandits
from .. import config as _config
from ..task import Scorer, SFTPolicy, Task
from .enumeration import policy_logprobs
from .pairs import sample_pairs, with_offset
from .quantities import evaluate
from .reference import train_reference
from .space import Space, make_space
from .vocab import prompt_ids


def experiment_profile(profile: _config.Profile) -> _config.Profile:
    """``profile`` with the exact task's sizes in the knobs the sweep reads (module docstring)."""
    return profile.replace(
        pref_steps=profile.exact_pref_steps,
        pref_batch_size=profile.exact_pref_batch_size,
        pref_micro_batch_size=profile.exact_pref_batch_size,
        pref_lr=profile.exact_pref_lr,
        pref_optimizer="adamw",
        pref_warmup_steps=max(1, profile.exact_pref_steps // 20),
        pref_lr_schedule=profile.exact_lr_schedule,
        eval_every=profile.exact_eval_every,
        pref_checkpoint_every=profile.exact_eval_every,  # a run of seconds: resuming from the last evaluation is enough
        eval_samples_per_prompt=profile.exact_eval_samples,
        max_new_tokens=profile.exact_max_len,
        rm_epochs=profile.exact_rm_epochs,
        rm_lr=profile.exact_pref_lr,
        rm_heldout=profile.exact_rm_heldout,
        ppo_target_kls=profile.exact_ppo_target_kls,
        ppo_iterations=profile.exact_ppo_iterations,
        ppo_batch_size=profile.exact_ppo_batch_size,
        ppo_minibatch_size=profile.exact_ppo_batch_size // 4,
        ppo_lr=1e-3,  # measured in notebook 04: PPO-GT at 1e-3 ends at 0.05 of its start's KL to pi*
        # One rollout: with TRL's 10,000 responses beta moved 0.5% a rollout, and every target ended at KL 6-11.
        # Starting at beta = 1 (section 5's): from TRL's 0.2 PPO-GT rushed to the maximiser (KL 11) first.
        ppo_horizon=profile.exact_ppo_batch_size,
        ppo_kl_coef=1.0,
        ppo_eval_every=max(1, profile.exact_ppo_iterations // 4),
        best_of_ns=profile.exact_best_of_ns,
    )


#: Per process, by what determines them: pi_ref's enumeration and the sampled pairs. The variants of
#: one experiment (another ODPO alpha, fewer pairs) build a task each and share both.
_CACHE: dict[tuple, object] = {}


class ExactTask(Task):
    """Continue a prompt of the exact task's words; every response can be listed (module table).

    Introduced in notebook 04.
    """

    name = "exact"

    def __init__(self, profile: _config.Profile | None = None):
        super().__init__(experiment_profile(profile or _config.get_profile()))
        self.space: Space = make_space(max_len=self.profile.exact_max_len)
        self._ref_probs: np.ndarray | None = None

    def build_reference(self, progress: bool = True) -> SFTPolicy:
        ref = train_reference(self.space, steps=self.profile.exact_ref_steps, seed=self.profile.seed, progress=progress)
        return SFTPolicy(ref.model, self.space.tokenizer, ref.path, ref.run, ref.result)

    def ref_probs(self) -> np.ndarray:
        """(P, K) pi_ref(y|x) of every response, enumerated once per process (read-only)."""
        if self._ref_probs is None:
            ref = self.reference(progress=False)
            key = ("ref_probs", str(ref.path), self.space.max_len)
            if key not in _CACHE:
                probs = np.exp(policy_logprobs(ref.model, self.space))
                probs.setflags(write=False)
                _CACHE[key] = probs
            self._ref_probs = _CACHE[key]
        return self._ref_probs

    def train_prompts(self) -> list[str]:
        """The prompts, each with the space that separates it from a response: the evaluator scores
        prompt + decoded response, and the word-level tokenizer decodes "good" without a leading space
        ("the film was" + "good" would be one unknown word, worth 0)."""
        return [f"{x} " for x in self.space.prompts]

    def test_prompts(self) -> list[str]:
        return self.train_prompts()

    def prompt_ids(self, prompts: list[str], tokenizer) -> list[list[int]]:
        return prompt_ids(prompts, tokenizer)

    def preference_pairs(self, progress: bool = True) -> list[dict]:
        """``pairs.sample_pairs`` with the profile's ``exact_*`` knobs; sampled once per process (the
        list is shared: do not modify it)."""
        p = self.profile
        draws = ("pairs", str(self.reference(progress=False).path), self.space.max_len, self.space.scale)
        draws += (p.exact_pairs, p.sampling_seed, p.exact_labels)
        if draws not in _CACHE:  # drawn once; another offset function f reuses the draws
            ref = self.ref_probs()
            _CACHE[draws] = sample_pairs(self.space, ref, p.exact_pairs, seed=p.sampling_seed, labels=p.exact_labels)
        if p.exact_offset == "identity":
            return _CACHE[draws]
        if draws + (p.exact_offset,) not in _CACHE:
            _CACHE[draws + (p.exact_offset,)] = with_offset(_CACHE[draws], p.exact_offset)
        return _CACHE[draws + (p.exact_offset,)]

    def fresh_pairs(self, n: int) -> list[dict]:
        """``n`` pairs sampled like :meth:`preference_pairs` with the next seed: pi_ref's probabilities
        are known, so fresh pairs cost nothing (every pair of the task trains the DPO runs)."""
        p = self.profile
        return sample_pairs(self.space, self.ref_probs(), n, seed=p.sampling_seed + 1, labels=p.exact_labels)

    def gold_reward(self) -> Scorer:
        return Scorer(f"exact r* (scale {self.space.scale:.4g})", self.space.score)

    def second_scorer(self) -> Scorer:
        return Scorer("exact polarity", lambda texts: (np.sign(self.space.score(texts)) + 1.0) / 2.0)

    def exact_evaluation(self, policy) -> dict:
        return evaluate(policy, self.ref_probs(), self.space)

    def best_of_n_evaluation(self, n: int, reward_fn) -> dict:
        """The exact quantities of Best-of-``n`` of pi_ref under ``reward_fn(prompt_ids, response_ids)``
        (the reward model, or r* itself): every response of every prompt scored, and Best-of-n's policy
        in closed form (``bandits.best_of_n``, ties split as the sampler splits them), then evaluated
        like any policy (``quantities.evaluate``)."""
        space, ref = self.space, self.ref_probs()
        prompts = space.prompt_id_lists()
        scores = np.asarray(
            reward_fn(
                [x for x in prompts for _ in space.responses.ids],
                [list(y) for _ in prompts for y in space.responses.ids],
            ),
            dtype=np.float64,
        ).reshape(len(prompts), space.n_responses)
        return evaluate(bandits.best_of_n(scores, ref, n), ref, space)
