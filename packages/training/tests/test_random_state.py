import random

import numpy as np
import torch

from dlm.training import RandomState


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_restored_generators_draw_what_they_drew_after_the_save(tmp_path):
    saver = RandomState()
    torch.save(saver.state_dict(), tmp_path / "state.pt")
    expected = draws()
    draws()  # the generators move on, as in a new process started from the same seed
    loader = RandomState()
    loader.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert draws() != expected, "nothing is restored before training starts"
    loader.on_train_start(None, None)
    assert draws() == expected
    loader.on_train_start(None, None)  # applied once
    assert draws() != expected
