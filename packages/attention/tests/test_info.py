"""`python -m dlm.attention.info` names every backend and says why the unavailable ones are."""

import subprocess
import sys

from dlm.attention.backends.optional import xformers_missing
from dlm.attention.info import report


def test_report_lists_every_backend_with_a_status():
    text = report()
    for name in ("xformers", "flex", "split", "sdpa"):
        assert f"  {name} " in text
    if xformers_missing():
        assert f"xformers  unavailable: {xformers_missing()}" in text


def test_module_entry_point_prints_the_report():
    out = subprocess.run(
        [sys.executable, "-m", "dlm.attention.info"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("dlm.attention backends in priority order")
    assert "sdpa" in out
