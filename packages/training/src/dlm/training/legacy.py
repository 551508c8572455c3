"""Configs written before `evaluation:` keep running: the old decoder keys of a module
(`decoders`, `decode`, `baseline`, `plot`) are rewritten into one `evaluation:` entry naming
dlm.decoding.Evaluation by class_path (a string: training still never imports decoding).
Removed in the next release; the training CHANGELOG shows the rewrite."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

OLD_KEYS = ("decoders", "decode", "baseline", "plot")
EVALUATION = "dlm.decoding.Evaluation"
FLAGS = ("--config", "-c")


def migrate_model(model: Any) -> bool:
    """Rewrite a `model:` entry in place; whether it held old keys."""
    if not isinstance(model, dict) or not isinstance(model.get("init_args"), dict):
        return False
    args = model["init_args"]
    if not any(key in args for key in OLD_KEYS):
        return False
    if "evaluation" in args:
        raise ValueError(
            f"model.init_args sets both evaluation and the old keys {[k for k in OLD_KEYS if k in args]}; "
            "keep evaluation only"
        )
    module = str(model.get("class_path", "")).rsplit(".", 1)[-1]
    evaluation: dict[str, Any] = {"decoders": args.pop("decoders", None) or {}}
    evaluation.update(args.pop("decode", None) or {})
    # The old defaults of each module: tri-mode compared with "ar"; the drafter always plotted
    # and wrote drafter_eval.json.
    baseline = args.pop("baseline", "ar" if module == "TriModeModule" else None)
    if baseline is not None and (module != "TriModeModule" or baseline in evaluation["decoders"]):
        evaluation["baseline"] = baseline
    if args.pop("plot", None) is not None or module == "DrafterModule":
        evaluation["plot"] = True
    if module == "DrafterModule":
        evaluation["report"] = "drafter_eval"
    if evaluation["decoders"]:
        args["evaluation"] = {"class_path": EVALUATION, "init_args": evaluation}
    return True


def migrate_args(argv: list[str]) -> list[str]:
    """argv with every old-style config file passed as its migrated YAML text (jsonargparse takes a
    config as a path or as text) and `--model.init_args.decode.X` as the evaluation's X."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        flag, _, inline = arg.partition("=")
        if flag in FLAGS and (inline or i + 1 < len(argv)):
            value = inline or argv[i + 1]
            i += 1 if inline else 2
            out += [flag, migrated_file(value)]
            continue
        for old in ("--model.init_args.decode.", "--model.init_args.decoders."):
            if arg.startswith(old):
                new = "--model.init_args.evaluation.init_args." + arg.removeprefix("--model.init_args.")
                arg = new.replace(".init_args.decode.", ".init_args.", 1)
                warn(f"{flag} is now {arg.partition('=')[0]}")
        out.append(arg)
        i += 1
    return out


def migrated_file(value: str) -> str:
    path = Path(value)
    if not path.is_file():
        return value
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return value  # jsonargparse reports the bad file in its own words
    if not isinstance(config, dict) or not migrate_model(config.get("model")):
        return value
    warn(f"{path}: model.init_args.{{decoders, decode, baseline, plot}} are now model.init_args.evaluation")
    return yaml.safe_dump(config, sort_keys=False)


def warn(message: str) -> None:
    print(f"dlm: deprecated: {message} (see the dlm-training CHANGELOG)", file=sys.stderr)
