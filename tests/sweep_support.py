"""Shared setup of the experiment tests (tests/test_sweep.py, tests/test_rlhf.py): a tiny sweep profile,
a BPE and GPT-2 trained here, an evaluator with stand-in scorers, fake pairs and a tiny context
(``tests/conftest.py`` makes fixtures of them: ``tokenizer``, ``sft_model``, ``tiny_context``)."""

from types import SimpleNamespace

import numpy as np

from dpo_lab import config, sweep
from dpo_lab.lm import gpt2_config, load_model
from dpo_lab.sentiment import pair_offsets, train_bpe
from dpo_lab.task import Evaluator, Scorer, Task

CPU, GPU, SMOKE = (config.get_profile(n) for n in ("cpu", "gpu", "smoke"))
# A sweep small enough for a unit test: one setting per method, 2 steps, evaluated after each.
TINY = SMOKE.replace(
    dpo_betas=(0.1,),
    unlikelihood_alphas=(0.5,),
    seeds=(0,),
    pref_steps=2,
    pref_batch_size=4,
    pref_micro_batch_size=4,
    pref_warmup_steps=1,
    eval_every=1,
    max_new_tokens=4,
    n_layer=1,
    n_embd=16,
    n_head=2,
    n_positions=32,
    sweep_workers=1,
    rm_epochs=1,
    rm_heldout=4,
    ppo_target_kls=(6.0,),
    ppo_iterations=2,
    ppo_batch_size=4,
    ppo_minibatch_size=2,
    ppo_epochs=1,
    ppo_eval_every=1,
    best_of_ns=(1, 4),
)
WORDS = ["good", "bad", "film", "great", "plot", "awful", "actor", "story"]


def make_tokenizer():
    rng = np.random.default_rng(0)
    return train_bpe([" ".join(rng.choice(WORDS, 12)) for _ in range(60)], vocab_size=300)


def make_sft_model(tokenizer):
    return load_model(gpt2_config(tokenizer, **TINY.model_sizes), seed=0)


def length_score(texts):
    """A stand-in gold reward in [0, 1]: longer texts score higher."""
    return np.array([min(1.0, len(t) / 60) for t in texts])


def evaluator(sft_model, tokenizer, prompts=("good film", "the plot", "an actor")):
    ref = load_model(gpt2_config(tokenizer, **TINY.model_sizes), seed=0).eval()
    ref.load_state_dict(sft_model.state_dict())
    ids = [[tokenizer.eos_token_id] + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return Evaluator(
        ref,
        tokenizer,
        list(prompts),
        ids,
        Scorer("length", length_score),
        Scorer("g-count", lambda ts: np.array([min(1.0, t.count("g") / 3) for t in ts])),
        num_samples=2,
        max_new_tokens=TINY.max_new_tokens,
        seed=0,
    )


def fake_pairs(tokenizer, n=12):
    eos = tokenizer.eos_token_id
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):

        def ids():
            return tokenizer(" ".join(rng.choice(WORDS, 3)), add_special_tokens=False)["input_ids"] + [eos]

        out.append(
            {
                "prompt_ids": [eos] + tokenizer("good film", add_special_tokens=False)["input_ids"],
                "chosen_ids": ids(),
                "rejected_ids": ids(),
                "score_chosen": 0.9 - i / 100,
                "score_rejected": 0.2 + i / 100,
                "offset": float(pair_offsets([0.9 - i / 100], [0.2 + i / 100])[0]),
            }
        )
    return out


class PairsTask(Task):
    """Just what the RLHF baselines ask of a task beyond the context: its pairs (some never trained
    on, for the reward model's held-out set) and no exact evaluation."""

    name = "pairs"

    def __init__(self, pairs):
        super().__init__(TINY)
        self.pairs = pairs

    def preference_pairs(self, progress=True):
        return self.pairs

    build_reference = train_prompts = test_prompts = prompt_ids = gold_reward = second_scorer = None


def make_tiny_context(sft_model, tokenizer):
    pairs = fake_pairs(tokenizer)
    sft = SimpleNamespace(model=sft_model, tokenizer=tokenizer, run=SimpleNamespace(id="sft-test"))
    ev = evaluator(sft_model, tokenizer)
    return sweep.Context(
        TINY,
        sft,
        ev.ref,
        sweep.training_pairs(pairs, TINY),
        sweep.training_pairs(pairs, TINY, odpo=True),
        ev,
        source=PairsTask(pairs),
        train_prompts=["good film", "the plot"],
        train_prompt_ids=ev.prompt_ids[:2],
    )
