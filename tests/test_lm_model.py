"""Model building, saving and loading, and the precision policy (dpo_lab.lm.model)."""

import pytest
import torch
from lm_support import TINY

from dpo_lab import config
from dpo_lab.lm import gpt2_config, load_model, load_tokenizer, save_model
from dpo_lab.lm.model import autocast, head_logits, hidden_size, model_device, torch_threads


def test_seeded_initialisation_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, b = load_model(TINY, seed=7), load_model(TINY, seed=7)
    assert torch.equal(torch.rand(3), expected_next)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name
    c = load_model(TINY, seed=8)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_loaded_model_is_float32_in_eval_mode_on_the_configured_device():
    model = load_model(TINY, seed=0)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model_device(model).type == config.device()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied head


def test_save_and_load_round_trip(tmp_path):
    model = load_model(TINY, seed=0)
    tokenizer = load_tokenizer()
    path = save_model(model, tokenizer, tmp_path / "m")
    again = load_model(path)
    ids = torch.tensor([[1, 5, 9, 299]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert load_tokenizer(path)("This movie was", add_special_tokens=False)["input_ids"] == [1212, 3807, 373]
    save_model(model, None, tmp_path / "weights_only")
    assert not (tmp_path / "weights_only" / "tokenizer.json").exists()


def test_gpt2_config_takes_sizes_from_its_arguments_and_ids_from_the_tokenizer(monkeypatch):
    tokenizer = type("Tok", (), {"eos_token_id": 41, "__len__": lambda self: 42})()
    # the engine reads no profile: the active profile must not change what it builds
    monkeypatch.setenv(config.ENV_VAR, "gpu")
    cfg = gpt2_config(tokenizer, n_layer=3, n_embd=24, n_head=2, n_positions=16)
    assert (cfg.vocab_size, cfg.eos_token_id, cfg.bos_token_id) == (42, 41, 41)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions) == (3, 24, 2, 16)
    smoke = config.get_profile("smoke")
    cfg = gpt2_config(tokenizer, **smoke.model_sizes)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions) == (
        smoke.n_layer,
        smoke.n_embd,
        smoke.n_head,
        smoke.n_positions,
    )


def test_gpt2_config_refuses_a_tokenizer_without_eos():
    tokenizer = type("Tok", (), {"eos_token_id": None, "__len__": lambda self: 10})()
    with pytest.raises(ValueError, match="no EOS"):
        gpt2_config(tokenizer, 2, 32, 2, 64)


@pytest.mark.parametrize(
    "sizes, name",
    [
        ({"n_layer": 0}, "n_layer"),
        ({"n_embd": 2.5}, "n_embd"),
        ({"n_head": True}, "n_head"),
        ({"n_positions": 1}, "n_positions"),
        ({"n_embd": 30, "n_head": 4}, "n_embd"),
        ({"n_layer": "2"}, "n_layer"),
    ],
)
def test_gpt2_config_refuses_bad_sizes(sizes, name):
    tokenizer = type("Tok", (), {"eos_token_id": 1, "__len__": lambda self: 10})()
    with pytest.raises(ValueError, match=name):
        gpt2_config(tokenizer, **{"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 64, **sizes})


@pytest.mark.parametrize("bad", [42, "", None, {"n_layer": 2}])
def test_load_model_refuses_what_it_cannot_load(bad):
    with pytest.raises(ValueError, match="name_or_path_or_config"):
        load_model(bad)


def test_cpu_precision_is_float32():
    x = torch.randn(4, 4)
    with autocast("cpu"):
        assert (x @ x).dtype == torch.float32


def test_torch_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        with torch_threads(0):
            pass


def test_head_logits_are_the_models_logits_in_float32():
    model = load_model(TINY, seed=0)
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        hidden = model.base_model(input_ids=ids).last_hidden_state
        out = head_logits(model, hidden.to(torch.bfloat16))
        assert out.dtype == torch.float32 and out.shape == (1, 5, 300)
        torch.testing.assert_close(head_logits(model, hidden), model(ids).logits, rtol=0, atol=1e-6)


def test_hidden_size_is_the_width_a_head_on_the_trunk_takes():
    model = load_model(TINY)
    assert (
        hidden_size(model)
        == model.config.n_embd
        == model.base_model(torch.tensor([[1, 2]])).last_hidden_state.shape[-1]
    )
    with pytest.raises(ValueError, match="value_model: expected a GPT-2"):
        hidden_size(torch.nn.Linear(2, 2), "value_model")


def test_loading_and_saving_draw_no_weight_progress_bars(tmp_path, capsys):
    """The run store saves and loads many small models: transformers' per-model bars would bury a
    notebook's output (and the setting is restored afterwards)."""
    from transformers import GPT2Config
    from transformers.utils import logging as hf_logging

    from dpo_lab.lm import load_model, save_model
    from dpo_lab.lm.model import quiet_weight_bars

    model = load_model(GPT2Config(vocab_size=10, n_layer=1, n_embd=8, n_head=2, n_positions=8), seed=0)
    save_model(model, None, tmp_path / "m")
    load_model(tmp_path / "m")
    captured = capsys.readouterr()
    assert "Writing model shards" not in captured.err + captured.out and "Loading weights" not in captured.err
    assert hf_logging.is_progress_bar_enabled()
    with quiet_weight_bars():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()


@pytest.mark.parametrize("name", ["/no/such/dir", "./missing", "~/no-such-model-here", "results/cpu/no/model"])
def test_a_missing_local_folder_is_named_as_a_path_not_a_hub_id(name):
    from pathlib import Path

    from dpo_lab.lm import load_model, load_tokenizer

    for load, argument in ((load_model, "name_or_path_or_config"), (load_tokenizer, "name_or_path")):
        with pytest.raises(ValueError, match=f"{argument}: the local path .* does not exist"):
            load(name)
    with pytest.raises(ValueError, match="does not exist"):
        load_model(Path("relative-folder-that-is-not-here"))  # a Path is always local


def test_a_gpu_without_bf16_runs_float32_never_fp16(monkeypatch):
    import contextlib

    from dpo_lab.lm.model import autocast

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert isinstance(autocast("cuda"), contextlib.nullcontext)  # a T4: float32, not fp16 (NaN rewards)
    assert isinstance(autocast("cpu"), contextlib.nullcontext)


def test_dpo_lab_precision_forces_or_disables_bf16_and_refuses_other_values(monkeypatch):
    import contextlib

    from dpo_lab.lm.model import autocast

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setenv("DPO_LAB_PRECISION", "bf16")
    with autocast("cpu"):  # the gpu path's bf16 branch, on the CPU
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    monkeypatch.setenv("DPO_LAB_PRECISION", " FP32 ")
    assert isinstance(autocast("cuda"), contextlib.nullcontext)  # a bf16 GPU told to run float32
    monkeypatch.setenv("DPO_LAB_PRECISION", "fp16")
    with pytest.raises(ValueError, match=r"\$DPO_LAB_PRECISION must be one of auto, fp32, bf16, got 'fp16'"):
        autocast("cpu")
