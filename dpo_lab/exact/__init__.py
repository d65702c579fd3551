"""The exact task: a language-model task small enough to enumerate, run by the IMDb task's engine.

Introduced in notebook 04, between the bandits (03) and IMDb (05-07). The same engine as the
IMDb task (``dpo_lab.lm``: ``gpt2_config``, ``load_model``, ``sequence_logprobs``, ``sample``,
``train_sft``, ``train_preferences``) on a task whose every response can be listed, so that
KL(pi || pi_ref), E_pi[r*], the optimum pi*_beta (DPO Eq. 4) and the reward-KL frontier are computed
exactly instead of estimated from samples.

* 10 real words plus EOS (:data:`WORDS`), 4 prompts (:data:`PROMPTS`: "the film was", "the movie
  is", "the movie was not", "the film is not"), responses of at most L = 3 words: K = 1,111 per
  prompt (k words then EOS for k < 3, or 3 words cut by the cap, exactly as ``lm.sample`` returns them).
* the gold reward (:mod:`.reward`): r*(x, y) = the sum of word values (good +1, great +2, bad -1,
  dull -1, the sign flipped after "not") over prompt + response, in [-6, 6]; repetition keeps paying,
  so "great great great" is the maximiser: the gameable part.
* pi_ref (:mod:`.reference`): a 2-layer x 32 GPT-2 (26,848 weights) trained by ``lm.train_sft`` on
  sentences of a Markov chain over the words, stored in the run store.
* the prompts are contexts and the responses arms of a ``dpo_lab.bandits`` bandit; every exact
  quantity is a bandit function on (P, K) arrays (:mod:`.quantities`).

==============  ============================================================================
module          public names
==============  ============================================================================
vocab           ``WORDS``, ``PROMPTS``, ``EOS``, ``build_tokenizer(words)``, ``prompt_ids(prompts, tok)``
responses       ``enumerate_responses(n_words, max_len)`` -> ``Responses``, ``MAX_RESPONSES`` (100,000)
reward          ``WORD_VALUES``, ``gold_reward(prompts, words, responses)``, ``score_texts(texts)``
space           ``make_space(words, prompts, max_len, values, scale)`` -> ``Space``
enumeration     ``policy_logprobs(model, space, tree)`` -> (P, K), ``as_probs``, ``softmax_policy``
quantities      ``exact_kl``, ``expected_reward``, ``optimal_policy``, ``log_partition``,
                ``reward_from_policy``, ``frontier``, ``frontier_reward``, ``frontier_gap``, ``evaluate``
reference       ``train_reference(space, ...)`` -> ``ReferencePolicy``, ``chain_probs``, ``sentences``
pairs           ``sample_pairs(space, ref, n, seed, labels, offset)``, ``with_offset``, ``trainer_pairs``
task            ``ExactTask``: all of the above as the ``dpo_lab.task.Task`` that ``dpo_lab.sweep``
                runs (``python -m dpo_lab.sweep --task exact``), with exact evaluations
==============  ============================================================================

==============  ========  =====================================================================
name            shape     meaning
==============  ========  =====================================================================
``logps``       (P, K)    log pi(y_k | x_p) of every response of every prompt, float64
``probs``       (P, K)    pi(y_k | x_p); every policy argument takes this or a model
``reward``      (P, K)    r*(x_p, y_k) (``space.reward``)
``kl``          (P,)      KL(pi(.|x) || pi_ref(.|x)) over whole responses, nats
==============  ========  =====================================================================

Typical use::

    space = make_space()                                       # V = 10, L = 3, P = 4, K = 1,111
    with lm.torch_threads(1):                                # see the timings below
        ref = train_reference(space)                         # pi_ref, stored; later calls load it
        ref_probs = np.exp(policy_logprobs(ref.model, space)) # (4, 1111), enumerate once
    kls, rewards = frontier(ref_probs, space, [0.05, 0.1, 1, 5])
    pairs = sample_pairs(space, ref_probs, n=2000, seed=0)    # Bradley-Terry labels on r*
    policy = lm.train_preferences(lm.load_model(ref.path), lm.load_model(ref.path), trainer_pairs(pairs),
                                  beta=0.1, steps=100, batch_size=32, lr=1e-3, add_eos=False,
                                  eval_fn=lambda pi, step: evaluate(pi, ref_probs, space)).policy
    evaluate(policy, ref_probs, space)["eval/enum_frontier_gap"]   # <= 1e-12: theorem (F)

Measured (torch 2.13 CPU, one thread, on this project's shared 2-core machine; default arguments):

* ``train_reference``: 4.5 s (300 steps x 64 sentences, lr 3e-3); final train loss 0.917 per token.
* ``policy_logprobs``: 0.03 s per policy from the prefix tree (400 sequences), 0.33 s with ``tree=False``
  (4,444 sequences through ``sequence_logprobs``). With two threads while other jobs used the cores the
  per-response path took 0.8-4.5 s (and training 31 s instead of 4.5): use one.
* ``evaluate`` of a (P, K) policy: 17 ms; ``sample_pairs``: 0.2 s for 2,000 pairs.
* pi_ref has structure: KL(pi_ref || uniform) = 3.33, 3.36, 3.75, 3.78 nats for the 4 prompts (log K =
  7.01); KL(chain || pi_ref) = 0.40, 0.47, 0.07, 0.07 (the tiny model partly conflates "the film was"
  with "the movie was not", so it says "not" too often after the first two prompts).
* The exact frontier of that pi_ref (mean over prompts; E_ref[r*] = -0.191, max r* = 5.5: 6 after
  the first two prompts, 5 after the two with "not"). With the reward unscaled (c = 1, :mod:`.reward`
  says why) the DPO paper's beta grid runs from the maximiser to near pi_ref:

  =====  ========  ========  ================================================
  beta   KL        E[r*]     pi*_beta
  =====  ========  ========  ================================================
  0.05   11.55     5.500     the maximiser of each prompt (1.00 of the mass)
  0.1    11.55     5.500     the same
  1      0.571     1.001
  5      0.0259    0.068
  =====  ========  ========  ================================================

  A Bradley-Terry label of two pi_ref samples with different r* follows r*'s order with probability
  0.834 (c = 1/2: 0.703, c = 1/6: 0.573). Only r* / beta matters for the optimum: scale c at beta is
  scale 1 at beta / c.
"""

from .enumeration import SUM_ATOL, as_probs, check_probs, policy_logprobs, softmax_policy
from .pairs import LABELS, OFFSETS, pair_arrays, sample_pairs, trainer_pairs, with_offset
from .quantities import (
    check_beta,
    evaluate,
    exact_kl,
    expected_reward,
    frontier,
    frontier_bound,
    frontier_gap,
    frontier_reward,
    log_partition,
    optimal_policy,
    reward_from_policy,
)
from .reference import CHAIN, ReferencePolicy, chain_probs, sentences, train_reference, transitions
from .responses import MAX_RESPONSES, Responses, count_responses, enumerate_responses
from .reward import DEFAULT_SCALE, NEGATOR, WORD_VALUES, gold_reward, score_texts
from .space import DEFAULT_MAX_LEN, Space, check_space, make_space
from .task import ExactTask, experiment_profile
from .vocab import EOS, PROMPTS, WORDS, build_tokenizer, prompt_ids

__all__ = [
    "EOS",
    "WORDS",
    "PROMPTS",
    "build_tokenizer",
    "prompt_ids",
    "MAX_RESPONSES",
    "Responses",
    "count_responses",
    "enumerate_responses",
    "WORD_VALUES",
    "DEFAULT_SCALE",
    "NEGATOR",
    "gold_reward",
    "score_texts",
    "DEFAULT_MAX_LEN",
    "Space",
    "make_space",
    "check_space",
    "ExactTask",
    "experiment_profile",
    "SUM_ATOL",
    "policy_logprobs",
    "as_probs",
    "check_probs",
    "softmax_policy",
    "check_beta",
    "exact_kl",
    "expected_reward",
    "optimal_policy",
    "log_partition",
    "reward_from_policy",
    "frontier",
    "frontier_bound",
    "frontier_reward",
    "frontier_gap",
    "evaluate",
    "CHAIN",
    "transitions",
    "chain_probs",
    "sentences",
    "ReferencePolicy",
    "train_reference",
    "LABELS",
    "OFFSETS",
    "sample_pairs",
    "trainer_pairs",
    "with_offset",
    "pair_arrays",
]
