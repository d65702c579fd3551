"""Profiles: every size knob of the package in one frozen dataclass.

Introduced in notebook 00. One profile is active at a time, chosen by the environment variable
``DPO_LAB_PROFILE``:

========  =====================================================================================
smoke     CI: tiny models and datasets; proves the machinery in seconds to minutes per notebook.
cpu       the default: a faithful small replica that a 2-core laptop finishes in well under an hour.
gpu       paper scale (DPO paper Sec. 6.1, App. B, C.1): gpt2-large, IMDb from the dataset hub,
          the siebert sentiment classifier as gold reward.
gpu-small the same on a 16 GB GPU (a free notebook GPU): gpt2, 500 steps per run, 5,000 prompts.
========  =====================================================================================

The gpu profile is the cpu code path with other sizes and asset names, never a separate
implementation: nothing outside this file branches on the profile's name. ``DPO_LAB_OVERRIDES`` names a
JSON file of knob overrides per profile (:func:`load_overrides`), e.g. local paths for the hub's assets.

Every figure and every number the notebooks produce is labelled with ``profile.name``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "DPO_LAB_PROFILE"
RESULTS_ENV_VAR = "DPO_LAB_RESULTS"
#: A JSON file of knob overrides per profile, ``{"gpu": {"model_name": "/mirror/gpt2-large", ...}}``: how a
#: machine with local copies of the hub's assets (or other sizes) runs a profile without editing this file.
OVERRIDES_ENV_VAR = "DPO_LAB_OVERRIDES"
DEFAULT_PROFILE = "cpu"


@dataclass(frozen=True)
class Profile:
    """Every size knob, grouped by the notebooks that use it.

    Sizes only: code paths never depend on the profile (README, "Layout").
    """

    name: str
    description: str
    seed: int = 0
    data_seed: int | None = None  # what is drawn from pi_SFT and pi_ref (pairs, subsets, evaluation); None = seed

    # --- notebooks 01-03: toy bandits -------------------------------------------------------
    bandit_trials: int = 20  # random bandits on which closed forms are checked
    mc_samples: int = 200_000  # Monte Carlo draws for the Plackett-Luce / Gumbel checks
    bandit_dataset_sizes: tuple[int, ...] = (100, 1_000, 10_000, 100_000)  # preferences, nb 03
    bandit_train_steps: int = 1_000  # full-batch Adam steps per bandit fit, nb 03
    bandit_betas: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)  # beta sweep of the loss family, nb 03
    bandit_ranked_prompts: int = 500  # prompts x 4 responses ranked by reward (6 pairs each), nb 03

    # --- language model (notebooks 05-06) ---------------------------------------------------
    model_name: str | None = None  # hub name or local path; None = a fresh GPT-2 of the sizes below
    tokenizer_name: str | None = None  # None = offline GPT-2 BPE (lm.load_tokenizer)
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_positions: int = 128

    # --- notebook 04: the exact task (dpo_lab.exact; enumerable; it runs the sweep with these sizes)
    exact_max_len: int = 3  # L: responses of at most 3 words, 1,111 per prompt
    exact_ref_steps: int = 300  # SFT steps of its tiny pi_ref
    exact_pairs: int = 20_000  # preference pairs sampled from pi_ref
    exact_labels: str = "bt"  # "bt": Bradley-Terry on r*; "order": by r*'s order
    exact_offset: str = "identity"  # ODPO's f: "identity" or "log" (the ODPO paper's; needs "order" labels)
    exact_pref_steps: int = 600  # 20,000 pairs seen about twice; 400 steps left DPO at 9.8% of its start (nb 04)
    exact_pref_batch_size: int = 64
    exact_pref_lr: float = 3e-3
    exact_lr_schedule: str = "cosine"  # decayed to 0: a constant 3e-3 left a noise floor (KL ratio 0.10 at 100k pairs)
    exact_eval_every: int = 100
    exact_eval_samples: int = 64  # sampled responses per prompt for the estimators
    exact_rm_epochs: int = 2  # its reward model: passes over the DPO runs' pairs (64 per step, as DPO)
    exact_rm_heldout: int = 2_000  # fresh pairs it is evaluated on after every epoch
    exact_ppo_target_kls: tuple[float, ...] = (0.5, 1.5, 4.0, 8.0)  # the PPO grid, spanning DPO's KL range there
    exact_ppo_iterations: int = 20  # PPO rollouts there, of exact_ppo_batch_size responses each
    exact_ppo_batch_size: int = 256
    exact_best_of_ns: tuple[int, ...] = (1, 4, 16, 64)

    # --- notebook 05: the IMDb task ---------------------------------------------------------
    dataset_name: str | None = None  # "stanfordnlp/imdb" from the hub; None = bundled reviews
    gold_reward_name: str | None = None  # hub classifier; None = the offline classifier
    gold_reward_reviews: int = 0  # reviews of the "reward" part the offline classifier trains on; 0 = all
    standin_assets: bool = False  # True: the hub assets are untrained stand-ins (tests/hub_standins.py), so
    # notebooks 05-07 skip the claims only real assets make true (a classifier's accuracy, a policy's progress)
    sft_steps: int = 600
    sft_batch_size: int = 16
    sft_lr: float = 1e-3
    sft_bpe_vocab: int = 8192  # policy tokenizer: a BPE of this size trained on the reviews; 0 = tokenizer_name's
    sft_micro_batch_size: int = 0  # windows per forward (gradient accumulation); 0 = sft_batch_size
    sft_reviews: int = 0  # reviews of the "sft" part used for the BPE and SFT; 0 = all
    sft_release: str | None = None  # a released pi_SFT under data/ to load instead of training (sentiment.release)
    n_prompts: int = 2_000  # prompts used to build preference pairs
    samples_per_prompt: int = 4  # completions per prompt -> all 6 pairs (paper: 4)
    sample_threads: int = 1  # torch threads while sampling the pairs (1 is 3-5x faster on shared 2 cores); 0 = default
    max_new_tokens: int = 48
    n_test_prompts: int = 256  # held-out prompts for evaluation

    # --- notebook 06: preference training sweep ---------------------------------------------
    pref_optimizer: str = "adamw"  # paper: "rmsprop"
    pref_lr: float = 2e-4  # paper: 1e-6; at cpu scale 1e-4 moves the reward gently, 3e-4 hacks (docs/background.md 6)
    pref_warmup_steps: int = 10  # paper: 150
    pref_lr_schedule: str = "constant"  # after warmup (paper: constant); "cosine" decays to 0 by the last step
    pref_batch_size: int = 16  # pairs per optimiser step (paper: 64); 2 x 16-pair runs fit 2 cores
    pref_steps: int = 100  # 16 preference runs x 100 steps on 2 workers: about 20 of the cpu sweep's 37 minutes
    eval_every: int = 25  # paper: every 100 steps
    pref_checkpoint_every: int = 50  # steps between the checkpoints a killed run resumes from
    eval_samples_per_prompt: int = 1
    dpo_betas: tuple[float, ...] = (0.05, 0.1, 1.0, 5.0)
    unlikelihood_alphas: tuple[float, ...] = (0.05, 0.1, 0.5, 1.0)
    seeds: tuple[int, ...] = (0, 1)  # Preferred-FT runs once per seed; other methods use seeds[0]
    pref_micro_batch_size: int = 32  # pairs per forward; gradient accumulation above it
    odpo_alpha: float = 1.0  # ODPO offset alpha * log(r_w - r_l), ODPO Sec. 6.1
    ipo_beta: float = 0.1  # IPO's tau: target log-ratio margin 1 / (2 tau) = 5 nats
    cdpo_beta: float = 0.1
    cdpo_label_smoothing: float = 0.1  # conservative DPO: 10% of the labels assumed flipped
    # --- RLHF baselines of the sweep (DPO paper Sec. 6.1, App. C.1): reward model, PPO, Best-of-N ---
    rm_epochs: int = 3  # App. C.1: 3 epochs over the DPO runs' pairs, keeping the best held-out accuracy
    rm_lr: float = 1e-4  # AdamW, constant
    rm_heldout: int = 2_000  # pairs no run trains on, which select the reward model's epoch
    ppo_target_kls: tuple[float, ...] = ()  # paper: (3, 6, 9, 12); cpu: comes with the re-run of data/runs
    ppo_iterations: int = 25  # rollouts of ppo_batch_size training prompts each
    ppo_batch_size: int = 64  # paper's tuned PPO: 1024
    ppo_minibatch_size: int = 16  # responses per optimiser step; ppo_epochs passes over each rollout
    ppo_epochs: int = 4
    ppo_lr: float = 1e-4  # AdamW, constant
    ppo_kl_coef: float = 0.2  # the adaptive controller's starting beta (TRL's default)
    ppo_horizon: int = 64  # the controller's horizon in responses: one rollout, so beta moves up to 20% a rollout
    ppo_eval_every: int = 5  # rollouts between evaluations
    ppo_checkpoint_every: int = 1  # rollouts between checkpoints
    best_of_ns: tuple[int, ...] = ()  # Best-of-N reference curves, paper: (1, 4, 16, 64)
    sweep_workers: int = 2  # training processes at once (2 x 1 thread is fastest on 2 cores, docs/background.md 6);
    # 0 = one per visible GPU, each on its own GPU (workers.worker_device), or one without a GPU
    sweep_threads: int = 1  # torch threads per training process; 0 = cores // sweep_workers
    cell_timeout: int = 7_200  # make reproduce: seconds a notebook cell may take (the sweep cell longest); 0 = none

    @property
    def sampling_seed(self) -> int:
        """The seed of everything drawn once pi_SFT exists: preference pairs, the subset the runs train on,
        held-out pairs and evaluation samples. ``data_seed`` when set, else ``seed``: a replicate sweep sets
        ``data_seed`` and keeps pi_SFT (a release is made for one ``seed``; ``python -m dpo_lab.sweep --data-seed``)."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def model_sizes(self) -> dict:
        """The GPT-2 sizes as ``lm.gpt2_config`` takes them: ``gpt2_config(tokenizer, **p.model_sizes)``."""
        return {"n_layer": self.n_layer, "n_embd": self.n_embd, "n_head": self.n_head, "n_positions": self.n_positions}

    def replace(self, **changes) -> Profile:
        """A copy with some knobs changed (profiles are frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="CI: tiny models, proves the machinery",
        bandit_trials=5,
        mc_samples=50_000,
        bandit_dataset_sizes=(100, 1_000, 10_000),
        bandit_train_steps=300,
        bandit_betas=(0.1, 1.0, 3.0),
        bandit_ranked_prompts=200,
        n_layer=2,
        n_embd=32,
        n_head=2,
        n_positions=64,
        sft_steps=20,
        sft_batch_size=8,
        sft_bpe_vocab=512,
        sft_reviews=256,  # 20 steps x 8 windows need a few hundred reviews, not 7,600
        gold_reward_reviews=2_000,
        n_prompts=16,
        max_new_tokens=12,
        n_test_prompts=16,
        pref_batch_size=8,
        pref_steps=6,
        pref_warmup_steps=2,
        eval_every=3,
        dpo_betas=(0.1, 1.0),  # two settings per method prove the machinery
        unlikelihood_alphas=(0.1, 1.0),
        seeds=(0,),
        sweep_workers=1,  # a worker process costs seconds to start; smoke runs take about one each
        cell_timeout=600,
        exact_ref_steps=60,
        exact_pairs=2_000,
        exact_pref_steps=12,
        exact_pref_batch_size=16,
        exact_eval_every=6,
        exact_eval_samples=4,
        exact_rm_heldout=200,
        exact_ppo_target_kls=(1.0,),
        exact_ppo_iterations=2,
        exact_ppo_batch_size=32,
        exact_best_of_ns=(1, 4),
        rm_epochs=1,
        rm_heldout=16,
        ppo_target_kls=(6.0,),
        ppo_iterations=2,
        ppo_batch_size=8,
        ppo_minibatch_size=4,
        ppo_epochs=2,
        ppo_eval_every=1,
        best_of_ns=(1, 4),
    ),
    "cpu": Profile(
        name="cpu",
        description="a faithful small replica for a 2-core laptop (no GPU, no network)",
        sft_steps=4_000,  # held-out perplexity 105 (600 steps: 288, word salad); 74 min, so released in data/
        sft_release="sft-cpu",  # DPO_LAB_SFT=train retrains it (sentiment.release)
        ppo_target_kls=(3.0, 6.0, 12.0),  # DPO's KL range here is 2-25; 3 of the paper's 4 for time
        ppo_iterations=20,  # 1,280 responses per run against DPO's 1,600 pairs; final KL 7-27 (it overshoots)
        best_of_ns=(1, 4, 16),  # N = 64 would sample 16,384 responses per evaluation (about 5 min on one core)
    ),
    "gpu": Profile(
        name="gpu",
        description="paper scale: gpt2-large, IMDb and the siebert classifier from the hubs",
        model_name="gpt2-large",
        tokenizer_name="gpt2-large",
        dataset_name="stanfordnlp/imdb",
        gold_reward_name="siebert/sentiment-roberta-large-english",
        n_layer=36,
        n_embd=1280,
        n_head=20,
        n_positions=1024,
        sft_steps=0,  # 0 = one full epoch over the SFT split (paper)
        sft_batch_size=64,
        sft_lr=1e-5,
        sft_bpe_vocab=0,  # gpt2-large's own BPE
        sft_micro_batch_size=8,  # 8 x 1024 tokens of gpt2-large activations fit in 80 GB
        sample_threads=0,
        n_prompts=25_000,
        n_test_prompts=512,
        pref_optimizer="rmsprop",
        pref_lr=1e-6,
        pref_warmup_steps=150,
        pref_batch_size=64,
        pref_steps=2_000,
        eval_every=100,
        eval_samples_per_prompt=4,
        seeds=(0, 1, 2),
        pref_micro_batch_size=16,  # 32 sequences of gpt2-large per forward
        rm_lr=1e-5,
        ppo_target_kls=(3.0, 6.0, 9.0, 12.0),
        ppo_iterations=100,  # 102,400 responses: about 4 passes over the 25,000 training prompts
        ppo_batch_size=1_024,  # App. C.1: "larger batch samples of 1024 per PPO step"
        ppo_minibatch_size=64,
        ppo_lr=1.41e-5,  # TRL's default for GPT-2
        ppo_horizon=10_000,  # TRL's default: 10 horizons in the 102,400 responses of a run
        ppo_eval_every=10,
        ppo_checkpoint_every=10,  # a gpt2-large checkpoint (weights, value head, AdamW state) is about 9 GB
        pref_checkpoint_every=500,  # 4 checkpoint writes of about 9 GB per 2,000-step run instead of 40
        best_of_ns=(1, 4, 16, 64),
        sweep_workers=0,  # one run per visible GPU at a time (one GPU: one run at a time)
        sweep_threads=0,
        cell_timeout=0,  # the sweep cell runs for hours (README, "On a GPU")
    ),
}


# gpu-small: the gpu profile's code path and task on the GPUs students have (16 GB, e.g. a free notebook T4; a GPU
# without bf16 runs float32, lm.model). gpt2 (124M) instead of gpt2-large, 500 steps instead of 2,000, 5,000 prompts.
# Estimated (arithmetic, not measured): about 2 GB of weights, gradients and RMSprop state plus siebert's 1.4 GB and
# the activations of 16-sequence micro-batches, well under 16 GB; about 20 minutes per preference run on a T4 at 40%
# of its 8 TFLOP/s fp32, about 8 hours for the whole sweep (resumable).
PROFILES["gpu-small"] = PROFILES["gpu"].replace(
    name="gpu-small",
    description="the gpu path on a 16 GB GPU (a free notebook T4): gpt2, IMDb and siebert from the hubs",
    model_name="gpt2",
    tokenizer_name="gpt2",
    n_layer=12,
    n_embd=768,
    n_head=12,
    sft_micro_batch_size=8,
    n_prompts=5_000,
    n_test_prompts=256,
    pref_steps=500,
    pref_checkpoint_every=250,
    ppo_iterations=30,
    ppo_batch_size=256,
    ppo_minibatch_size=32,
    ppo_horizon=2_048,  # 8 rollouts: beta can follow the KL within the 30 rollouts of a run
)


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``; with no name, the one ``DPO_LAB_PROFILE`` selects (default cpu)."""
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or DEFAULT_PROFILE
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r} (from argument or ${ENV_VAR}); valid profiles: " + ", ".join(PROFILES)
        )
    path = os.environ.get(OVERRIDES_ENV_VAR, "").strip()
    return PROFILES[key].replace(**load_overrides(path, key)) if path else PROFILES[key]


def load_overrides(path: str | Path, profile: str) -> dict:
    """The knob overrides for ``profile`` in the JSON file at ``path`` (``$DPO_LAB_OVERRIDES``): an object
    of profile name -> {knob: value}; lists become tuples where the knob is a tuple. Profiles the file
    does not name get no overrides. ValueError naming the file (and the profile and knob) for a missing
    or malformed file, an unknown profile or knob, or a value of the wrong type.

    README, "On a GPU", shows its use: the gpu profile pointed at local mirrors of the hub's assets.
    """
    import json

    path = Path(path)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} (${OVERRIDES_ENV_VAR}): cannot read a JSON object of overrides ({err})") from err
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ValueError(f"{path} (${OVERRIDES_ENV_VAR}): need {{profile: {{knob: value}}}}, got {table!r:.80}")
    unknown = sorted(set(table) - set(PROFILES))
    if unknown:
        raise ValueError(f"{path}: unknown profile(s) {unknown}; valid profiles: {', '.join(PROFILES)}")
    fields = {f.name: f for f in dataclasses.fields(Profile) if f.name != "name"}
    out = {}
    for knob, value in table.get(profile, {}).items():
        if knob not in fields:
            raise ValueError(f"{path}: profile {profile!r} has no knob {knob!r}")
        default = getattr(PROFILES[profile], knob)
        if value is None and "None" in str(fields[knob].type):  # an optional knob switched off
            out[knob] = None
            continue
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kinds = (type(default),) if default is not None else (str, int, type(None))
        if isinstance(default, float):
            kinds = (int, float)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, kinds):
            raise ValueError(f"{path}: {profile}.{knob} = {value!r}: need a {type(default).__name__} like {default!r}")
        out[knob] = value
    return out


def profile_table(names: tuple[str, ...] = tuple(PROFILES)) -> str:
    """A plain-text table of every knob (rows) in each profile (columns), for notebook 00."""
    rows = [("knob", *names)]
    for field in dataclasses.fields(Profile):
        if field.name in ("name", "description"):
            continue
        rows.append((field.name, *(str(getattr(PROFILES[n], field.name)) for n in names)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def device() -> str:
    """'cuda' when a GPU is visible, else 'cpu'. Training uses bf16 autocast on CUDA and fp32 on CPU
    (bf16 matmul is about 400x slower than fp32 on the CPUs this package was built on)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def project_root() -> Path:
    """The checkout this package runs from (the folder holding pyproject.toml), else the cwd."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def results_dir(profile: Profile | None = None) -> Path:
    """Where runs, figures and reports of a profile go: ``$DPO_LAB_RESULTS/<profile>`` or
    ``<checkout>/results/<profile>``. Git-ignored; created on demand."""
    profile = profile or get_profile()
    base = os.environ.get(RESULTS_ENV_VAR)
    root = Path(base) if base else project_root() / "results"
    path = root / profile.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def setup(seed: int | None = None) -> Profile:
    """The first code cell of every notebook: resolve the profile, seed numpy and torch, and print
    the profile, device and versions so every output says what made it."""
    import numpy as np

    profile = get_profile()
    seed = profile.seed if seed is None else seed
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
        torch_version = torch.__version__
    except ImportError:  # the theory notebooks do not need torch
        torch_version = "not installed"
    print(f"dpo_lab profile: {profile.name} ({profile.description})")
    print(
        f"device: {device() if torch_version != 'not installed' else 'cpu'} | "
        f"python {platform.python_version()} | numpy {np.__version__} | torch {torch_version}"
    )
    print(f"results: {results_dir(profile)}")
    return profile
