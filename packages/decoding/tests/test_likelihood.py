"""The likelihood of reference solutions: the AR NLL against a token-by-token reference, and the
masked CE's layout (anchored at the prompt's last token, padding invisible)."""

import pytest
import torch

from dlm.attention import Causal, SameDocument, TriMode
from dlm.core import ByteTokenizer
from dlm.core.checkpoint import TrainingRecord, set_training
from dlm.core.losses import MaskedDiffusionLoss, target_cross_entropy
from dlm.core.masking import FixedRatio
from dlm.decoding.tasks.likelihood import anchored, solution_masked_ce, solution_nll

PROBLEMS = {
    "T/0": {"prompt": "def f(x):\n    ", "canonical_solution": "return x + 1\n"},
    "T/1": {"prompt": "def g(a, b):\n    '''Sum.'''\n    ", "canonical_solution": "return a + b\n"},
}


@pytest.fixture
def tok():
    return ByteTokenizer()


@pytest.fixture
def byte_model(make_model):
    """A random model over the byte tokenizer's vocabulary, without token shift, in float32."""
    return make_model(vocab_size=260, mask_token_id=258, token_shift=False, dtype=torch.float32)


def test_ar_nll_is_the_mean_over_solution_tokens(byte_model, tok):
    model = byte_model
    total, count = 0.0, 0
    for problem in PROBLEMS.values():
        ids = tok.encode(problem["prompt"] + problem["canonical_solution"])
        start = len(tok.encode(problem["prompt"]))
        for i in range(start, len(ids)):  # one causal forward per prefix
            prefix = torch.tensor([ids[:i]])
            logits = model(prefix, torch.arange(i).unsqueeze(0), Causal())[0, -1]
            total -= float(logits.log_softmax(-1)[ids[i]])
            count += 1
    got = solution_nll(model, tok, PROBLEMS, list(PROBLEMS))
    assert got == pytest.approx(total / count, rel=1e-5)


def test_the_layout_anchors_the_prompts_last_token_at_a_block_start():
    tokens, scored, docs, positions = anchored([5, 6, 7], [8, 9, 10, 11, 12], 4, 0, torch.device("cpu"))
    assert tokens.tolist() == [[0, 0, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0]]
    assert tokens[0, 4] == 7 and scored[0, 5:10].all() and scored.sum() == 5
    assert docs.tolist() == [[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2]]
    assert positions[0, 2:10].tolist() == list(range(8))


def test_masked_ce_ignores_padding_and_matches_the_training_forward(byte_model, tok):
    model = byte_model
    set_training(model, TrainingRecord("TriModeModule", 4, None, False, clean="causal"))
    problems = {"T/0": {"prompt": "abcde", "canonical_solution": "fghijkl"}}  # prompt - 1 = 4: no padding
    got = solution_masked_ce(model, tok, problems, ["T/0"])
    ids = tok.encode("abcdefghijkl")
    tokens = torch.tensor([ids])
    scored = torch.tensor([[False] * 5 + [True] * 7])
    corrupted = FixedRatio(0.5)(
        tokens, torch.tensor([0]), 0, 4, model.config.mask_token_id, 0, loss_mask=scored
    )
    both = torch.cat([corrupted.tokens, tokens], 1)
    mask = TriMode(4, 12) & SameDocument.for_noisy_clean(torch.zeros(1, 12, dtype=torch.long))
    logits = model(both, torch.arange(12).repeat(2).unsqueeze(0), mask)[:, :12]
    targets = MaskedDiffusionLoss(weighted=False).targets(corrupted.mask, corrupted.weights, 4, False, False)
    assert got == pytest.approx(float(target_cross_entropy(logits, tokens, targets).mean()), rel=1e-5)
    padded = {"T/0": {"prompt": "abcdefg", "canonical_solution": "hij"}}  # needs padding both sides
    a = solution_masked_ce(model, tok, padded, ["T/0"])
    tok.pad_id = 7  # the padding's token cannot matter: it is its own document
    assert solution_masked_ce(model, tok, padded, ["T/0"]) == pytest.approx(a, rel=1e-6)


def test_an_ar_model_has_no_masked_ce(byte_model, tok):
    assert solution_masked_ce(byte_model, tok, PROBLEMS, list(PROBLEMS)) is None
