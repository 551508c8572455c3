import lightning.pytorch as pl
import pytest
import torch

from dlm.training import Architecture, ARLanguageModel, NonFiniteGuard, Optimization, PackedTextDataModule

BAD_STEP = 2


class Poisoned(ARLanguageModel):
    """Makes step BAD_STEP's loss (or only its gradients) NaN, and remembers every step's samples."""

    def __init__(self, where: str) -> None:
        super().__init__(
            architecture=Architecture(dim=32, n_layers=1, n_heads=2, max_seq_len=32),
            optimization=Optimization(lr=1e-2, warmup_steps=1),
        )
        self.where, self.samples = where, {}
        self.model.embed.weight.register_hook(lambda g: g * float("nan") if self.poisoned else g)

    @property
    def poisoned(self) -> bool:
        return self.global_step == BAD_STEP and self.where == "grad"

    def training_step(self, batch, batch_idx):
        self.samples[self.global_step] = batch["index"].tolist()
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step == BAD_STEP and self.where == "loss" else loss


class Weights(pl.Callback):
    """The weights at the start of every step."""

    def __init__(self):
        self.at = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.at[trainer.global_step] = {k: v.clone() for k, v in module.model.state_dict().items()}


def fit(module, guard, corpus_dir, cache_dir, tmp_path, weights=None):
    weights = weights or Weights()
    trainer = pl.Trainer(
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        gradient_clip_val=1.0,
        default_root_dir=tmp_path,
        callbacks=[guard, weights],
    )
    data = PackedTextDataModule(corpus=str(corpus_dir), seq_len=32, batch_size=3, cache_dir=cache_dir)
    trainer.fit(module, datamodule=data)
    return weights


def equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_stops_before_the_optimizer_applies_a_non_finite_step(where, corpus_dir, cache_dir, tmp_path):
    torch.manual_seed(0)
    module = Poisoned(where)
    weights = Weights()
    with pytest.raises(FloatingPointError) as info:
        fit(module, NonFiniteGuard(), corpus_dir, cache_dir, tmp_path, weights)
    message = str(info.value)
    samples = sorted(module.samples[BAD_STEP])
    assert f"non-finite loss or gradient at step {BAD_STEP} (epoch 0), batch samples {samples}" in message
    assert "skip: true" in message and "\n" not in message
    after = module.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert equal(weights.at[BAD_STEP], after), "the bad step was not applied"


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_skip_leaves_the_weights_and_goes_on(where, corpus_dir, cache_dir, tmp_path):
    torch.manual_seed(0)
    module = Poisoned(where)
    guard = NonFiniteGuard(skip=True)
    with pytest.warns(
        UserWarning, match=f"skipped the batch: non-finite loss or gradient at step {BAD_STEP}"
    ):
        weights = fit(module, guard, corpus_dir, cache_dir, tmp_path)
    assert guard.skipped == 1 and module.global_step == 5
    assert equal(weights.at[BAD_STEP], weights.at[BAD_STEP + 1]), "the skipped step changed nothing"
    assert not equal(weights.at[BAD_STEP - 1], weights.at[BAD_STEP]), "the other steps train"
    assert all(torch.isfinite(v).all() for v in module.model.state_dict().values())


def test_skipping_stops_after_max_skips(corpus_dir, cache_dir, tmp_path):
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError, match="0 batches were skipped before"):
        fit(Poisoned("loss"), NonFiniteGuard(skip=True, max_skips=0), corpus_dir, cache_dir, tmp_path)
