"""Chat templates and the instruct framing of code tasks.

A chat template is Jinja text shipped with a checkpoint (SmolLM2: `chat_template.jinja`; others:
`tokenizer_config.json`'s `chat_template`). It is rendered as transformers renders it (a sandboxed
Jinja environment with trim_blocks and lstrip_blocks, `raise_exception` and `tojson`), so a template
from a downloaded checkpoint can format text but never run code. Training prompts and evaluation
prompts go through the same `code_instruct_prompt`, so a model is trained and scored on one framing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

# evalplus's framing of a code task for an instruct model: the user asks for a self-contained
# script, and the assistant's turn is pre-filled up to an opening fence, so the completion is code
# up to the closing fence. On SmolLM2-135M-Instruct it scores where lm-eval's humaneval_instruct
# framing (prompt repeated inside the pre-filled turn) scores 0: the model closes the fence at once.
CODE_REQUEST = (
    "Please provide a self-contained Python script that solves the following problem in a markdown code "
    "block:\n```python\n{prompt}\n```"
)
CODE_RESPONSE = (
    "Below is a Python script with a self-contained function that solves the problem and passes "
    "corresponding tests:\n```python\n"
)
CLOSING_FENCE = "```"


class TemplateError(ValueError):
    """A chat template that does not render (bad Jinja, or the template's own raise_exception)."""


@cache
def compile_template(source: str):
    from jinja2 import TemplateError as JinjaError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(f"chat template: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(source)
    except JinjaError as err:
        raise TemplateError(f"chat template does not parse: {err}") from None


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, str]],
    add_generation_prompt: bool = True,
    **special_tokens: Any,
) -> str:
    """`messages` ({"role", "content"} dicts) as text under `template`, with the assistant's turn
    opened when add_generation_prompt is set (what transformers' apply_chat_template(tokenize=False)
    returns). `special_tokens` (bos_token, eos_token, ...) are visible to the template."""
    from jinja2 import TemplateError as JinjaError

    try:
        return compile_template(template).render(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            **special_tokens,
        )
    except JinjaError as err:
        raise TemplateError(f"chat template does not render: {err}") from None


def code_instruct_prompt(tokenizer, prompt: str) -> str:
    """The text an instruct model is given for a code task `prompt` (a signature and docstring):
    its chat template as shipped (any default system message included), the request, and the
    assistant's turn opened up to a ```python fence. The answer ends at the closing fence or EOS."""
    user = CODE_REQUEST.format(prompt=prompt.strip())
    return tokenizer.apply_chat_template([{"role": "user", "content": user}]) + CODE_RESPONSE


def frame_code_prompt(tokenizer, prompt: str, framing: str) -> str:
    """The one framing of a code task, for training and evaluation alike: "instruct"
    (`code_instruct_prompt`) or "raw" (the prompt as it is, for a base model)."""
    if framing == "instruct":
        return code_instruct_prompt(tokenizer, prompt)
    if framing == "raw":
        return prompt
    raise ValueError(f"prompt framing must be 'instruct' or 'raw', got {framing!r}")


def ends_answer(text: str) -> bool:
    """Whether an answer to an instruct code prompt is complete: it has closed its code fence."""
    return CLOSING_FENCE in text


def code_from_answer(answer: str) -> str:
    """The code of an answer to `code_instruct_prompt`: the text before the closing fence."""
    return answer.split(CLOSING_FENCE, 1)[0]
