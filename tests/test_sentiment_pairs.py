"""Preference pairs: ordering, ODPO offsets, resumable generation, validated loading
(dpo_lab.sentiment.pairs)."""

import json
import math

import numpy as np
import pytest
from test_sentiment_reviews import synthetic_review

from dpo_lab import config
from dpo_lab.lm import gpt2_config, load_model
from dpo_lab.sentiment import pairs as pp
from dpo_lab.sentiment import train_prompts
from dpo_lab.sentiment.sft import train_bpe


def test_four_distinct_scores_give_six_ordered_pairs():
    scores = [0.2, 0.9, 0.5, 0.1]
    pairs = pp.ordered_pairs(scores)
    assert len(pairs) == 6 and all(scores[w] > scores[lose] for w, lose in pairs)
    assert {frozenset(p) for p in pairs} == {frozenset((i, j)) for i in range(4) for j in range(i + 1, 4)}


def test_exact_ties_are_dropped():
    assert pp.ordered_pairs([0.5, 0.5, 0.2, 0.9]) == [(0, 2), (3, 0), (1, 2), (3, 1), (3, 2)]
    assert pp.ordered_pairs([0.3] * 4) == []


@pytest.mark.parametrize("scores, message", [([[0.1, 0.2]], "one-dimensional"), ([0.1, np.nan], "NaN")])
def test_ordered_pairs_rejects_bad_scores(scores, message):
    with pytest.raises(ValueError, match=message):
        pp.ordered_pairs(scores)


def test_odpo_score_and_offsets():
    np.testing.assert_allclose(pp.odpo_score([0.1, 0.5, 0.7]), [0.1, 0.5, 1.7])
    offsets = pp.pair_offsets([0.9, 0.4], [0.2, 0.1])
    # across the boundary: log(1.9 - 0.2) > 0; on one side: log(0.4 - 0.1) < 0
    np.testing.assert_allclose(offsets, [math.log(1.7), math.log(0.3)])
    np.testing.assert_allclose(pp.pair_offsets([0.9], [0.2], alpha=0.5), [0.5 * math.log(1.7)])
    with pytest.raises(ValueError, match="ties must be dropped"):
        pp.pair_offsets([0.3], [0.3])
    with pytest.raises(ValueError, match="probabilities in"):
        pp.odpo_score([1.2])


def _record(index, responses, scores):
    return {
        "index": index,
        "prompt": f"prompt {index}",
        "prompt_ids": [0, 5 + index],
        "responses": responses,
        "response_ids": [[10 + k, 0] for k in range(len(responses))],
        "scores": scores,
    }


def test_pairs_from_samples_skip_empty_and_identical_texts():
    records = [
        _record(0, [" good", " bad", "", " good"], [0.9, 0.1, 0.5, 0.8]),
        _record(1, [" a", " b", " c", " d"], [0.4, 0.4, 0.4, 0.4]),
    ]
    pairs = pp.pairs_from_samples(records)
    # prompt 0: (0, 1) and (3, 1) survive; (0, 3) compares equal texts and the rest hold the empty
    # response; prompt 1 is all ties
    assert [(p["score_chosen"], p["score_rejected"]) for p in pairs] == [(0.9, 0.1), (0.8, 0.1)]
    assert [p["chosen_ids"] for p in pairs] == [[10, 0], [13, 0]] and pairs[0]["rejected_ids"] == [11, 0]
    assert all(p["prompt_index"] == 0 and p["prompt_ids"] == [0, 5] for p in pairs)
    np.testing.assert_allclose([p["offset"] for p in pairs], pp.pair_offsets([0.9, 0.8], [0.1, 0.1]))


def _good_pair(**changes):
    pair = {
        "prompt": "This film",
        "chosen": " is lovely.",
        "rejected": " is dull.",
        "score_chosen": 0.9,
        "score_rejected": 0.2,
        "prompt_ids": [0, 7],
        "chosen_ids": [8, 9, 0],
        "rejected_ids": [8, 10, 0],
        "offset": math.log(1.7),
        "prompt_index": 0,
    }
    pair.update(changes)
    return pair


def test_write_then_load_round_trips_and_feeds_the_trainer(tmp_path):
    pairs = [_good_pair(), _good_pair(prompt_index=1, chosen=" is fine.", score_chosen=0.6)]
    path = pp.write_pairs(pairs, tmp_path / "pairs.jsonl")
    assert pp.load_pairs(path) == pairs
    assert pp.trainer_pairs(pairs) == [{"prompt_ids": [0, 7], "chosen_ids": [8, 9, 0], "rejected_ids": [8, 10, 0]}] * 2
    assert pp.trainer_pairs(pairs, odpo=True)[1]["offset"] == pytest.approx(math.log(1.7))


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "malformed JSON"),
        ("", "empty line"),
        (json.dumps({k: v for k, v in _good_pair().items() if k != "rejected"}), r"missing field\(s\) \['rejected'\]"),
        (json.dumps(_good_pair(chosen="")), "chosen must be a non-empty string"),
        (json.dumps(_good_pair(rejected=" is lovely.")), "identical"),
        (json.dumps(_good_pair(score_chosen=float("nan"))), "score_chosen must be a finite number"),
        (json.dumps(_good_pair(offset=None)), "offset must be a finite number"),
        (json.dumps(_good_pair(score_chosen=0.1)), "not above score_rejected"),
        (json.dumps(_good_pair(chosen_ids=[])), "chosen_ids must be a non-empty list"),
        (json.dumps(_good_pair(prompt_ids=[1, -2])), "prompt_ids must be a non-empty list"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_loading_a_bad_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(_good_pair()) + "\n" + line + "\n" + json.dumps(_good_pair()) + "\n")
    with pytest.raises(ValueError, match=message) as err:
        pp.load_pairs(path)
    assert f"{path}, line 2" in str(err.value)


def test_loading_missing_or_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        pp.load_pairs(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no pairs"):
        pp.load_pairs(tmp_path / "empty.jsonl")


def test_read_samples_ignores_and_repairs_a_torn_last_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    good = json.dumps(_record(0, [" a"], [0.5])) + "\n" + json.dumps(_record(1, [" b"], [0.5])) + "\n"
    path.write_text(good + '{"index": 2, "prom')
    assert [r["index"] for r in pp.read_samples(path)] == [0, 1]
    assert path.read_text().endswith('"prom')  # reading alone changes nothing
    assert len(pp.read_samples(path, repair=True)) == 2 and path.read_text() == good
    assert pp.read_samples(tmp_path / "absent.jsonl") == []


@pytest.mark.parametrize(
    "content, message",
    [
        ("{bad\n" + json.dumps(_record(1, [" a"], [0.5])) + "\n", "line 1: malformed samples record"),
        (json.dumps(_record(1, [" a"], [0.5])) + "\n", "line 1: expected the record of prompt 0"),
    ],
)
def test_read_samples_errors(tmp_path, content, message):
    path = tmp_path / "samples.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        pp.read_samples(path)


@pytest.fixture(scope="module")
def tiny_policy():
    rng = np.random.default_rng(0)
    tokenizer = train_bpe([synthetic_review(rng, i % 2) for i in range(60)], vocab_size=300)
    model = load_model(gpt2_config(tokenizer, **config.get_profile("smoke").model_sizes), seed=0)
    return model, tokenizer


def _length_scorer(texts):
    return np.array([len(t) % 97 / 97 for t in texts])  # deterministic, rarely tied


PROMPTS = [f"This movie {w}" for w in ("was", "is", "has", "had", "will", "won", "made")]


def test_generation_writes_one_scored_record_per_prompt(tiny_policy, tmp_path):
    model, tokenizer = tiny_policy
    records = pp.generate_samples(
        model, tokenizer, PROMPTS, _length_scorer, tmp_path / "s.jsonl", 4, 6, seed=0, chunk_size=3, progress=False
    )
    assert [r["prompt"] for r in records] == PROMPTS and pp.read_samples(tmp_path / "s.jsonl") == records
    for r in records:
        assert len(r["responses"]) == len(r["response_ids"]) == len(r["scores"]) == 4
        assert r["prompt_ids"][0] == tokenizer.eos_token_id  # the review-start marker
        np.testing.assert_allclose(r["scores"], _length_scorer([r["prompt"] + t for t in r["responses"]]))
        assert all(1 <= len(ids) <= 6 for ids in r["response_ids"])


def test_interrupted_generation_resumes_without_touching_written_lines(tiny_policy, tmp_path):
    model, tokenizer = tiny_policy
    reference = pp.generate_samples(
        model, tokenizer, PROMPTS, _length_scorer, tmp_path / "ref.jsonl", 4, 6, seed=1, chunk_size=3, progress=False
    )
    calls = []

    def dies_on_second_chunk(texts):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return _length_scorer(texts)

    path = tmp_path / "s.jsonl"
    with pytest.raises(KeyboardInterrupt):
        pp.generate_samples(
            model, tokenizer, PROMPTS, dies_on_second_chunk, path, 4, 6, seed=1, chunk_size=3, progress=False
        )
    written = path.read_text()
    assert len(written.splitlines()) == 3
    with open(path, "a") as fh:
        fh.write('{"index": 3, "pro')  # and a torn line, as if killed mid-write
    records = pp.generate_samples(
        model, tokenizer, PROMPTS, _length_scorer, path, 4, 6, seed=1, chunk_size=3, progress=False
    )
    assert path.read_text().startswith(written)
    assert records == reference  # chunk seeds depend on where the chunk starts, not on the history
    with pytest.raises(ValueError, match="line 1: prompt 'This movie was' is not prompt 0"):
        pp.generate_samples(
            model, tokenizer, ["Another prompt"] + PROMPTS[1:], _length_scorer, path, 4, 6, seed=1, progress=False
        )
    with pytest.raises(ValueError, match="chunk_size"):
        pp.generate_samples(model, tokenizer, PROMPTS, _length_scorer, path, 4, 6, seed=1, chunk_size=0)


def test_preference_data_is_built_once_from_the_profile(tmp_path, monkeypatch):
    import torch
    from test_sentiment_reviews import write_aclimdb

    profile = config.get_profile("smoke").replace(
        dataset_name=str(write_aclimdb(tmp_path, 60)),
        sft_bpe_vocab=300,
        sft_steps=2,
        sft_batch_size=4,
        n_positions=32,
        n_prompts=5,
        max_new_tokens=6,
        sample_threads=1,
    )
    threads = torch.get_num_threads()
    data = pp.preference_data(profile, progress=False)
    assert torch.get_num_threads() == threads  # sample_threads applies to sampling only
    samples, pairs = data.samples(), data.pairs()
    assert len(samples) == data.result["n_prompts"] == 5 and len(pairs) == data.result["n_pairs"]
    assert pairs == pp.pairs_from_samples(samples)  # the pairs file is exactly what the samples give
    assert [r["prompt"] for r in samples] == train_prompts(profile)
    monkeypatch.setattr(pp, "generate_samples", lambda *a, **k: pytest.fail("the stored pairs were rebuilt"))
    again = pp.preference_data(profile, progress=False)
    assert again.run.id == data.run.id and again.pairs() == pairs
