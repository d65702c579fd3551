from dpo_lab import environment


def test_every_item_is_present_on_a_complete_install():
    rows = environment.check()
    missing = [r for r in rows if not r["ok"]]
    assert not missing, missing
    items = {r["item"] for r in rows}
    assert {"device", "GPT-2 tokenizer (offline)", "IMDb reviews (offline)", "VADER lexicon"} <= items
    tokenizer_row = next(r for r in rows if r["item"].startswith("GPT-2"))
    assert "[1212, 3807, 373]" in tokenizer_row["detail"]


def test_a_failing_probe_is_reported_not_raised(monkeypatch):
    def broken():
        raise FileNotFoundError("encoder.json is missing")

    monkeypatch.setattr(environment, "_gpt2_tokenizer", broken)
    rows = environment.check()
    row = next(r for r in rows if r["item"].startswith("GPT-2"))
    assert row == {
        "item": "GPT-2 tokenizer (offline)",
        "ok": False,
        "detail": "FileNotFoundError: encoder.json is missing",
    }
    table = environment.format_status(rows)
    assert "MISSING GPT-2 tokenizer (offline)" in table


def test_a_wrong_tokenizer_is_caught(monkeypatch):
    monkeypatch.setattr(environment, "GPT2_CHECK", ("This movie was", [1, 2, 3]))
    row = next(r for r in environment.check() if r["item"].startswith("GPT-2"))
    assert not row["ok"] and "expected [1, 2, 3]" in row["detail"]
