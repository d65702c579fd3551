"""Tokenizers: the offline GPT-2 BPE and saved tokenizer folders (dpo_lab.lm.tokenizer)."""

import pytest

from dpo_lab.lm import load_tokenizer


@pytest.fixture(scope="module")
def gpt2():
    return load_tokenizer()


def test_offline_gpt2_bpe_matches_gpt2(gpt2):
    assert len(gpt2) == 50257
    assert gpt2("This movie was", add_special_tokens=False)["input_ids"] == [1212, 3807, 373]
    assert gpt2.eos_token == "<|endoftext|>"
    assert gpt2.eos_token_id == gpt2.pad_token_id == 50256
    assert gpt2.decode([1212, 3807, 373]) == "This movie was"


def test_saved_folder_round_trips(gpt2, tmp_path):
    gpt2.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    text = "A <br /> great film, 10/10!"
    assert again(text)["input_ids"] == gpt2(text)["input_ids"]
    assert again.pad_token_id == again.eos_token_id == 50256


def _small_bpe(eos_token):
    """A byte-level BPE trained in milliseconds, like the small tokenizer of the cpu profile."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = [eos_token] if eos_token else []
    bpe.train_from_iterator(
        ["this movie was great", "this film was awful"] * 20,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=eos_token)


def test_a_small_trained_bpe_loads_with_eos_as_pad(tmp_path):
    _small_bpe("<|endoftext|>").save_pretrained(tmp_path / "small")
    small = load_tokenizer(tmp_path / "small")
    assert len(small) <= 300
    assert small.pad_token_id == small.eos_token_id == small.convert_tokens_to_ids("<|endoftext|>")
    assert small.decode(small("this movie was", add_special_tokens=False)["input_ids"]) == "this movie was"


def test_a_tokenizer_without_eos_is_refused(tmp_path):
    _small_bpe(None).save_pretrained(tmp_path / "no_eos")
    with pytest.raises(ValueError, match="no EOS token"):
        load_tokenizer(tmp_path / "no_eos")


@pytest.mark.parametrize("bad", ["", "   ", 42])
def test_bad_name_is_refused(bad):
    with pytest.raises(ValueError, match="name_or_path"):
        load_tokenizer(bad)
