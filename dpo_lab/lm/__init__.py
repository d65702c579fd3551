"""The language-model engine of dpo_lab: tokenizer and model loading, exact sequence log-probs,
sampling, KL estimation and one resumable SFT / preference trainer.

Introduced in notebook 05. It knows no task and reads no profile (``pyproject.toml``'s import
contracts hold it to that): it takes token ids and sizes, and returns numbers. One file per concern:

==============  ==============================================================================
module          public names
==============  ==============================================================================
tokenizer       ``load_tokenizer(name_or_path=None)``: GPT-2 BPE offline, or a saved folder
model           ``gpt2_config(tokenizer, n_layer, n_embd, n_head, n_positions)``,
                ``load_model(name_or_path_or_config)``, ``save_model(model, tokenizer, path)``,
                ``torch_threads(n)``; the device/precision policy
logprobs        ``sequence_logprobs(model, prompt_ids, response_ids, ...)`` -> (N,)
sampling        ``sample(model, tokenizer, prompts, num_samples, max_new_tokens, seed, ...)``
                -> ``Samples`` (prompt ids, response ids with EOS when emitted, texts)
kl              ``estimate_kl(policy, ref, prompt_ids, num_samples, max_new_tokens, seed)``
                -> ``KLEstimate`` (summed log-ratio and exact per-token KL, with standard errors);
                ``sequence_kl`` for responses you already have
train           ``train_sft(model, sequences, ...)`` -> ``TrainResult`` (policy, run, result); the
                one resumable loop every trainer shares, runs in ``dpo_lab.runs``
preference_     ``train_preferences(policy, ref, pairs, loss=...)`` -> ``TrainResult``: DPO and
training        its family on that loop, reference log-probs computed once
reward_model    RLHF stage 1 (Eq. 2): ``RewardModel``, ``train_reward_model``, ``reward_scores``,
                ``calibration`` (notebook 04, section 9; the sweep's through ``dpo_lab.rlhf``);
                ``implicit_rewards(policy, ref, pairs)``, DPO's reward model read off a policy
ppo,            RLHF stage 2 (Eq. 3): PPO's per-token pieces, and ``train_ppo(policy, ref, prompt_ids,
ppo_training    reward_fn, ...)`` on the same loop (the sweep's PPO and PPO-GT, ``dpo_lab.rlhf``)
best_of_n       ``best_of_n(policy, prompt_ids, n, reward_fn, ...)``: n samples per prompt, the best kept;
                ``select_best(scores, seed)``, the choice alone
memory          ``memory_plan(...)``: a run's device memory from sizes and ``measure(...)``, the bytes autograd
                saves per token and layer on the trainers' forward (notebook 06's plan cell)
distributed     one run over several processes under ``torchrun``: ``init()``, a step's share of pairs per
                rank, gradients and metrics reduced over the ranks (README, "Several GPUs or machines")
==============  ==============================================================================

Conventions: EOS = pad (GPT-2's ``<|endoftext|>``, id 50256); prompts and responses are tokenized
separately (``tokenizer(texts, add_special_tokens=False)["input_ids"]``) and passed as lists of
token-id lists; CUDA uses bf16 autocast, the CPU float32.

Typical use (notebooks 05-06)::

    tokenizer = load_tokenizer()                                  # GPT-2 BPE, offline
    model = load_model(gpt2_config(tokenizer, 4, 256, 4, 128), seed=0)  # a fresh 4 x 256 GPT-2
    sft_run = train_sft(model, sequences, steps=600, batch_size=16, lr=1e-3, tokenizer=tokenizer)
    samples = sample(sft_run.policy, tokenizer, prompt_ids, num_samples=4, max_new_tokens=48, seed=0)
    ref = load_model(sft_run.run.artifact("model"))               # pi_ref: a separate, frozen copy
    policy = train_preferences(sft_run.policy, ref, pairs, loss="dpo", beta=0.1, steps=120,
                               batch_size=32, lr=1e-4).policy
    kl = estimate_kl(policy, ref, test_prompt_ids, num_samples=1, max_new_tokens=48, seed=0)
    kl.exact_mean, kl.exact_se, kl.samples.texts                  # KL and the texts to score
"""

from .kl import KLEstimate, estimate_kl, sequence_kl
from .logprobs import TokenLogprobs, sequence_logprobs
from .model import gpt2_config, load_model, save_model, torch_threads
from .preference_training import train_preferences
from .sampling import Samples, sample
from .tokenizer import load_tokenizer
from .train import TrainResult, train_sft

__all__ = [
    "load_tokenizer",
    "gpt2_config",
    "load_model",
    "save_model",
    "torch_threads",
    "sequence_logprobs",
    "TokenLogprobs",
    "sample",
    "Samples",
    "estimate_kl",
    "sequence_kl",
    "KLEstimate",
    "train_sft",
    "train_preferences",
    "TrainResult",
]
