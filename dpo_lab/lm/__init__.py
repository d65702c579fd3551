"""The language-model engine of dpo_lab: tokenizer and model loading, exact sequence log-probs,
sampling, KL estimation and one resumable SFT / preference trainer.

Introduced in notebook 04. It knows no task (nothing here imports ``dpo_lab.sentiment``): it takes
token ids and returns numbers. One file per concern:

==============  ==============================================================================
module          public names
==============  ==============================================================================
tokenizer       ``load_tokenizer(name_or_path=None)``: GPT-2 BPE offline, or a saved folder
model           ``gpt2_config(tokenizer, profile)``, ``load_model(name_or_path_or_config)``,
                ``save_model(model, tokenizer, path)``, ``torch_threads(n)``; device/precision policy
logprobs        ``sequence_logprobs(model, prompt_ids, response_ids, ...)`` -> (N,)
sampling        ``sample(model, tokenizer, prompts, num_samples, max_new_tokens, seed, ...)``
                -> ``Samples`` (prompt ids, response ids with EOS when emitted, texts)
kl              ``estimate_kl(policy, ref, prompt_ids, num_samples, max_new_tokens, seed)``
                -> ``KLEstimate`` (summed log-ratio and exact per-token KL, with standard errors);
                ``sequence_kl`` for responses you already have
train           ``train_sft(model, sequences, ...)``, ``train_preferences(policy, ref, pairs, loss=...)``
                -> ``TrainResult`` (policy, run, result); one resumable loop, runs in ``dpo_lab.runs``
==============  ==============================================================================

Conventions: EOS = pad (GPT-2's ``<|endoftext|>``, id 50256); prompts and responses are tokenized
separately (``tokenizer(texts, add_special_tokens=False)["input_ids"]``) and passed as lists of
token-id lists; CUDA uses bf16 autocast, the CPU float32.

Typical use (notebooks 04-05)::

    tokenizer = load_tokenizer()                                  # GPT-2 BPE, offline
    model = load_model(gpt2_config(tokenizer), seed=0)            # a fresh GPT-2 of the profile's size
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
from .sampling import Samples, sample
from .tokenizer import load_tokenizer
from .train import TrainResult, train_preferences, train_sft

__all__ = ["load_tokenizer", "gpt2_config", "load_model", "save_model", "torch_threads", "sequence_logprobs",
           "TokenLogprobs", "sample", "Samples",
           "estimate_kl", "sequence_kl", "KLEstimate",
           "train_sft", "train_preferences", "TrainResult"]
