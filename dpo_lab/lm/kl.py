"""Sequence-level KL(pi || pi_ref), estimated on samples from pi: the x-axis of the reward-KL frontier.

Introduced in notebook 06. The KL-constrained objective (DPO paper Eq. 3) penalises

    KL(pi || pi_ref)(x) = E_{y ~ pi(.|x)} [ log pi(y|x) - log pi_ref(y|x) ],

a sum over every possible response, so it is estimated from S samples y^(s) ~ pi(.|x) per prompt
(plain ancestral sampling: docs/background.md 2.7). Two unbiased estimators (docs/background.md 3), per sample:

* ``logratio``: sum over response tokens of ``log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)``.
  Its mean is the KL; a single sample can be negative.
* ``exact``: sum over the same sampled positions of the exact per-token KL over the vocabulary,
  ``sum_v pi(v | x, y_<t) (log pi(v | x, y_<t) - log pi_ref(v | x, y_<t))``. By the chain rule its
  expectation is the same sequence KL, each term is >= 0, and its variance is much lower.

Responses are scored exactly as sampled (EOS only where it was emitted), so the KL is between the
distributions of responses capped at ``max_new_tokens``: the quantity that exact enumeration of a
tiny model reproduces.

=============  =====  ================================================================
array          shape  meaning
=============  =====  ================================================================
logratio       (N,)   per-sample summed log-ratio, N = prompts * num_samples
exact          (N,)   per-sample summed exact per-token KL
*_mean         float  mean over the N samples (the KL averaged over the prompts)
*_se           float  standard error std(ddof=1) / sqrt(N), treating samples as independent
=============  =====  ================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .logprobs import eos_id_of, pack_pairs, packing_capacity, per_sequence, prepare_pairs, response_logits, vocab_size
from .model import model_device
from .sampling import Samples, sample

# Largest (n, V) float32 log-softmax sequence_kl builds per model and batch (2**25 floats = 128 MB).
_MAX_ELEMENTS = 2**25


@dataclass
class KLEstimate:
    """Both KL estimators on one set of samples (module docstring), plus the samples themselves so
    rewards can be scored on exactly the responses the KL was measured on."""

    samples: Samples
    logratio: np.ndarray
    exact: np.ndarray

    @staticmethod
    def _se(values: np.ndarray) -> float:
        return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")

    @property
    def logratio_mean(self) -> float:
        return float(self.logratio.mean())

    @property
    def logratio_se(self) -> float:
        return self._se(self.logratio)

    @property
    def exact_mean(self) -> float:
        return float(self.exact.mean())

    @property
    def exact_se(self) -> float:
        return self._se(self.exact)

    def summary(self) -> dict[str, float]:
        """The four numbers, JSON-ready (for ``run.log``)."""
        return {
            "kl/logratio": self.logratio_mean,
            "kl/logratio_se": self.logratio_se,
            "kl/exact": self.exact_mean,
            "kl/exact_se": self.exact_se,
        }


def sequence_kl(policy, ref, prompt_ids, response_ids, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-response ``(logratio, exact)`` KL terms, each a float64 CPU tensor of shape (N,).

    Responses are scored as given (``add_eos=False``): pass sampled responses, which carry their EOS
    only where it was emitted. Both models see identical packed batches of at most ``batch_size``
    sequences, cut further so that one (n, V) float32 log-softmax stays under ``_MAX_ELEMENTS``
    (128 MB): both models' log-softmaxes of a batch are held at once.

    Raises ``ValueError`` when the models' vocabularies differ, and for the bad inputs of
    :func:`dpo_lab.lm.logprobs.prepare_pairs`.

    Introduced in notebook 06.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if vocab_size(policy) != vocab_size(ref):
        raise ValueError(
            f"policy has a vocabulary of {vocab_size(policy)} tokens but ref has "
            f"{vocab_size(ref)}; the KL needs one tokenizer"
        )
    prompts, responses = prepare_pairs(policy, prompt_ids, response_ids, add_eos=False)
    prepare_pairs(ref, prompts, responses, add_eos=False)  # ref's context may be shorter
    eos = eos_id_of(policy)
    capacities = (packing_capacity(policy), packing_capacity(ref))
    capacity = None if None in capacities else min(capacities)  # one packing both models handle
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
    batches, rows, tokens, n_vocab = [], [], 0, vocab_size(policy)
    for i in order:
        if rows and (len(rows) == batch_size or (tokens + len(responses[i])) * n_vocab > _MAX_ELEMENTS):
            batches.append(rows)
            rows, tokens = [], 0
        rows.append(i)
        tokens += len(responses[i])
    batches.append(rows)
    logratio = torch.zeros(len(prompts), dtype=torch.float64)
    exact = torch.zeros(len(prompts), dtype=torch.float64)
    modes = policy.training, ref.training
    policy.eval()
    ref.eval()
    try:
        with torch.no_grad():
            for rows in batches:
                batch = pack_pairs(
                    [prompts[i] for i in rows], [responses[i] for i in rows], eos, capacity, model_device(policy)
                )
                logp = response_logits(policy, batch).log_softmax(dim=-1)
                logq = response_logits(ref, batch.to(model_device(ref))).to(logp.device).log_softmax(dim=-1)
                diff = logp - logq
                picked = diff.gather(1, batch.targets[:, None]).squeeze(1)
                # in place: logp is not needed again. KL >= 0; a float32 sum over the vocabulary can land at -1e-7
                # when pi ~ pi_ref, which the clamp removes (it changes nothing above rounding)
                per_token_kl = (logp.exp_() * diff).sum(dim=-1).clamp_(min=0.0)
                logratio[rows] = per_sequence(picked, batch).sum(dim=1).double().cpu()
                exact[rows] = per_sequence(per_token_kl, batch).sum(dim=1).double().cpu()
    finally:
        policy.train(modes[0])
        ref.train(modes[1])
    return logratio, exact


def estimate_kl(
    policy, ref, prompt_ids, num_samples: int, max_new_tokens: int, seed: int, batch_size: int = 64, tokenizer=None
) -> KLEstimate:
    """Sample ``num_samples`` responses per prompt from ``policy`` (plain ancestral sampling) and
    estimate KL(policy || ref) with both estimators of the module docstring.

    ``prompt_ids``: lists of token ids (or strings, with ``tokenizer``). ``tokenizer`` only decodes
    the sampled texts (``result.samples.texts``) for scoring rewards on the same responses.
    ``batch_size`` caps the rows of the sampling batches. Both estimators are read off the logits the
    sampler drew each token from, ``ref`` stepping along on the same tokens (``lm.sample(..., ref=)``):
    the same numbers as :func:`sequence_kl` on the samples (tested to 1e-4), without a second pass of
    the policy over them.

    Introduced in notebook 06.
    """
    if vocab_size(policy) != vocab_size(ref):
        raise ValueError(
            f"policy has a vocabulary of {vocab_size(policy)} tokens but ref has "
            f"{vocab_size(ref)}; the KL needs one tokenizer"
        )
    samples = sample(policy, tokenizer, prompt_ids, num_samples, max_new_tokens, seed, batch_size=batch_size, ref=ref)
    return KLEstimate(samples, samples.kl_logratio, samples.kl_exact)
