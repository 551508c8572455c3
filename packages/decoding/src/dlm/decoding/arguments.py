"""The command-line spelling the decoding CLIs share (dlm-decode, dlm-eval humaneval and lm-eval).

Each CLI is a jsonargparse parser built from function signatures (as dlm-distill): dlm.decoding.options'
`short_decoders` and `load`, and the CLI's own function. `spelled` keeps the familiar spelling working:
`--max-new-tokens 8` for `--max_new_tokens 8`, `--decoder a b` for `--decoder [a,b]`, a bare
`--cross-block` for `--cross_block true`. A bad option or value is one line (`one_line`, `fail`).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter, Namespace


def parser(prog: str, description: str | None, *functions: Callable[..., Any], skip=()) -> ArgumentParser:
    """One flat jsonargparse parser of the functions' parameters (and --config YAML files)."""
    p = ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter, exit_on_error=False)
    p.add_argument("--config", action=ActionConfigFile)
    for function in functions:
        p.add_function_arguments(function, as_group=False, skip=set(skip))
    return p


class HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's help with the description (the CLI's docstring) as written."""


def parse(p: ArgumentParser, argv: Sequence[str], *functions: Callable[..., Any]) -> Namespace:
    """The parsed (not yet instantiated) config of `argv`, spelled as `spelled` reads it; a bad
    option is a ValueError of one line."""
    try:
        return p.parse_args(spelled(argv, *functions))
    except argparse.ArgumentError as err:
        raise ValueError(one_line(str(err))) from None


def one_line(message: str) -> str:
    """jsonargparse's several-line message for a bad value as `--key: got V, expected T`."""
    key = re.search(r'Parser key "([^"]+)"', message)
    given = re.search(r"Given value: (.*)", message)
    if key is None or given is None:
        return " ".join(message.split()) + " (see --help)"
    expected = [
        e.strip().rstrip(".")
        for e in re.findall(r"Expected a (.*?)(?:\. Got value|$)", message, re.M)
        if "NoneType" not in e
    ]
    kinds = " or ".join(
        dict.fromkeys(
            e.replace("<class '", "").replace("'>", "").replace("typing.Literal[", "one of [")
            for e in expected
        )
    )
    if not kinds:  # e.g. a class_path that cannot be imported: the first reason given
        reasons: list[str] = []
        for line in message.splitlines():
            if line.strip().startswith("- "):
                reasons.append(line.strip(" -"))
            elif reasons and not line.strip().startswith("Given value"):
                reasons[-1] += " " + line.strip()
            elif line.strip().startswith("Given value"):
                break
        kinds = next((r for r in reasons if "NoneType" not in r), "another value")
        return f"--{key.group(1)}: {kinds} (see --help)"
    return f"--{key.group(1)}: got {given.group(1).strip()}, expected {kinds} (see --help)"


def parameters(function: Callable[..., Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `config` that `function` takes."""
    names = inspect.signature(function).parameters
    return {key: value for key, value in config.items() if key in names}


def spelled(argv: Sequence[str], *functions: Callable[..., Any]) -> list[str]:
    """argv in jsonargparse's spelling: `--a-b` is `--a_b` (for the functions' parameters), a
    bare boolean flag is `--flag=true`, and a list option takes the values after it up to the next
    option (`--decoder ar self-spec` is `--decoder=["ar", "self-spec"]`)."""
    kinds: dict[str, str] = {}
    for function in functions:
        hints = typing.get_type_hints(function)
        for name in inspect.signature(function).parameters:
            kinds[name] = kind_of(hints.get(name))
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if not token.startswith("--") or token == "--":
            out.append(token)
            continue
        flag, eq, value = token[2:].partition("=")
        name = flag.replace("-", "_")
        if name not in kinds:
            out.append(token)
            continue
        if eq:
            out.append(f"--{name}={value}")
            continue
        following = []
        while i < len(argv) and not argv[i].startswith("--"):
            following.append(argv[i])
            i += 1
        if kinds[name] == "bool" and not following:
            out.append(f"--{name}=true")
        elif kinds[name] == "list" and (len(following) > 1 or following and not following[0].startswith("[")):
            out.append(f"--{name}=[{', '.join(quoted(v) for v in following)}]")
        else:
            out += [f"--{name}", *following]
    return out


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kind_of(hint: Any) -> str:
    """ "bool", "list" or "other" for a parameter's type (Optional unwrapped; a union with bool, such
    as `compile: bool | str | None`, is "bool": a bare flag means true)."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    args = tuple(a for a in args if a is not type(None))
    if bool in args:
        return "bool"
    if len(args) == 1 and typing.get_origin(args[0]) in (list, Sequence):
        return "list"
    return "other"


def resolved(p: ArgumentParser, config: Namespace) -> dict[str, Any]:
    """The parsed config as plain JSON-able data (decoders as class_path/init_args)."""
    data = json.loads(p.dump(config, format="json", skip_validation=True))
    data.pop("config", None)
    return data


def fail(prog: str, err: BaseException) -> int:
    """One line on stderr, exit status 2 (DLM_TRACEBACK=1 raises instead)."""
    if os.environ.get("DLM_TRACEBACK"):
        raise err
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2
