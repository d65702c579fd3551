"""The gpu profile's notebooks 05-07, run on CPU against hub-shaped stand-ins (tests/hub_standins.py).

The stand-ins reach the gpu profile the way a user's local mirrors of the hub would: through the
``DPO_LAB_OVERRIDES`` file (README, "On a GPU"), which also shrinks the sizes. The hub names stay the gpu
profile's defaults (tests/test_config.py), and no hub is reached (``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``).
Notebook 04 (the exact task) is left out: it reads no hub asset.

Branches that only the gpu profile reaches, each executed here (and checked after the run):

1. ``lm.load_tokenizer(folder)``: ``AutoTokenizer.from_pretrained`` (``tokenizer_name``), the policy keeping
   the pretrained tokenizer (``sft_bpe_vocab = 0``), GPT-2's 50,257 tokens;
2. ``lm.load_model(folder)``: SFT starts from pretrained weights (``model_name``), not a fresh GPT-2;
3. ``sentiment.load_reviews`` of a local copy of a hub dataset (``datasets.load_dataset`` on a clone of the
   repository: splits train, test, unsupervised, label -1);
4. ``sentiment.pipeline_scorer``: the gold reward as a transformers text-classification pipeline over a
   RoBERTa whose labels are NEGATIVE/POSITIVE, scoring pairs and every evaluation;
5. SFT for one epoch (``sft_steps = 0``) with gradient accumulation (``sft_micro_batch_size`` < batch);
6. preference runs with RMSprop, linear warmup and micro-batches (``pref_micro_batch_size`` < batch), PPO at
   TRL's learning rate, 4 evaluation samples per prompt, ``sample_threads = 0``, ``sweep_threads = 0``;
7. bf16 autocast in every forward (``DPO_LAB_PRECISION=bf16``: on the CPU here, on a GPU by default);
8. no cell timeout (``cell_timeout = 0``) and one sweep worker.
"""

import os

import nbformat
import pytest
from hub_standins import write_overrides
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from dpo_lab import config, runs
from dpo_lab.reproduce import notebooks

# The check appended to notebook 06: the kernel ran the gpu profile with the stand-ins, in bf16.
KERNEL_CHECK = """
import os, torch
from dpo_lab import config
from dpo_lab.lm.model import autocast
p = config.get_profile()
assert p.name == "gpu" and p.standin_assets and p.model_name.endswith("gpt2-large"), p
with autocast("cpu"):
    assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
print("kernel: gpu profile on stand-ins, bf16 autocast")
"""


@pytest.fixture(scope="module")
def gpu_on_standins(tmp_path_factory):
    """Stand-ins and the environment of a user with local mirrors; notebooks 05-07 executed in order."""
    root = tmp_path_factory.mktemp("hub")
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(root / "datasets-cache"),
        "DPO_LAB_PROFILE": "gpu",
        "DPO_LAB_PRECISION": "bf16",
        "DPO_LAB_RESULTS": str(root / "results"),
    }
    saved = {k: os.environ.get(k) for k in [*env, config.OVERRIDES_ENV_VAR]}
    os.environ.update(env)
    try:
        os.environ[config.OVERRIDES_ENV_VAR] = str(write_overrides(root))
        profile = config.get_profile()
        executed = {}
        for path in notebooks():
            if path.name[:2] not in ("05", "06", "07"):
                continue
            nb = nbformat.read(path, as_version=4)
            if path.name.startswith("06"):
                nb.cells.append(nbformat.v4.new_code_cell(KERNEL_CHECK))
            client = NotebookClient(
                nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
            )
            try:
                client.execute()
            except CellExecutionError as err:
                pytest.fail(f"{path.name} failed in the gpu profile on stand-ins:\n{str(err)[-3000:]}")
            executed[path.name[:2]] = nb
        yield profile, executed, config.results_dir(profile)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _outputs(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_notebooks_05_to_07_run_the_gpu_path_on_the_standins(gpu_on_standins):
    profile, executed, results = gpu_on_standins
    assert sorted(executed) == ["05", "06", "07"]
    for knob in ("model_name", "tokenizer_name", "gold_reward_name", "dataset_name"):  # local copies, never the hub
        assert os.path.isabs(getattr(profile, knob)) and getattr(config.PROFILES["gpu"], knob) != getattr(profile, knob)
    assert "kernel: gpu profile on stand-ins, bf16 autocast" in _outputs(executed["06"])  # 7

    stored = {run.id: run for run in runs.list_runs(root=results / "runs")}
    (sft,) = [r for r in stored.values() if r.kind == "sft"]
    assert sft.config["tag"]["reviews"] == "local copy of a hub dataset (imdb)"  # 3
    settings = sft.config["settings"]
    assert settings["micro_batch_size"] < settings["batch_size"]  # 5
    from dpo_lab import lm

    model = lm.load_model(sft.artifact("model"))
    assert model.config.vocab_size == 50257 and model.config.n_positions == 1024  # 1, 2: the stand-in's sizes
    assert len(lm.load_tokenizer(sft.artifact("model"))) == 50257

    prefs = [r for r in stored.values() if r.kind == "pref"]
    assert prefs and all(r.finished for r in prefs)
    for run in prefs:  # 6
        s = run.config["settings"]
        assert (s["optimizer"], s["warmup_steps"]) == ("rmsprop", profile.pref_warmup_steps) and s[
            "micro_batch_size"
        ] == 4
        assert run.config["tag"]["eval"]["samples_per_prompt"] == 4
        assert run.config["tag"]["eval"]["gold"] == profile.gold_reward_name  # 4
    ppo = [r for r in stored.values() if r.kind == "ppo"]
    assert ppo and all(r.config["settings"]["lr"] == config.PROFILES["gpu"].ppo_lr for r in ppo)
