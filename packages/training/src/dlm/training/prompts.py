"""Prompt sources for self-distillation: where the prompts a model answers come from.

A source is an object chosen in YAML (`prompts: {class_path: dlm.training.StdlibCodeTasks}`), so
other sources plug in. It gives the prompts of a split as text, already framed (dlm.core.chat: the
same framing evaluation uses), and says when an answer is complete.
"""

from __future__ import annotations

from typing import Any, Literal

from dlm.core.chat import ends_answer, frame_code_prompt
from dlm.core.code_tasks import PYTHON, stdlib_code_tasks

# Data splits (train / validation / test, as every data module names them) -> code-task splits.
TASK_SPLITS = {"train": "train", "validation": "validation", "test": "heldout"}


class PromptSource:
    """Base class: `texts(split, tokenizer)` and `describe()`; `finished(text)` ends an answer early."""

    def texts(self, split: str, tokenizer: Any) -> list[str]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the distilled data records about its prompts (meta.json)."""
        raise NotImplementedError

    def finished(self, text: str) -> bool:
        """Whether an answer (decoded so far) is complete; EOS and the length budget also end one."""
        return False


class StdlibCodeTasks(PromptSource):
    """The standard library's documented functions as code tasks (dlm.core.code_tasks): signature and
    docstring, HumanEval's shape, split by function (the test split is the held-out one), HumanEval's
    entry points excluded.

    Args:
        framing: "instruct" (the checkpoint's chat template and evalplus's framing; an answer ends
            at its closing code fence) or "raw" (the bare prompt, for a base model).
    """

    def __init__(self, framing: Literal["instruct", "raw"] = "instruct") -> None:
        if framing not in ("instruct", "raw"):
            raise ValueError(f"framing must be 'instruct' or 'raw', got {framing!r}")
        self.framing = framing

    def texts(self, split: str, tokenizer: Any) -> list[str]:
        if split not in TASK_SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(TASK_SPLITS)}")
        tasks = stdlib_code_tasks(TASK_SPLITS[split])
        if not tasks:
            raise ValueError(f"the standard library of Python {PYTHON} gave no {split} code tasks")
        return [frame_code_prompt(tokenizer, task.prompt, self.framing) for task in tasks]

    def describe(self) -> dict[str, Any]:
        return {"source": "stdlib-code-tasks", "framing": self.framing, "python": PYTHON}

    def finished(self, text: str) -> bool:
        return self.framing == "instruct" and ends_answer(text)
