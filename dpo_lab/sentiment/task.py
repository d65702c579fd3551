"""The IMDb controlled-sentiment task as a :class:`dpo_lab.task.Task` (DPO paper Sec. 6.1).

Introduced in notebook 06. Every member calls the function of this package that notebook 05
introduces, at the task's profile:

=========================  =====================================================================
Task member                IMDb
=========================  =====================================================================
build_reference            ``sft_policy``: a GPT-2 fine-tuned on the sft part of the reviews
train_prompts              ``train_prompts``: 2-8-token review openings of the prompts part
test_prompts               ``heldout_prompts``: openings of the test part
prompt_ids                 ``prompt_ids``: ``[EOS] + tokens`` ("a review starts here")
preference_pairs           ``preference_data(...).pairs()``: 4 pi_SFT samples per prompt, every
                           pair with unequal gold reward, ODPO offsets log(s_w - s_l)
gold_reward                ``load_gold_reward``: P(positive) of the profile's classifier
second_scorer              ``load_second_scorer``: VADER, which built no pairs
exact_evaluation           None: the response space cannot be enumerated
=========================  =====================================================================
"""

from __future__ import annotations

from ..evaluation import DEFAULT_TASK
from ..task import Scorer, SFTPolicy, Task
from .gold_reward import load_gold_reward, load_second_scorer
from .pairs import preference_data
from .prompts import heldout_prompts, train_prompts
from .sft import prompt_ids, sft_policy


class IMDbTask(Task):
    """Continue an IMDb review opening with positive sentiment (module table).

    Introduced in notebook 06.
    """

    name = DEFAULT_TASK

    def build_reference(self, progress: bool = True) -> SFTPolicy:
        return sft_policy(self.profile, progress=progress)

    def train_prompts(self) -> list[str]:
        return train_prompts(self.profile)

    def test_prompts(self) -> list[str]:
        return heldout_prompts(self.profile)

    def prompt_ids(self, prompts: list[str], tokenizer) -> list[list[int]]:
        return prompt_ids(prompts, tokenizer)

    def preference_pairs(self, progress: bool = True) -> list[dict]:
        return preference_data(self.profile, policy=self.reference(progress), progress=progress).pairs()

    def gold_reward(self) -> Scorer:
        return load_gold_reward(profile=self.profile)

    def second_scorer(self) -> Scorer:
        return load_second_scorer()
