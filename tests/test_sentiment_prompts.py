"""Prompts of 2-8 GPT-2 tokens (dpo_lab.sentiment.prompts)."""

import pytest
from test_sentiment_reviews import write_aclimdb

from dpo_lab import config
from dpo_lab.lm import load_tokenizer
from dpo_lab.sentiment import heldout_prompts, load_parts, make_prompts, prompt_length, train_prompts


@pytest.fixture(scope="module")
def gpt2():
    return load_tokenizer()


def test_prompt_length_is_fixed_per_review_and_takes_every_value_from_2_to_8():
    lengths = [prompt_length(f"review number {i}") for i in range(300)]
    assert set(lengths) == set(range(2, 9))
    assert lengths == [prompt_length(f"review number {i}") for i in range(300)]


def test_prompts_are_the_first_gpt2_tokens_of_the_whole_review(gpt2):
    texts = [
        "I rented I AM CURIOUS-YELLOW from my video store because of all the controversy that "
        "surrounded it when it was first released in 1967.",
        "Antidisestablishmentarianism-flavoured cinematographically-overwrought pseudo-intellectual "
        "hyper-self-referentiality, notwithstanding.",
        "Great!",
    ]
    prompts = make_prompts(texts, gpt2)
    for text, prompt in zip(texts, prompts):
        ids = gpt2(text, add_special_tokens=False)["input_ids"]
        assert prompt == gpt2.decode(ids[: prompt_length(text)]).strip()
        assert text.startswith(prompt) and prompt
    assert prompts[2] == "Great!"  # shorter than its prefix length: the whole review


def test_bad_texts(gpt2):
    with pytest.raises(ValueError, match="single string"):
        make_prompts("a review", gpt2)
    with pytest.raises(ValueError, match=r"texts\[1\] must be a non-empty string"):
        make_prompts(["fine", "   "], gpt2)


def test_train_and_heldout_prompts_come_from_disjoint_parts(tmp_path):
    folder = write_aclimdb(tmp_path, n_per_folder=60)
    profile = config.get_profile("smoke").replace(dataset_name=str(folder), n_prompts=20, n_test_prompts=3)
    train, heldout = train_prompts(profile), heldout_prompts(profile)
    assert len(train) == 20 and len(heldout) == 3
    assert heldout == heldout_prompts(profile)  # the same list every time
    parts = load_parts(profile)
    assert all(parts["prompts"].texts[i].startswith(p) for i, p in enumerate(train))
    assert all(parts["test"].texts[i].startswith(p) for i, p in enumerate(heldout))
    with pytest.raises(ValueError, match="'test' part .* holds"):
        heldout_prompts(profile.replace(n_test_prompts=10_000))
