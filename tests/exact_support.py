"""Shared setup of the exact-task tests (tests/test_exact_*.py): the default task, a tiny pi_ref
trained by the engine in a temporary run store, and a one-thread fixture (import the fixtures into a
test module to use them)."""

import numpy as np
import pytest

from dpo_lab.exact import train_reference
from dpo_lab.lm import torch_threads

# 100 steps of 32 sentences: about a second, and already far from uniform (KL(pi_ref || uniform) > 2).
TINY_STEPS, TINY_BATCH = 100, 32


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread and lose a lot when other jobs share the cores."""
    with torch_threads(1):
        yield


def tiny_reference(space, tmp_path_factory):
    """pi_ref trained by ``train_reference`` (through ``lm.train_sft``) in a fresh temporary run store:
    call it from a module-scoped fixture, so each test module trains it once. On the CPU even where a
    GPU is visible: the tests' tolerances are float32's, not bf16 autocast's."""
    root = tmp_path_factory.mktemp("exact_runs")
    return train_reference(space, steps=TINY_STEPS, batch_size=TINY_BATCH, run_root=root, device="cpu")


def random_policy(space, rng, temperature: float = 3.0) -> np.ndarray:
    """A random (P, K) policy: softmax of Gaussian logits of scale ``temperature`` (far from uniform)."""
    from dpo_lab.exact import softmax_policy

    return softmax_policy(temperature * rng.standard_normal((space.n_prompts, space.n_responses)))
