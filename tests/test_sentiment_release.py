"""A released pi_SFT (dpo_lab.sentiment.release): exported from a pi_SFT trained here at smoke sizes,
loaded back instead of retraining, refused when it does not belong to the profile; both paths of
sft_policy (the release, and DPO_LAB_SFT=train)."""

import json

import pytest
import torch
from test_sentiment_reviews import write_aclimdb

from dpo_lab import config
from dpo_lab.sentiment import release, sft


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """A smoke-sized pi_SFT trained from an aclImdb-shaped folder, and its profile."""
    monkeypatch.delenv(release.ENV_VAR, raising=False)
    folder = write_aclimdb(tmp_path, n_per_folder=40)
    profile = config.get_profile("smoke").replace(
        dataset_name=str(folder), sft_bpe_vocab=300, sft_steps=4, sft_batch_size=4, n_positions=64
    )
    return sft.sft_policy(profile, progress=False), profile


def test_a_release_loads_the_same_model_instead_of_training(trained, tmp_path):
    policy, profile = trained
    folder = release.export_release(policy, profile, tmp_path / "sft-release")
    meta = json.loads((folder / release.RELEASE_FILE).read_text())
    assert (folder / release.WEIGHTS_FILE).exists() and meta["run"] == policy.run.id
    assert meta["recipe"] == release.recipe(profile) and "python -m dpo_lab.sentiment.release" in meta["command"]
    released = profile.replace(sft_release=str(folder))  # an absolute path: data/ is not consulted
    loaded = sft.sft_policy(released, progress=False)
    assert loaded.path == folder and loaded.run.kind == "sft" and loaded.run.finished
    assert loaded.result == policy.result and loaded.run.id != policy.run.id  # its own run, keyed by the checksum
    for a, b in zip(loaded.model.state_dict().values(), policy.model.state_dict().values()):
        assert torch.equal(a, b)
    text = "the plot was"
    assert loaded.tokenizer(text)["input_ids"] == policy.tokenizer(text)["input_ids"]
    evals = [m for m in loaded.run.metrics() if m["split"] == "eval"]  # the training curve travels with it
    assert [m["step"] for m in evals] == [1, 2, 3, 4]
    assert sft.sft_policy(released, progress=False).run.id == loaded.run.id  # loaded once, then reused


def test_dpo_lab_sft_train_retrains_where_a_release_is_named(trained, tmp_path, monkeypatch):
    policy, profile = trained
    folder = release.export_release(policy, profile, tmp_path / "sft-release")
    released = profile.replace(sft_release=str(folder))
    monkeypatch.setenv(release.ENV_VAR, "train")
    assert sft.sft_policy(released, progress=False).run.id == policy.run.id  # the trained run, not the release
    monkeypatch.setenv(release.ENV_VAR, "sometimes")
    with pytest.raises(ValueError, match="DPO_LAB_SFT"):
        sft.sft_policy(released, progress=False)


def test_a_release_of_other_settings_or_damaged_weights_is_refused(trained, tmp_path):
    policy, profile = trained
    folder = release.export_release(policy, profile, tmp_path / "sft-release")
    with pytest.raises(ValueError, match=r"release.json: made with other settings .*sft_steps"):
        release.load_release(folder, profile.replace(sft_steps=5))
    weights = folder / release.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ValueError, match="do not match the checksum"):
        release.load_release(folder, profile)
    with pytest.raises(ValueError, match="no pi_SFT release here"):
        release.load_release(tmp_path / "nothing", profile)


def test_pairs_shipped_with_a_release_read_back_whole_and_only_from_it(trained, tmp_path):
    from dpo_lab.sentiment import pairs as pairs_mod

    policy, profile = trained
    folder = release.export_release(policy, profile, tmp_path / "sft-release")
    released = profile.replace(sft_release=str(folder), n_prompts=6, max_new_tokens=6)
    assert release.released_pairs(released) is None  # no pairs shipped yet
    data = pairs_mod.preference_data(released, policy=release.load_release(folder, released), progress=False)
    path = release.export_pairs(data, folder)
    meta = json.loads((folder / release.RELEASE_FILE).read_text())
    assert path.name == release.PAIRS_FILE and meta["pairs"]["n_pairs"] == len(data.pairs()) > 0
    assert meta["pairs"]["run"] == data.run.id and meta["pairs"]["settings"]["n_prompts"] == 6
    assert release.released_pairs(released) == data.pairs()
    assert release.export_pairs(data, folder).read_bytes() == path.read_bytes()  # same pairs, same bytes
    other = pairs_mod.preference_data(released.replace(sft_release=None), policy=policy, progress=False)
    with pytest.raises(ValueError, match="not this release"):
        release.export_pairs(other, folder)  # sampled from the trained run, not from the released weights
    with pytest.raises(ValueError, match="no pi_SFT release here"):
        release.export_pairs(data, tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(ValueError, match="do not match the checksum"):
        release.released_pairs(released)


def test_every_release_a_profile_names_is_shipped():
    """A profile may name a released pi_SFT only where data/ holds one (the cpu profile does)."""
    for name, p in config.PROFILES.items():
        folder = release.release_dir(p)
        assert folder is None or (folder / release.RELEASE_FILE).is_file(), name


def test_the_shipped_release_is_whole_and_loads_for_its_recipe():
    """data/sft-cpu: the cpu profile's pi_SFT, trained for 4,000 steps (held-out perplexity 105), and the
    preference pairs sampled from it. Checksums hold, it loads offline at the cpu profile's recipe, the cpu
    profile uses it, and it is small enough to ship (under 30 MB)."""
    folder = config.project_root() / "data" / "sft-cpu"
    meta = json.loads((folder / release.RELEASE_FILE).read_text())
    assert sum(f.stat().st_size for f in folder.iterdir()) < 30 * 2**20
    recipe = config.get_profile("cpu").replace(sft_steps=meta["recipe"]["sft_steps"])
    policy = release.load_release(folder, recipe)
    assert meta["recipe"]["sft_steps"] == 4000 and policy.result["final_eval"]["perplexity"] < 110
    assert len(policy.tokenizer) == recipe.sft_bpe_vocab and policy.model.config.n_layer == recipe.n_layer
    assert meta["command"].startswith("python -m dpo_lab.sentiment.release data/sft-cpu --profile cpu --pairs")
    cpu = config.get_profile("cpu")
    assert release.use_release(cpu) and release.release_dir(cpu) == folder and release.recipe(cpu) == meta["recipe"]
    pairs = release.released_pairs(cpu)  # checked line by line and against the checksum
    assert len(pairs) == meta["pairs"]["n_pairs"] == 11_994 and meta["pairs"]["settings"]["n_prompts"] == cpu.n_prompts


def test_the_command_line_releases_pi_sft_with_its_pairs(trained, tmp_path, monkeypatch, capsys):
    policy, profile = trained
    profile = profile.replace(n_prompts=6, max_new_tokens=6)
    monkeypatch.setattr(config, "get_profile", lambda name=None: profile)
    monkeypatch.setenv(release.ENV_VAR, "release")  # main sets it to train; restored after the test
    dest = tmp_path / "sft-release"
    assert release.main([str(dest), "--pairs"]) == 0
    out = capsys.readouterr().out
    assert f"released {policy.run.id}" in out and "added" in out and release.PAIRS_FILE in out
    meta = json.loads((dest / release.RELEASE_FILE).read_text())
    assert meta["run"] == policy.run.id and meta["pairs"]["settings"]["n_prompts"] == 6
    assert len(release.released_pairs(profile.replace(sft_release=str(dest)))) == meta["pairs"]["n_pairs"] > 0
