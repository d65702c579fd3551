"""dpo_lab: Direct Preference Optimization, from the closed form to a GPT-2 reward-KL frontier.

The notebooks in ``notebooks/`` tell the story; this package holds the reusable parts, one module per
concept (README, "Layout", has the module map and which way imports point): ``config`` (profiles),
``bandits`` and ``preferences`` (numpy theory), ``losses`` (torch losses), ``runs`` (the run store),
``lm`` (the language-model engine), ``task`` (what a task supplies), ``sentiment`` (the IMDb task),
``sweep`` (the experiment), ``evaluation``, ``results``, ``frontier`` and ``plots`` (reading and
showing the runs), ``checks`` and ``assignments`` (exercises and the student release). Submodules are
imported on use, so the theory notebooks never pay for torch or transformers.
"""

__version__ = "0.1.0"
