import dataclasses

import pytest

from dpo_lab import config


def test_default_profile_is_cpu(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    assert config.get_profile().name == "cpu"


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu", " GPU "])
def test_env_var_selects_profile(monkeypatch, name):
    monkeypatch.setenv(config.ENV_VAR, name)
    assert config.get_profile().name == name.strip().lower()


def test_unknown_profile_lists_valid_ones(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "laptop")
    with pytest.raises(ValueError) as err:
        config.get_profile()
    message = str(err.value)
    assert "'laptop'" in message and config.ENV_VAR in message
    for valid in ("smoke", "cpu", "gpu"):
        assert valid in message


def test_profiles_are_frozen_and_complete():
    fields = {f.name for f in dataclasses.fields(config.Profile)}
    for name, profile in config.PROFILES.items():
        assert profile.name == name
        with pytest.raises(dataclasses.FrozenInstanceError):
            profile.seed = 1  # type: ignore[misc]
        assert set(profile.to_dict()) == fields


def test_gpu_profile_names_the_paper_assets():
    gpu = config.PROFILES["gpu"]
    assert gpu.model_name == "gpt2-large"
    assert gpu.dataset_name == "stanfordnlp/imdb"
    assert gpu.gold_reward_name == "siebert/sentiment-roberta-large-english"
    assert (gpu.pref_optimizer, gpu.pref_lr, gpu.pref_warmup_steps, gpu.pref_batch_size) == ("rmsprop", 1e-6, 150, 64)
    assert set(gpu.dpo_betas) == {0.05, 0.1, 1.0, 5.0}


@pytest.mark.parametrize("name", ["smoke", "cpu"])
def test_offline_profiles_never_name_a_hub_asset(name):
    profile = config.PROFILES[name]
    assert profile.model_name is None and profile.dataset_name is None
    assert profile.gold_reward_name is None and profile.tokenizer_name is None


def test_smoke_is_smaller_than_cpu_smaller_than_gpu():
    smoke, cpu, gpu = (config.PROFILES[n] for n in ("smoke", "cpu", "gpu"))
    for knob in ("n_embd", "n_prompts", "n_test_prompts", "pref_steps"):
        assert getattr(smoke, knob) < getattr(cpu, knob) < getattr(gpu, knob), knob


def test_replace_returns_a_changed_copy():
    cpu = config.PROFILES["cpu"]
    changed = cpu.replace(pref_steps=3)
    assert changed.pref_steps == 3 and cpu.pref_steps != 3


def test_results_dir_is_per_profile(monkeypatch, tmp_path):
    monkeypatch.setenv(config.RESULTS_ENV_VAR, str(tmp_path))
    path = config.results_dir(config.PROFILES["smoke"])
    assert path == tmp_path / "smoke" and path.is_dir()


def test_setup_prints_profile_and_device(monkeypatch, capsys):
    monkeypatch.setenv(config.ENV_VAR, "smoke")
    profile = config.setup()
    out = capsys.readouterr().out
    assert profile.name == "smoke"
    assert "profile: smoke" in out and "device: cpu" in out


def test_profile_table_shows_every_knob_per_profile():
    table = config.profile_table().splitlines()
    assert table[0].split() == ["knob", "smoke", "cpu", "gpu", "gpu-small"]
    knobs = {line.split()[0] for line in table[1:]}
    assert knobs == {f.name for f in dataclasses.fields(config.Profile)} - {"name", "description"}
    assert any(line.startswith("model_name") and "gpt2-large" in line for line in table)


def test_gpu_small_is_the_gpu_path_sized_for_a_16_gb_gpu():
    small, gpu = config.PROFILES["gpu-small"], config.PROFILES["gpu"]
    assert config.get_profile("gpu-small") is small and small.name == "gpu-small"
    assert small.model_name == "gpt2" and small.tokenizer_name == "gpt2"
    assert (small.dataset_name, small.gold_reward_name) == (gpu.dataset_name, gpu.gold_reward_name)  # the same task
    assert (small.pref_optimizer, small.pref_lr, small.pref_batch_size) == (gpu.pref_optimizer, gpu.pref_lr, 64)
    params = 12 * small.n_layer * small.n_embd**2 + 50257 * small.n_embd  # about 124M
    assert 4 * params * 4 < 3 * 2**30  # policy, reference, gradients and RMSprop state in fp32: under 3 GB


def test_data_seed_redraws_the_data_and_keeps_the_pi_sft_recipe():
    from dpo_lab.sentiment import release

    cpu = config.get_profile("cpu")
    assert cpu.sampling_seed == cpu.seed == 0 and cpu.replace(data_seed=1).sampling_seed == 1
    assert release.recipe(cpu.replace(data_seed=1)) == release.recipe(cpu)  # the replicate keeps the release
    assert cpu.replace(data_seed=0).sampling_seed == 0 and cpu.replace(seed=3).sampling_seed == 3


def test_an_overrides_file_points_a_profile_at_local_mirrors(monkeypatch, tmp_path):
    path = tmp_path / "mirrors.json"
    path.write_text(
        '{"gpu": {"model_name": "/mirror/gpt2-large", "dataset_name": "/mirror/imdb", "ppo_target_kls": [3, 6]},'
        ' "cpu": {"pref_steps": 50, "sft_release": null}}'
    )
    monkeypatch.setenv(config.OVERRIDES_ENV_VAR, str(path))
    gpu = config.get_profile("gpu")
    assert gpu.model_name == "/mirror/gpt2-large" and gpu.dataset_name == "/mirror/imdb"
    assert gpu.ppo_target_kls == (3, 6) and gpu.gold_reward_name == config.PROFILES["gpu"].gold_reward_name
    assert config.get_profile("cpu").pref_steps == 50 and config.get_profile("cpu").sft_release is None
    assert config.get_profile("smoke") == config.PROFILES["smoke"]  # not named in the file: untouched
    monkeypatch.delenv(config.OVERRIDES_ENV_VAR)
    assert config.get_profile("gpu") == config.PROFILES["gpu"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "cannot read a JSON object"),
        ('["gpu"]', "need {profile: {knob: value}}"),
        ('{"tpu": {}}', r"unknown profile\(s\) \['tpu'\]"),
        ('{"gpu": {"model_nme": "x"}}', "profile 'gpu' has no knob 'model_nme'"),
        ('{"gpu": {"pref_steps": "many"}}', r"gpu.pref_steps = 'many': need a int"),
        ('{"gpu": {"pref_steps": true}}', "gpu.pref_steps = True"),
        ('{"gpu": {"pref_lr": [1]}}', "gpu.pref_lr"),
    ],
)
def test_a_bad_overrides_file_is_refused_naming_the_file(monkeypatch, tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    monkeypatch.setenv(config.OVERRIDES_ENV_VAR, str(path))
    with pytest.raises(ValueError, match=match) as err:
        config.get_profile("gpu")
    assert str(path) in str(err.value)
    monkeypatch.setenv(config.OVERRIDES_ENV_VAR, str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="missing.json"):
        config.get_profile("gpu")
