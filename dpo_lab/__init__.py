"""dpo_lab: Direct Preference Optimization, from the closed form to a GPT-2 reward-KL frontier.

The notebooks in ``notebooks/`` tell the story; this package holds the reusable parts
(ARCHITECTURE.md): ``config`` (profiles), ``bandits`` (numpy theory), ``losses`` (torch losses),
``runs`` (the run store), ``lm`` (the language-model engine), ``sentiment`` (the IMDb task),
``frontier`` (reward-KL plots), ``checks`` and ``assignments`` (exercises and the student release).
Submodules are imported on use, so the theory notebooks never pay for torch or transformers.
"""
__version__ = "0.1.0"
