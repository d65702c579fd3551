"""The SFT recipe: tokenizer, review windows, prompt ids, perplexity, the stored pi_SFT
(dpo_lab.sentiment.sft), on fixtures built here."""

import math

import numpy as np
import pytest
import torch
from test_sentiment_reviews import synthetic_review, write_aclimdb

from dpo_lab import config
from dpo_lab.lm import gpt2_config, load_model, load_tokenizer
from dpo_lab.sentiment import sft


@pytest.fixture(scope="module")
def small_bpe():
    rng = np.random.default_rng(0)
    return sft.train_bpe([synthetic_review(rng, i % 2) for i in range(80)], vocab_size=300)


def test_bpe_is_byte_level_with_eos_as_bos_and_pad(small_bpe):
    assert len(small_bpe) <= 300
    assert small_bpe.eos_token == small_bpe.bos_token == small_bpe.pad_token == "<|endoftext|>"
    text = "An unseen wörd, 10/10 <br /> ok"
    assert small_bpe.decode(small_bpe(text, add_special_tokens=False)["input_ids"]) == text  # bytes: no UNK


@pytest.mark.parametrize(
    "texts, vocab, message",
    [
        (["a b"], 100, "vocab_size must be an integer >= 257"),
        ("a review", 300, "single string"),
        ([], 300, "texts is empty"),
    ],
)
def test_bpe_bad_inputs(texts, vocab, message):
    with pytest.raises(ValueError, match=message):
        sft.train_bpe(texts, vocab)


def test_review_windows_cover_each_review_between_eos_marks(small_bpe):
    texts = [synthetic_review(np.random.default_rng(1), 1), "Short."]
    windows = sft.review_windows(texts, small_bpe, window=16)
    eos = small_bpe.eos_token_id
    rebuilt, pieces = [], []
    for w in windows:
        assert 2 <= len(w) <= 16
        pieces += w
        if w[-1] == eos and len(pieces) > 1:
            rebuilt.append(pieces)
            pieces = []
    ids = small_bpe(texts, add_special_tokens=False)["input_ids"]
    assert rebuilt == [[eos] + row + [eos] for row in ids]


def test_review_windows_drop_a_one_token_tail(small_bpe):
    ids = small_bpe(["Short."], add_special_tokens=False)["input_ids"][0]
    n = len(ids) + 2  # with both EOS marks
    windows = sft.review_windows(["Short."], small_bpe, window=n - 1)
    assert [len(w) for w in windows] == [n - 1]  # the last EOS alone predicts nothing
    with pytest.raises(ValueError, match="window must be an integer >= 2"):
        sft.review_windows(["x"], small_bpe, window=1)
    with pytest.raises(ValueError, match="single string"):
        sft.review_windows("x", small_bpe, window=8)


def test_prompt_ids_start_with_eos(small_bpe):
    eos = small_bpe.eos_token_id
    assert sft.prompt_ids(["This movie"], small_bpe) == [
        [eos] + small_bpe("This movie", add_special_tokens=False)["input_ids"]
    ]
    with pytest.raises(ValueError, match=r"prompts\[1\] must be a non-empty string"):
        sft.prompt_ids(["fine", ""], small_bpe)
    with pytest.raises(ValueError, match="single string"):
        sft.prompt_ids("fine", small_bpe)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(small_bpe):
    model = load_model(gpt2_config(small_bpe, **config.get_profile("smoke").model_sizes), seed=0)
    windows = sft.review_windows([synthetic_review(np.random.default_rng(2), 0)], small_bpe, window=32)
    with torch.no_grad():
        model.transformer.wte.weight.zero_()  # tied LM head: every logit 0, every token 1 / V
    assert sft.perplexity(model, windows) == pytest.approx(model.config.vocab_size, rel=1e-4)
    with pytest.raises(ValueError, match="windows must be a non-empty list"):
        sft.perplexity(model, [[1]])


def test_perplexity_matches_a_direct_forward(small_bpe):
    model = load_model(gpt2_config(small_bpe, **config.get_profile("smoke").model_sizes), seed=3)
    window = sft.review_windows([synthetic_review(np.random.default_rng(4), 1)], small_bpe, window=24)[0]
    with torch.no_grad():
        logits = model(torch.tensor([window])).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(window[1:])).item()
    assert sft.perplexity(model, [window]) == pytest.approx(math.exp(nll), rel=1e-4)


@pytest.fixture
def fixture_profile(tmp_path):
    folder = write_aclimdb(tmp_path, n_per_folder=40)
    return config.get_profile("smoke").replace(
        dataset_name=str(folder), sft_bpe_vocab=300, sft_steps=4, sft_batch_size=4, n_positions=32
    )


def test_sft_reviews_are_the_first_of_the_sft_part(fixture_profile):
    part = sft.load_parts(fixture_profile)["sft"]
    assert sft.sft_reviews(fixture_profile.replace(sft_reviews=5)).texts == part.texts[:5]
    assert sft.sft_reviews(fixture_profile).texts == part.texts  # 0 = all


def test_sft_tokenizer_is_trained_once_or_is_gpt2(fixture_profile, monkeypatch):
    calls = []
    train = sft.train_bpe
    monkeypatch.setattr(sft, "train_bpe", lambda *a: calls.append(1) or train(*a))
    first, second = sft.sft_tokenizer(fixture_profile), sft.sft_tokenizer(fixture_profile)
    assert calls == [1] and len(first) == len(second) <= 300
    assert first("the plot", add_special_tokens=False) == second("the plot", add_special_tokens=False)
    assert len(sft.sft_tokenizer(fixture_profile.replace(sft_bpe_vocab=0))) == len(load_tokenizer()) == 50257


def test_sft_policy_is_trained_once_and_stored(fixture_profile):
    policy = sft.sft_policy(fixture_profile, progress=False)
    evals = [m for m in policy.run.metrics() if m["split"] == "eval"]
    assert [m["step"] for m in evals] == [1, 2, 3, 4]  # eval_every = max(1, 4 // 5) = 1
    assert all(math.isfinite(m["perplexity"]) and m["perplexity"] > 1 for m in evals)
    again = sft.sft_policy(fixture_profile, progress=False)
    assert again.run.id == policy.run.id and again.path == policy.path
    reloaded = load_model(policy.path)
    window = sft.heldout_windows(policy.tokenizer, fixture_profile)[0]
    assert len(window) <= 32 and window[0] == policy.tokenizer.eos_token_id
    assert sft.perplexity(reloaded, [window]) == pytest.approx(sft.perplexity(policy.model, [window]), rel=1e-5)
