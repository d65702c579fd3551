"""How well do the offline sentiment scorers agree with a transformer classifier on real policy text?

The file ``../shared/external/odpo_imdb_sft_test.jsonl`` (outside the project, from the ODPO code
release, Apache-2.0) holds 2,560 continuations sampled from a gpt2-large SFT model on IMDb prompts,
each scored by the hub classifier lvwerra/distilbert-imdb as r in [0, 2] (r > 1 = classified
positive). For each offline scorer this prints

* Spearman correlation between its P(positive) of prompt + text and r (ranking is what builds pairs);
* sign agreement: share of samples where P(positive) > 0.5 exactly when r > 1;
* accuracy on the held-out "test" reviews, full and cut to 48 words;
* P(positive) of "great", "great great great great" and similar degenerate texts (a scorer that
  rises with repetition invites a policy to repeat);
* scoring speed.

Targets for the default offline scorer (issue 6): Spearman >= 0.80, sign agreement >= 0.85.
The project never needs the file: without it the script says so and exits.

    DPO_LAB_PROFILE=cpu .venv/bin/python benchmarks/bench_gold_reward.py [--external PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from dpo_lab import config
from dpo_lab.sentiment import (
    PREFIX_WORDS,
    clean_review,
    load_gold_reward,
    load_parts,
    load_second_scorer,
    scorer_accuracy,
)

DEFAULT_EXTERNAL = config.project_root().parent / "shared" / "external" / "odpo_imdb_sft_test.jsonl"
PROBES = [
    "great",
    "great great great great",
    "a great movie and a great cast and a great",
    "bad bad bad bad",
    "This movie was not good at all.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--external", type=Path, default=DEFAULT_EXTERNAL)
    args = parser.parse_args(argv)
    if not args.external.is_file():
        print(f"{args.external} not found: nothing to compare against (the project does not need it)")
        return 0
    rows = [json.loads(line) for line in args.external.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [clean_review(r["prompt"] + " " + r["text"]) for r in rows]
    reference = np.array([r["reward"] for r in rows])
    profile = config.setup()
    test = load_parts(profile)["test"]
    print(
        f"{len(rows)} external samples ({np.mean(reference > 1):.2f} classified positive); "
        f"{len(test)} held-out test reviews"
    )
    for scorer in (load_gold_reward(profile=profile), load_second_scorer()):
        start = time.perf_counter()
        scores = scorer(texts)
        seconds = time.perf_counter() - start
        rho = spearmanr(scores, reference).statistic
        sign = np.mean((scores > 0.5) == (reference > 1))
        print(
            f"\n{scorer.name}\n  Spearman {rho:.3f}   sign agreement {sign:.3f}   ({len(texts) / seconds:,.0f} texts/s)"
        )
        print(
            f"  held-out accuracy: full reviews {scorer_accuracy(scorer, test):.3f}, "
            f"{PREFIX_WORDS}-word prefixes {scorer_accuracy(scorer, test, PREFIX_WORDS):.3f}"
        )
        for probe, p in zip(PROBES, scorer(PROBES)):
            print(f"  P(pos) {p:.3f}  {probe!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
