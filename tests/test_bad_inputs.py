"""A catalogue of bad inputs, each run through the real `dlm fit` entry point: every one exits
non-zero with a one-line message naming the problem and leaves no partial checkpoint behind.

`main` runs in-process (fast); its exit semantics are the console script's: a SystemExit whose
code is a string is printed to stderr as the last line with exit status 1, an integer code (2:
the configuration does not parse) follows the line `main` printed to stderr."""

import json
import os

import datasets.config
import huggingface_hub.constants
import lightning
import pytest
import torch

from dlm.core import ByteTokenizer, ModelConfig, Transformer, save_checkpoint, to_hf
from dlm.core.checkpoint import checkpoint_record
from dlm.training.cli import main


@pytest.fixture
def inputs(tmp_path, tiny_inputs):
    """Bad files and directories, built outside the run's working directory."""
    root = tmp_path / "inputs"
    root.mkdir()
    (root / "empty").mkdir()
    (root / "empty/empty.txt").write_text("")
    torch.manual_seed(0)
    tiny = ModelConfig(vocab_size=260, dim=32, n_layers=2, n_heads=2, max_seq_len=64)
    # An HF directory whose index names a shard that is not there.
    to_hf(Transformer(tiny), ByteTokenizer(), root / "hf")
    (root / "hf/model.safetensors").rename(root / "hf/model-00001-of-00002.safetensors")
    names = _weight_names(root / "hf")
    weight_map = {n: f"model-0000{1 + (i == 0)}-of-00002.safetensors" for i, n in enumerate(names)}
    (root / "hf/model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    # A dlm checkpoint whose weights file is garbage.
    save_checkpoint(Transformer(tiny), ByteTokenizer(), root / "corrupt")
    (root / "corrupt/model.safetensors").write_bytes(b"\x00garbage" * 100)
    # A drafter initial checkpoint with a different vocabulary than the target's.
    save_checkpoint(Transformer(tiny.replace(vocab_size=300)), ByteTokenizer(), root / "drafter")
    # A Lightning checkpoint written for a wider model.
    wide = Transformer(tiny.replace(dim=64, mask_token_id=258))
    torch.save(
        {
            "pytorch-lightning_version": lightning.__version__,
            "epoch": 0,
            "global_step": 3,
            "state_dict": {f"model.{k}": v for k, v in wide.state_dict().items()},
            "dlm": checkpoint_record(wide, ByteTokenizer()),
        },
        root / "wide.ckpt",
    )
    # A Lightning checkpoint of the right model whose pickle calls os.system while it loads.
    plain = Transformer(tiny)
    torch.save(
        {
            "pytorch-lightning_version": lightning.__version__,
            "state_dict": {f"model.{k}": v for k, v in plain.state_dict().items()},
            "dlm": checkpoint_record(plain, ByteTokenizer()),
            "hyper_parameters": Payload(root / "payload-ran"),
        },
        root / "payload.ckpt",
    )
    (root / "garbage.ckpt").write_bytes(b"this is not a checkpoint")
    (root / "numbers.jsonl").write_text('{"text": "one two three"}\n{"text": 7}\n')
    (root / "a-file").write_text("")
    return {"root": root, "ar": tiny_inputs["ar"]}


class Payload:
    """Pickles as os.system("touch <marker>"): what a hostile checkpoint runs while it loads."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _weight_names(directory):
    from safetensors import safe_open

    with safe_open(str(directory / "model-00001-of-00002.safetensors"), "pt") as f:
        return list(f.keys())


# (name, extra arguments given the inputs, expected exit status, what the message must say)
CASES = [
    ("corpus that is neither embedded, local nor on the hub", lambda i: ["--data.init_args.corpus", "no-such-corpus"], 1,
     "ValueError: corpus 'no-such-corpus' is neither an embedded corpus (shakespeare, stdlib-code), nor a local file, directory or glob, nor a dataset reachable on the HF hub ("),
    ("corpus rows whose text is not a string", lambda i: ["--data.init_args.corpus", f"{i['root']}/numbers.jsonl"], 1,
     "ValueError: corpus '{root}/numbers.jsonl': row 2 has 'text' 7 (int), expected a string"),
    ("empty corpus name", lambda i: ["--data.init_args.corpus", ""], 1,
     "ValueError: corpus must name an embedded corpus, local files or an HF hub dataset, got ''"),
    ("max_documents 0", lambda i: ["--data.init_args.max_documents", "0"], 1,
     "ValueError: max_documents must be a positive integer or None, got 0"),
    ("negative max_steps", lambda i: ["--trainer.max_steps", "-5"], 1,
     "MisconfigurationException: `max_steps` must be a non-negative integer or -1 (infinite steps). You passed in -5."),
    ("an accelerator whose library is missing", lambda i: ["--trainer.accelerator", "tpu"], 1,
     "ModuleNotFoundError: Requirement 'torch_xla"),
    ("missing data file", lambda i: ["--data.init_args.corpus", f"{i['root']}/nowhere/train.jsonl"], 1,
     "FileNotFoundError: corpus file or directory '{root}/nowhere/train.jsonl' does not exist"),
    ("empty corpus", lambda i: ["--data.init_args.corpus", f"{i['root']}/empty"], 1,
     "ValueError: corpus '{root}/empty' holds no text"),
    ("seq_len not a multiple of the block size", lambda i: ["--data.init_args.seq_len", "60"], 1,
     "ValueError: seq_len 60 is not a multiple of block_size 16"),
    ("HF directory with a missing shard", lambda i: ["--model.init_args.init_from", f"{i['root']}/hf"], 1,
     "FileNotFoundError: {root}/hf: shard model-00002-of-00002.safetensors named in model.safetensors.index.json is missing"),
    ("resume from a checkpoint of another architecture", lambda i: ["--ckpt_path", f"{i['root']}/wide.ckpt"], 1,
     "ValueError: {root}/wide.ckpt holds a model with dim=64 but this run's model has dim=32"),
    ("init_from another architecture", lambda i: ["--model.init_args.architecture.dim", "64"], 1,
     "ValueError: {ar}: the checkpoint has dim=32 but the config sets architecture.dim=64"),
    ("unknown class_path", lambda i: ["--model.init_args.pattern", "dlm.training.NoSuchPattern"], 2,
     "model.pattern: class_path 'dlm.training.NoSuchPattern': module 'dlm.training' has no attribute 'NoSuchPattern'"),
    ("negative learning rate", lambda i: ["--model.init_args.optimization.lr", "-0.001"], 1,
     "ValueError: optimization.lr=-0.001 must be a positive number"),
    ("block size 0", lambda i: ["--model.init_args.block_size", "0"], 1,
     "ValueError: block_size must be an integer >= 2, got 0"),
    ("drafter / target vocabulary mismatch", lambda i: [
        "--model", "dlm.training.DrafterModule", "--model.init_args.target", str(i["ar"]),
        "--model.init_args.init_from", f"{i['root']}/drafter", "--model.init_args.block_size", "8"], 1,
     "ValueError: the drafter's vocabulary (300 tokens) differs from the target's (260 tokens"),
    ("corrupt safetensors file", lambda i: ["--model.init_args.init_from", f"{i['root']}/corrupt"], 1,
     "ValueError: {root}/corrupt/model.safetensors: not a readable safetensors file"),
    ("unwritable output directory", lambda i: ["--trainer.default_root_dir", f"{i['root']}/a-file/runs"], 1,
     "ValueError: cannot write trainer.default_root_dir {root}/a-file/runs (Not a directory)"),
    ("num_nodes > 1 without a launcher", lambda i: ["--trainer.num_nodes", "2", "--trainer.accelerator", "cpu"], 1,
     "ValueError: trainer.num_nodes=2 but no launcher started this process as one of 2 nodes"),
    ("corrupt checkpoint to resume from", lambda i: ["--ckpt_path", f"{i['root']}/garbage.ckpt"], 1,
     "ValueError: {root}/garbage.ckpt: not a readable checkpoint (File is not a zip file)"),
    ("resume from a checkpoint with a pickled payload", lambda i: ["--ckpt_path", f"{i['root']}/payload.ckpt"], 1,
     "ValueError: {root}/payload.ckpt: refused to load: it holds a pickled posix.system, not only the tensors"),
    ("init_from a checkpoint with a pickled payload", lambda i: ["--model.init_args.init_from", f"{i['root']}/payload.ckpt"], 1,
     "ValueError: {root}/payload.ckpt: refused to load: it holds a pickled posix.system, not only the tensors"),
    ("missing checkpoint to resume from", lambda i: ["--ckpt_path", f"{i['root']}/nowhere.ckpt"], 1,
     "FileNotFoundError: checkpoint {root}/nowhere.ckpt does not exist"),
    ("batch size 0", lambda i: ["--data.init_args.batch_size", "0"], 1,
     "ValueError: batch_size must be a positive integer, got 0"),
    ("wrong type for a trainer option", lambda i: ["--trainer.max_steps", "many"], 2,
     "trainer.max_steps: Expected a <class 'int'>. Got value: many"),
    ("missing config file", lambda i: ["--config", f"{i['root']}/nowhere.yaml"], 2,
     "config: File does not exist: '{root}/nowhere.yaml'"),
    ("a learning rate that blows up to NaN", lambda i: ["--model.init_args.optimization.lr", "1e30"], 1,
     "FloatingPointError: non-finite loss or gradient at step 1 (epoch 0), batch samples ["),
]  # fmt: skip


def run(args, capsys):
    """(exit status, stderr lines) as the console script would give them."""
    try:
        main(args)
        status, message = 0, None
    except SystemExit as exit_:
        code = exit_.code
        status, message = (1, code) if isinstance(code, str) else (code or 0, None)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return status, lines + ([message] if message else [])


@pytest.mark.parametrize("name, extra, status, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_no_checkpoint(
    name, extra, status, expected, inputs, make_config, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("DLM_CACHE_DIR", str(tmp_path / "cache"))
    # Offline as the CI machine is, without the hub client's retries (26 s for an unknown corpus).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    for var in (
        "NODE_RANK",
        "GROUP_RANK",
        "MASTER_ADDR",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "SLURM_NTASKS",
        "SLURM_JOB_NAME",
    ):
        monkeypatch.delenv(var, raising=False)
    config = make_config(tmp_path / "config.yaml")
    code, lines = run(["fit", "--config", str(config), *extra(inputs)], capsys)

    assert code == status, lines[-5:]
    last = lines[-1]
    assert last.startswith("dlm: error: ") and "Traceback" not in "\n".join(lines), lines[-5:]
    assert expected.format(root=inputs["root"], ar=inputs["ar"]) in last, last
    assert not (inputs["root"] / "payload-ran").exists(), "no code runs from a loaded file"
    written = [p for p in work.rglob("*") if p.is_file()]
    assert not [p for p in written if p.suffix == ".tmp" or p.name in ("dlm.json", "model.safetensors")]
    for ckpt in (p for p in written if p.suffix == ".ckpt"):  # only the NaN case trains a step
        assert name.startswith("a learning rate"), ckpt
        state = torch.load(ckpt, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values()), "no NaN model is saved"


def test_the_catalogue_is_long_enough():
    assert len(CASES) >= 12
