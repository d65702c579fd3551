"""The language-model engine of dpo_lab: tokenizer and model loading, exact sequence log-probs,
sampling, KL estimation and one resumable SFT / preference trainer.

Introduced in notebook 04. It knows no task (nothing here imports ``dpo_lab.sentiment``): it takes
token ids and returns numbers. One file per concern:

==============  ==============================================================================
module          public names
==============  ==============================================================================
tokenizer       ``load_tokenizer(name_or_path=None)``: GPT-2 BPE offline, or a saved folder
model           ``gpt2_config(tokenizer, profile)``, ``load_model(name_or_path_or_config)``,
                ``save_model(model, tokenizer, path)``; device/precision policy
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
"""
from .kl import KLEstimate, estimate_kl, sequence_kl
from .logprobs import TokenLogprobs, sequence_logprobs
from .model import gpt2_config, load_model, save_model
from .sampling import Samples, sample
from .tokenizer import load_tokenizer
from .train import TrainResult, train_preferences, train_sft

__all__ = ["load_tokenizer", "gpt2_config", "load_model", "save_model", "sequence_logprobs",
           "TokenLogprobs", "sample", "Samples",
           "estimate_kl", "sequence_kl", "KLEstimate",
           "train_sft", "train_preferences", "TrainResult"]
