"""The exact task without a model: vocabulary and tokenizer, the enumeration of responses, the gold
reward, and the errors for bad inputs (dpo_lab.exact.vocab / responses / reward / task)."""

import itertools

import numpy as np
import pytest

from dpo_lab import lm
from dpo_lab.exact import (
    DEFAULT_SCALE,
    EOS,
    MAX_RESPONSES,
    PROMPTS,
    WORDS,
    build_tokenizer,
    count_responses,
    enumerate_responses,
    gold_reward,
    make_space,
    score_texts,
)


@pytest.fixture(scope="module")
def space():
    return make_space()


# --- vocabulary and tokenizer ------------------------------------------------------------------------


def test_tokenizer_is_word_level_with_eos_last_and_round_trips_through_the_engine_loader(tmp_path):
    tok = build_tokenizer()
    assert len(tok) == len(WORDS) + 1 and tok.eos_token_id == len(WORDS)
    assert tok.convert_ids_to_tokens(len(WORDS)) == EOS
    ids = tok(["the film was good good"], add_special_tokens=False)["input_ids"][0]
    assert ids == [WORDS.index(w) for w in "the film was good good".split()]
    assert tok.decode(ids) == "the film was good good"
    tok.save_pretrained(tmp_path / "tok")
    loaded = lm.load_tokenizer(tmp_path / "tok")  # the engine's loader, as for the IMDb tokenizers
    assert len(loaded) == len(tok) and loaded.eos_token_id == tok.eos_token_id
    assert loaded(["not bad"], add_special_tokens=False)["input_ids"][0] == [WORDS.index("not"), WORDS.index("bad")]
    assert loaded.pad_token_id == loaded.eos_token_id


def test_prompts_are_eos_then_words_and_none_is_a_prefix_of_another(space):
    for prompt, ids in zip(PROMPTS, space.prompt_ids):
        assert ids[0] == space.eos_id
        assert list(ids[1:]) == [WORDS.index(w) for w in prompt.split()]
    for a, b in itertools.permutations(PROMPTS, 2):
        assert not b.startswith(a + " ")


# --- enumeration ---------------------------------------------------------------------------------------


def test_enumeration_lists_every_response_once_with_the_engine_eos_convention(space):
    r = space.responses
    assert len(r) == count_responses(10, 3) == 1 + 10 + 100 + 1000 == space.n_responses
    assert len(set(r.ids)) == len(r)
    assert r.ids[0] == (space.eos_id,)  # the empty response: EOS at once
    for ids, k, done in zip(r.ids, r.lengths, r.finished):
        words = [t for t in ids if t != space.eos_id]
        assert len(words) == k and all(0 <= t < 10 for t in words)
        # k < L words end with EOS; L words were cut by the cap and carry none (lm.sample's Samples)
        assert done == (k < 3) and (ids[-1] == space.eos_id) == done
        assert len(ids) == k + done
    assert r.index([7, 7, 7]) == 111 + 777 and r.ids[888] == (7, 7, 7)  # 1 + 10 + 100 shorter ones first
    assert r.index([6, space.eos_id]) == 1 + 6


def test_index_refuses_responses_outside_the_enumeration(space):
    for bad in ([6, 6, 6, space.eos_id], [6, 6], [space.eos_id, 6], [6, 6, 6, 6]):
        with pytest.raises(ValueError, match="response_ids"):
            space.responses.index(bad)


def test_task_text_decodes_like_the_tokenizer(space):
    for k in (0, 5, 57, 1110):
        ids = [t for t in space.responses.ids[k] if t != space.eos_id]
        assert space.text(k) == space.tokenizer.decode(ids)


# --- gold reward ---------------------------------------------------------------------------------------


def test_vectorised_reward_matches_the_word_by_word_scorer_on_every_pair(space):
    texts = [f"{p} {space.text(k)}" for p in space.prompts for k in range(space.n_responses)]
    brute = score_texts(texts, scale=space.scale).reshape(space.n_prompts, space.n_responses)
    np.testing.assert_allclose(space.reward, brute, rtol=0, atol=1e-12)
    np.testing.assert_allclose(space.score(texts), brute.ravel(), rtol=0, atol=1e-12)


def test_reward_values_negation_repetition_and_scale(space):
    assert space.scale == DEFAULT_SCALE == 1.0  # r* = S (notebook 04 says why)
    assert np.abs(space.reward).max() == 6.0  # 3 x "great"
    raw = dict(
        zip(["good", "great", "bad", "dull", "the film"], score_texts(["good", "great", "bad", "dull", "the film"]))
    )
    assert raw == {"good": 1.0, "great": 2.0, "bad": -1.0, "dull": -1.0, "the film": 0.0}
    # "not" flips the next word, across the prompt boundary too
    assert score_texts(["the film is not good", "the film is not bad", "not good not bad"]).tolist() == [-1, 1, 0]
    # repetition keeps paying: the reward can be gamed
    assert score_texts(["great great great"])[0] == 3 * score_texts(["great"])[0] == 6
    best = int(np.argmax(space.reward[0]))
    assert space.text(best) == "great great great"
    # the reward depends on the prompt
    k = space.responses.index([WORDS.index("good"), space.eos_id])
    assert space.reward[PROMPTS.index("the film was"), k] == 1.0
    assert space.reward[PROMPTS.index("the film is not"), k] == -1.0
    assert make_space(scale=1 / 6).reward[0, best] == pytest.approx(1.0)  # a scale multiplies r*


def test_custom_values_and_scale(space):
    other = make_space(values={"good": 3.0}, scale=0.5)
    k = other.responses.index([WORDS.index("good"), WORDS.index("good"), other.eos_id])
    assert other.reward[0, k] == pytest.approx(0.5 * 6)
    assert other.reward[0, other.responses.index([WORDS.index("great"), other.eos_id])] == 0.0


# --- bad inputs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_len": 0}, "max_len"),
        ({"max_len": -2}, "max_len"),
        ({"max_len": "3"}, "max_len"),
        ({"max_len": 2.5}, "max_len"),
        ({"max_len": True}, "max_len"),
        ({"max_len": 6}, "words / max_len"),  # 1,111,111 responses per prompt
        ({"words": [f"w{i}" for i in range(400)], "prompts": ["w0"], "max_len": 2}, "words / max_len"),
        ({"words": "the film good"}, "words"),
        ({"words": []}, "words"),
        ({"words": ["good", "good"]}, "words"),
        ({"words": ["good", "very good"]}, r"words\[1\]"),
        ({"words": ["good", EOS]}, r"words\[1\]"),
        ({"words": ["good", 3]}, r"words\[1\]"),
        ({"prompts": "the film was"}, "prompts"),
        ({"prompts": []}, "prompts"),
        ({"prompts": ["the film was", "the flick was"]}, r"prompts\[1\]"),
        ({"prompts": ["the film was", "  "]}, r"prompts\[1\]"),
        ({"values": {"good": "1"}}, "values"),
        ({"values": {"superb": 1.0}}, "values"),
        ({"values": [1.0]}, "values"),
        ({"scale": 0}, "scale"),
        ({"scale": -1.0}, "scale"),
        ({"scale": "1"}, "scale"),
        ({"scale": float("nan")}, "scale"),
    ],
)
def test_bad_task_arguments_raise_value_errors_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        make_space(**kwargs)


def test_the_cap_is_checked_before_anything_is_built():
    # 10 words and max_len 40 would be 1e40 responses: refused at once, without enumerating
    with pytest.raises(ValueError, match="more than the 100,000"):
        enumerate_responses(10, 40)
    assert count_responses(315, 2) <= MAX_RESPONSES < count_responses(316, 2)
    assert len(enumerate_responses(315, 2)) == count_responses(315, 2)
    with pytest.raises(ValueError, match="words / max_len"):
        enumerate_responses(316, 2)


def test_scorer_and_reward_refuse_wrong_types(space):
    with pytest.raises(ValueError, match="texts"):
        score_texts("good")
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        score_texts(["good", 1])
    with pytest.raises(ValueError, match="responses"):
        gold_reward(PROMPTS, WORDS, enumerate_responses(3, 2))
