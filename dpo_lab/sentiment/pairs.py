"""Preference pairs from pi_SFT's own samples, ordered by the gold reward (DPO paper Sec. 6.1, App. C.1).

Introduced in notebook 05. For each prompt x, draw K = 4 completions y_1..y_K ~ pi_SFT(. | x) by plain
ancestral sampling, score r_k = P(positive | x + y_k), and keep every pair (i < j) with r_i != r_j,
ordered (ODPO paper Eq. 17)::

    (y_w, y_l) = (y_i, y_j) if r_i > r_j,   (y_j, y_i) if r_j > r_i,   dropped if r_i = r_j

K = 4 gives up to 6 pairs per prompt. An exact tie carries no preference, and ODPO's log offset of a
tie would be log 0 = -inf. A pair whose chosen or rejected text is empty (EOS sampled at once) or
whose two texts are equal is dropped as well: there is nothing to compare.

ODPO offset (ODPO paper Eq. 15 and Sec. 6.1): ``Delta_r = alpha * log(s(y_w) - s(y_l))`` with
alpha = 1 and the ODPO paper's sentiment score s = 1 + P(pos) when the classifier says positive
(P(pos) > 0.5), else s = P(pos) (= 1 - P(neg)), so s lies in [0, 2]. A pair across the decision
boundary gets s_w - s_l > 1 and a positive offset; a pair on one side gets a negative offset.

Files (run kind ``pairs``; both are JSONL, one record per line):

=============  ==================================================================================
file           one line per ...
=============  ==================================================================================
samples.jsonl  prompt: ``index``, ``prompt``, ``prompt_ids``, ``responses`` (K str),
               ``response_ids`` (K lists, EOS last when the model emitted it), ``scores`` (K).
               Appended chunk by chunk and fsynced: an interrupted generation resumes after the
               last complete line and never rewrites one.
pairs.jsonl    pair: ``prompt``, ``chosen``, ``rejected``, ``score_chosen``, ``score_rejected`` (the
               column names TRL-style trainers expect), ``prompt_ids``, ``chosen_ids``,
               ``rejected_ids``, ``offset``, ``prompt_index``. Written at once, atomically.
=============  ==================================================================================

Token ids are the policy's: ``prompt_ids`` start with EOS (see ``sft.prompt_ids``) and a response
keeps its EOS when it has one, so preference training must not append another
(``train_preferences(..., add_eos=False)``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import config as _config
from ..runs import Run, atomic_write, open_run

PAIR_FIELDS = (
    "prompt",
    "chosen",
    "rejected",
    "score_chosen",
    "score_rejected",
    "prompt_ids",
    "chosen_ids",
    "rejected_ids",
    "offset",
    "prompt_index",
)
_ID_FIELDS = ("prompt_ids", "chosen_ids", "rejected_ids")
_TEXT_FIELDS = ("prompt", "chosen", "rejected")
_NUMBER_FIELDS = ("score_chosen", "score_rejected", "offset")
CHUNK_PROMPTS = 32  # prompts sampled, scored and appended together (4 x 32 = 128 sequences a batch)


def ordered_pairs(scores) -> list[tuple[int, int]]:
    """Every (winner, loser) index pair of ``scores`` with unequal scores, in (i < j) order.

    ======  ======  ==============================================
    name    shape   meaning
    ======  ======  ==============================================
    scores  (K,)    gold rewards of the K samples of one prompt
    return  <= K(K-1)/2 pairs (w, l) with scores[w] > scores[l]
    ======  ======  ==============================================

    Introduced in notebook 05.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    out = []
    for i in range(len(scores)):
        for j in range(i + 1, len(scores)):
            if scores[i] > scores[j]:
                out.append((i, j))
            elif scores[j] > scores[i]:
                out.append((j, i))
    return out


def odpo_score(p_positive) -> np.ndarray:
    """The ODPO paper's sentiment score in [0, 2]: 1 + P(pos) if P(pos) > 0.5, else P(pos).

    Introduced in notebook 05.
    """
    p = np.asarray(p_positive, dtype=np.float64)
    if not (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()):
        raise ValueError("p_positive must hold probabilities in [0, 1]")
    return np.where(p > 0.5, 1.0 + p, p)


def pair_offsets(score_chosen, score_rejected, alpha: float = 1.0, f: str = "log") -> np.ndarray:
    """ODPO offsets of pairs from their gold rewards P(pos): ``losses.odpo_offset`` applied to
    :func:`odpo_score` of each side. Shapes (B,) -> (B,).

    Introduced in notebook 05.
    """
    from ..losses import odpo_offset

    return odpo_offset(odpo_score(score_chosen), odpo_score(score_rejected), alpha=alpha, f=f).numpy()


def read_samples(path: str | Path, repair: bool = False) -> list[dict]:
    """The complete records of a samples file. A torn last line (generation killed mid-write) is
    ignored, and cut off the file when ``repair``; a malformed line elsewhere is a ``ValueError``
    naming the file and line.

    Introduced in notebook 05.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records, offset = [], 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        complete = line.endswith(b"\n")
        try:
            record = json.loads(line) if complete else None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: malformed samples record ({err})") from err
        if record is None:
            break
        if not isinstance(record, dict) or record.get("index") != len(records):
            raise ValueError(f"{path}, line {number}: expected the record of prompt {len(records)}")
        records.append(record)
        offset += len(line)
    if repair and offset < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(offset)
    return records


def generate_samples(
    policy,
    tokenizer,
    prompts,
    scorer,
    path: str | Path,
    num_samples: int,
    max_new_tokens: int,
    seed: int,
    chunk_size: int = CHUNK_PROMPTS,
    progress: bool = True,
) -> list[dict]:
    """Sample, score and append to ``path`` the records of every prompt not yet in it; returns all.

    ==============  ============================================================================
    argument        meaning
    ==============  ============================================================================
    policy          pi_SFT; sampled plainly (temperature 1, no top-k / top-p)
    tokenizer       the policy's; prompts become ``prompt_ids`` (``[EOS] + tokens``)
    prompts         N strings; record i of the file must belong to prompts[i]
    scorer          texts -> P(pos), applied to ``prompt + response``
    path            the samples file (module table); created, or resumed after its last full line
    num_samples     K samples per prompt (paper: 4)
    chunk_size      prompts per sampling batch and per append (one write + fsync)
    ==============  ============================================================================

    The chunk that starts at prompt i samples with the seed ``SeedSequence([seed, i])``: a run
    resumed at a chunk boundary (the usual case, since a chunk is appended in one write) writes the
    same records as an uninterrupted one.

    Introduced in notebook 05.
    """
    from tqdm.auto import tqdm

    from ..lm import sample
    from .sft import prompt_ids

    prompts = list(prompts)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    path = Path(path)
    records = read_samples(path, repair=True)
    if len(records) > len(prompts):
        raise ValueError(f"{path} holds {len(records)} prompts but only {len(prompts)} were given")
    for number, (record, prompt) in enumerate(zip(records, prompts), start=1):
        if record.get("prompt") != prompt:
            raise ValueError(
                f"{path}, line {number}: prompt {record.get('prompt')!r} is not prompt "
                f"{number - 1} of this generation ({prompt!r})"
            )
    bar = tqdm(total=len(prompts), initial=len(records), desc="samples", disable=not progress)
    for start in range(len(records), len(prompts), chunk_size):
        chunk = prompts[start : start + chunk_size]
        chunk_seed = int(np.random.SeedSequence([seed, start]).generate_state(1)[0])
        out = sample(
            policy,
            tokenizer,
            prompt_ids(chunk, tokenizer),
            num_samples,
            max_new_tokens,
            chunk_seed,
            batch_size=len(chunk) * num_samples,
        )
        scores = scorer([chunk[i] + text for i, text in zip(out.prompt_index, out.texts)])
        lines = []
        for i, prompt in enumerate(chunk):
            rows = range(i * num_samples, (i + 1) * num_samples)
            lines.append(
                {
                    "index": start + i,
                    "prompt": prompt,
                    "prompt_ids": out.prompt_ids[rows[0]],
                    "responses": [out.texts[r] for r in rows],
                    "response_ids": [out.response_ids[r] for r in rows],
                    "scores": [float(scores[r]) for r in rows],
                }
            )
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(record) + "\n" for record in lines))
            fh.flush()
            os.fsync(fh.fileno())
        records += lines
        bar.update(len(chunk))
    bar.close()
    return records


def pairs_from_samples(records) -> list[dict]:
    """All ordered pairs of every prompt's samples (module docstring), with ODPO offsets.

    Introduced in notebook 05.
    """
    pairs = []
    for record in records:
        texts, ids, scores = record["responses"], record["response_ids"], record["scores"]
        for w, lose in ordered_pairs(scores):
            if texts[w].strip() and texts[lose].strip() and texts[w] != texts[lose]:
                pairs.append(
                    {
                        "prompt": record["prompt"],
                        "chosen": texts[w],
                        "rejected": texts[lose],
                        "score_chosen": scores[w],
                        "score_rejected": scores[lose],
                        "prompt_ids": record["prompt_ids"],
                        "chosen_ids": ids[w],
                        "rejected_ids": ids[lose],
                        "prompt_index": record["index"],
                    }
                )
    if pairs:
        offsets = pair_offsets([p["score_chosen"] for p in pairs], [p["score_rejected"] for p in pairs])
        for pair, offset in zip(pairs, offsets):
            pair["offset"] = float(offset)
    return pairs


def write_pairs(pairs, path: str | Path) -> Path:
    """Write ``pairs`` as JSONL at once (atomically: a reader sees the old file or the new one).

    Introduced in notebook 05.
    """
    path = Path(path)
    lines = "".join(json.dumps({k: pair[k] for k in PAIR_FIELDS}) + "\n" for pair in pairs)
    atomic_write(path, lambda p: p.write_text(lines, encoding="utf-8"))
    return path


def _check_pair(pair, where: str) -> None:
    if not isinstance(pair, dict):
        raise ValueError(f"{where}: a pair must be a JSON object, got {type(pair).__name__}")
    missing = [k for k in PAIR_FIELDS if k not in pair]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    for key in _TEXT_FIELDS:
        if not isinstance(pair[key], str) or not pair[key].strip():
            raise ValueError(f"{where}: {key} must be a non-empty string, got {pair[key]!r}")
    if pair["chosen"] == pair["rejected"]:
        raise ValueError(f"{where}: chosen and rejected are identical")
    for key in _NUMBER_FIELDS:
        value = pair[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}: {key} must be a finite number, got {value!r}")
    if not pair["score_chosen"] > pair["score_rejected"]:
        raise ValueError(
            f"{where}: score_chosen {pair['score_chosen']} is not above score_rejected "
            f"{pair['score_rejected']} (pairs are ordered and ties dropped)"
        )
    for key in _ID_FIELDS:
        ids = pair[key]
        if not (
            isinstance(ids, list)
            and ids
            and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids)
        ):
            raise ValueError(f"{where}: {key} must be a non-empty list of token ids")


def load_pairs(path: str | Path) -> list[dict]:
    """The pairs of a file written by :func:`write_pairs` (gzip-compressed when its name ends in
    ``.gz``, as a release ships them), each checked: a malformed line, a missing field, an empty or
    identical chosen / rejected, a non-finite score or offset, an unordered pair or bad token ids
    raise ``ValueError`` naming the file and line.

    Introduced in notebook 05.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pairs file at {path}")
    pairs = []
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            where = f"{path}, line {number}"
            if not line.strip():
                raise ValueError(f"{where}: empty line")
            try:
                pair = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: malformed JSON ({err})") from err
            _check_pair(pair, where)
            pairs.append(pair)
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def trainer_pairs(pairs, odpo: bool = False) -> list[dict]:
    """``pairs`` in the format of ``dpo_lab.lm.train_preferences``: dicts of ``prompt_ids``,
    ``chosen_ids``, ``rejected_ids`` (+ ``offset`` when ``odpo``, for ``loss="odpo"``).

    Introduced in notebook 05.
    """
    keys = _ID_FIELDS + (("offset",) if odpo else ())
    return [{k: pair[k] for k in keys} for pair in pairs]


@dataclass
class PreferenceData:
    """The stored preference data of a profile: ``path`` (pairs.jsonl), ``samples_path``
    (samples.jsonl), the run and its summary ``result``."""

    path: Path
    samples_path: Path
    run: Run
    result: dict

    def pairs(self) -> list[dict]:
        """The checked pairs (:func:`load_pairs`)."""
        return load_pairs(self.path)

    def samples(self) -> list[dict]:
        """One record per prompt (:func:`read_samples`)."""
        return read_samples(self.samples_path)


def preference_data(profile: _config.Profile | None = None, policy=None, progress: bool = True) -> PreferenceData:
    """Build the profile's preference data once (run kind ``pairs``) and return it.

    ``profile.samples_per_prompt`` samples of at most ``profile.max_new_tokens`` tokens from pi_SFT
    (``policy``, default :func:`dpo_lab.sentiment.sft.sft_policy`) for each of the
    ``profile.n_prompts`` train prompts, scored by the profile's gold reward, sampled with
    ``profile.sample_threads`` torch threads. An interrupted build resumes where it stopped.

    Introduced in notebook 05.
    """
    from ..lm import torch_threads
    from .gold_reward import load_gold_reward
    from .prompts import train_prompts
    from .sft import sft_policy

    profile = profile or _config.get_profile()
    policy = policy or sft_policy(profile, progress=progress)
    scorer = load_gold_reward(profile=profile)
    prompts = train_prompts(profile)
    cfg = {
        "policy": policy.run.id,
        "gold_reward": scorer.name,
        "n_prompts": len(prompts),
        "prompts_sha256": hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest(),
        "samples_per_prompt": profile.samples_per_prompt,
        "max_new_tokens": profile.max_new_tokens,
        "seed": profile.sampling_seed,
        "chunk_size": CHUNK_PROMPTS,
    }
    run = open_run("pairs", cfg)
    samples_path, pairs_path = run.artifact("samples.jsonl"), run.artifact("pairs.jsonl")
    if not run.finished:
        # A sampling step is hundreds of tiny operations: a second thread mostly waits (lm.sampling).
        with torch_threads(profile.sample_threads) if profile.sample_threads else contextlib.nullcontext():
            records = generate_samples(
                policy.model,
                policy.tokenizer,
                prompts,
                scorer,
                samples_path,
                profile.samples_per_prompt,
                profile.max_new_tokens,
                profile.sampling_seed,
                chunk_size=cfg["chunk_size"],
                progress=progress,
            )
        pairs = pairs_from_samples(records)
        write_pairs(pairs, pairs_path)
        scores = np.array([r["scores"] for r in records])
        k = profile.samples_per_prompt
        run.finish(
            {
                "n_prompts": len(records),
                "n_pairs": len(pairs),
                "pairs_dropped": len(records) * k * (k - 1) // 2 - len(pairs),
                "mean_reward": float(scores.mean()),
                "eos_share": float(
                    np.mean([ids[-1] == policy.tokenizer.eos_token_id for r in records for ids in r["response_ids"]])
                ),
            }
        )
    return PreferenceData(pairs_path, samples_path, run, run.result())
