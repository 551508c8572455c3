"""The drafter on the real checkpoint: SmolLM2-135M-Instruct as the frozen target, the drafter its
first 4 layers with "<empty_output>" as [MASK] (apps/drafter/configs/smollm2-135m.yaml), and the
pairs and settings it must refuse, each with one clear line."""

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from dlm.core import ByteTokenizer, HFTokenizer, ModelConfig, Transformer, load_model, save_checkpoint, to_hf
from dlm.core.fetch import SOURCES
from dlm.decoding import ARDecoder
from dlm.training import Architecture, DistilledDataModule, DrafterModule
from dlm.training.drafter.distill import distill

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / SOURCES["smollm2"].directory
CONFIG = ROOT / "apps/drafter/configs/smollm2-135m.yaml"
MASK = "<empty_output>"


@pytest.fixture(scope="module", autouse=True)
def one_thread(smollm2):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def drafter(**changes) -> DrafterModule:
    kwargs = dict(
        target=str(CHECKPOINT),
        init_from=str(CHECKPOINT),
        architecture=Architecture(n_layers=4),
        mask_token=MASK,
        block_size=8,
    )
    return DrafterModule(**{**kwargs, **changes})


def test_the_drafter_is_the_targets_first_layers_with_an_unused_token_as_mask():
    module = drafter()
    model, target = module.model, module.target.model
    assert model.config.n_layers == 4 and target.config.n_layers == 30
    assert model.config.vocab_size == target.config.vocab_size == 49152
    assert module.tokenizer.mask_id == model.config.mask_token_id == 16
    assert module.tokenizer.tok.id_to_token(16) == MASK and module.target.tokenizer.mask_id is None
    drafted, kept = model.state_dict(), target.state_dict()
    for name in ("layers.0.attn.q.weight", "layers.3.mlp.down.weight", "norm.weight"):
        torch.testing.assert_close(drafted[name], kept[name], rtol=0, atol=0)
    keep = [i for i in range(49152) if i != 16]
    torch.testing.assert_close(model.embed.weight[16], target.embed.weight[keep].mean(0))


def test_a_drafter_grown_by_one_mask_row_is_refused():
    with pytest.raises(ValueError, match=r"vocabulary \(49153 tokens\) differs from the target's \(49152"):
        drafter(mask_token=None)


def test_a_target_tokenizer_of_the_same_size_with_other_merges_is_refused(tmp_path):
    """The target's directory with its first two merges swapped: the same 49152 tokens, another
    tokenization of some text."""
    other = tmp_path / "other-merges"
    other.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
        (other / name).symlink_to(CHECKPOINT / name)
    spec = json.loads((CHECKPOINT / "tokenizer.json").read_text())
    merges = spec["model"]["merges"]
    merges[0], merges[1] = merges[1], merges[0]
    (other / "tokenizer.json").write_text(json.dumps(spec))
    assert HFTokenizer.from_directory(other, add_mask_token=False).vocab_size == 49152
    with pytest.raises(
        ValueError, match=r"the drafter's tokenizer \(hf, 49152 tokens.*differs from the target's"
    ):
        drafter(target=str(other))


def test_a_block_size_that_does_not_divide_seq_len_is_refused():
    with pytest.raises(ValueError, match="seq_len 252 is not a multiple of block_size 8"):
        drafter(seq_len=252)


def test_an_init_from_missing_or_of_another_architecture_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="init_from: .*nope does not exist"):
        drafter(init_from=str(tmp_path / "nope"))
    with pytest.raises(
        ValueError, match="the checkpoint has dim=576 but the config sets architecture.dim=64"
    ):
        drafter(architecture=Architecture(n_layers=4, dim=64))
    with pytest.raises(
        ValueError, match="the checkpoint has n_layers=30 but the config sets architecture.n_layers=31"
    ):
        drafter(architecture=Architecture(n_layers=31))
    byte = Transformer(ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    tiny = save_checkpoint(byte, ByteTokenizer(), tmp_path / "byte")
    with pytest.raises(ValueError, match=r"vocabulary \(260 tokens\) differs from the target's \(49152"):
        drafter(init_from=str(tiny), architecture=None, mask_token=None)


def test_labels_distilled_from_another_target_are_refused(tmp_path):
    """Another target with SmolLM2's tokenizer (a random 1-layer model) distils a few prefixes."""
    torch.manual_seed(0)
    tokenizer = HFTokenizer.from_directory(CHECKPOINT, add_mask_token=False)
    small = Transformer(ModelConfig(vocab_size=49152, dim=16, n_layers=1, n_heads=2, max_seq_len=64))
    other = to_hf(small, tokenizer, tmp_path / "other-target")
    data = distill(
        str(other), tmp_path / "distilled", ARDecoder(), "stdlib-code", samples={"train": 2},
        prefix_len=8, continuation_len=8, shard_size=2, batch_size=2, max_documents=4,
        cache_dir=str(tmp_path / "cache"), progress=False,
    )  # fmt: skip
    module = drafter()
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(
        ValueError, match=f"made by the target {other} .* but this module's teacher is {CHECKPOINT}"
    ):
        trainer.fit(module, datamodule=DistilledDataModule(str(data), seq_len=16, batch_size=2))


def test_the_config_fits_and_tests_with_speculative_decoding(tmp_path, run_dlm, read_log, two_step_config):
    """Two bf16-mixed steps of the shipped config, cut to short sequences, then its test: the
    exported drafter keeps the 49152 rows and greedy speculation ran with the target verifying."""
    config = yaml.safe_load(CONFIG.read_text())
    assert config["trainer"]["precision"] == "bf16-mixed"
    args = config["model"]["init_args"]
    args.update(target=str(CHECKPOINT), init_from=str(CHECKPOINT))
    args["evaluation"]["init_args"].update(prompts=1, prompt_tokens=16, max_new_tokens=8)
    path = two_step_config(config, "drafter.yaml")
    done = run_dlm(["fit", "--config", str(path)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = tmp_path / "runs/drafter-smollm2-135m/logs/version_0"
    losses = read_log(logs)
    assert sorted(losses) == [0, 1] and all(math.isfinite(v) for v in losses.values())
    tau = list(read_log(logs, "test/greedy/tau").values())
    assert len(tau) == 1 and 1.0 <= tau[0] <= 8.0, tau  # a verify step emits 1 to k + 1 tokens
    model, tokenizer = load_model(tmp_path / "runs/drafter-smollm2-135m/model")
    assert model.config.vocab_size == 49152 and model.config.n_layers == 4
    assert model.config.mask_token_id == tokenizer.mask_id == 16
