"""Hub-shaped stand-ins for the gpu profile's three hub assets, built in a temporary folder (no hub is reachable):

===============  ======================================================  ============================================
gpu asset        stand-in                                                shaped like the hub's in
===============  ======================================================  ============================================
gpt2-large       a 2-layer GPT-2 saved with ``save_pretrained``          the real GPT-2 BPE (50,257 tokens, EOS 50256),
                 (weights and tokenizer in one folder)                   ``n_positions`` 1024, a GPT2LMHeadModel folder
siebert/         a 1-layer RoBERTa sequence classifier with its own      labels ``{0: NEGATIVE, 1: POSITIVE}`` as in
sentiment-       byte-level BPE (RoBERTa's special tokens and ids)       siebert's config; a text-classification
roberta-large-                                                           pipeline loads it by path
english
stanfordnlp/     bundled IMDb reviews written as the dataset              a clone of the hub repository: README.md with
imdb             repository's parquet files                               its configs, ``plain_text/{split}-00000-of-
                                                                         00001.parquet``, columns text and label,
                                                                         splits train, test, unsupervised (label -1)
===============  ======================================================  ============================================

:func:`write_overrides` points the gpu profile at them through ``DPO_LAB_OVERRIDES`` (the file README's "On a GPU"
shows for local mirrors of the hub), with tiny sizes; every other knob keeps the gpu profile's value.
"""

import json
from pathlib import Path

import numpy as np

# The gpu profile's knobs that only size the work: tiny here, so that notebooks 05-07 run in seconds. Everything
# else (the optimiser, warmup, micro-batching, one SFT epoch, 4 evaluation samples per prompt, no cell timeout, the
# hub assets' code paths) stays the gpu profile's.
TINY_SIZES = {
    "n_positions": 32,  # training windows of 32 tokens (the stand-in model's context is 1024, like gpt2-large's)
    "sft_reviews": 6,  # one epoch (sft_steps 0, the gpu value) over the windows of 6 reviews
    "sft_batch_size": 8,
    "sft_micro_batch_size": 4,  # two micro-batches per step: gradient accumulation, as on the GPU
    "n_prompts": 8,
    "n_test_prompts": 4,
    "max_new_tokens": 6,
    "pref_batch_size": 8,
    "pref_micro_batch_size": 4,
    "pref_steps": 4,
    "pref_warmup_steps": 2,
    "eval_every": 2,
    "pref_checkpoint_every": 2,
    "dpo_betas": [0.1],
    "unlikelihood_alphas": [1.0],
    "seeds": [0],
    "rm_epochs": 1,
    "rm_heldout": 8,
    "ppo_target_kls": [6.0],
    "ppo_iterations": 2,
    "ppo_batch_size": 8,
    "ppo_minibatch_size": 4,
    "ppo_epochs": 1,
    "ppo_horizon": 16,
    "ppo_eval_every": 1,
    "ppo_checkpoint_every": 1,
    "best_of_ns": [1, 2],
    "standin_assets": True,  # the notebooks skip the claims that only trained assets make true
}

HUB_README = """---
configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: test
    path: plain_text/test-*
  - split: unsupervised
    path: plain_text/unsupervised-*
  default: true
---
# IMDb (a stand-in written by tests/hub_standins.py)
"""


def write_policy(dest: Path) -> Path:
    """A 2-layer GPT-2 with gpt2-large's tokenizer and context, saved like a hub model folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from dpo_lab import lm

    tokenizer = lm.load_tokenizer()  # the real GPT-2 BPE, offline
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=2,
        n_embd=32,
        n_head=2,
        n_positions=1024,
        bos_token_id=50256,
        eos_token_id=50256,
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def write_classifier(dest: Path) -> Path:
    """A 1-layer RoBERTa sentiment classifier labelled like siebert's, with its own byte-level BPE tokenizer
    (RoBERTa's specials first: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> 4), trained on a few reviews."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizerFast

    from dpo_lab.sentiment import bundled_reviews

    dest.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(bundled_reviews().texts[:300], vocab_size=600, special_tokens=specials, show_progress=False)
    bpe.save_model(str(dest))
    tokenizer = RobertaTokenizerFast(
        vocab=str(dest / "vocab.json"), merges=str(dest / "merges.txt"), model_max_length=128
    )
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=130,  # RoBERTa's positions start after the padding id: 128 tokens + 2
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    torch.manual_seed(0)
    RobertaForSequenceClassification(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def write_imdb(dest: Path, per_split: dict | None = None) -> Path:
    """Bundled IMDb reviews as a clone of the hub's dataset repository (module table). ``per_split``: reviews per
    split, default 700 / 500 / 200 (enough for the tiny sizes' test prompts: the test part is 4% of the reviews)."""
    import datasets

    from dpo_lab.sentiment import bundled_reviews

    per_split = per_split or {"train": 700, "test": 500, "unsupervised": 200}
    reviews = bundled_reviews()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(reviews))
    labelled = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    unlabelled = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
    (dest / "plain_text").mkdir(parents=True, exist_ok=True)
    start = 0
    for split, n in per_split.items():
        index = order[start : start + n]
        start += n
        texts = [reviews.texts[i] for i in index]
        if split == "unsupervised":
            data = datasets.Dataset.from_dict({"text": texts, "label": [-1] * n}, features=unlabelled)
        else:
            data = datasets.Dataset.from_dict(
                {"text": texts, "label": reviews.labels[index].tolist()}, features=labelled
            )
        data.to_parquet(str(dest / "plain_text" / f"{split}-00000-of-00001.parquet"))
    (dest / "README.md").write_text(HUB_README, encoding="utf-8")
    return dest


def write_standins(root: Path) -> dict:
    """All three stand-ins under ``root``; returns the gpu profile's asset knobs pointing at them."""
    policy = write_policy(root / "gpt2-large")
    return {
        "model_name": str(policy),
        "tokenizer_name": str(policy),
        "gold_reward_name": str(write_classifier(root / "sentiment-roberta-large-english")),
        "dataset_name": str(write_imdb(root / "imdb")),
    }


def write_overrides(root: Path, profile: str = "gpu") -> Path:
    """The ``DPO_LAB_OVERRIDES`` file: ``profile`` pointed at the stand-ins, with :data:`TINY_SIZES`."""
    path = root / "overrides.json"
    path.write_text(json.dumps({profile: {**write_standins(root), **TINY_SIZES}}, indent=1), encoding="utf-8")
    return path
