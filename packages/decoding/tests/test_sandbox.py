"""The sandbox: every way a generated program can misbehave fails that program and nothing else."""

import os

import pytest

from dlm.decoding.tasks.sandbox import run_program, run_programs

GOOD = "assert sum(range(5)) == 10"

BAD = {
    "loops": "while True:\n    pass",
    "allocates without bound": "x = []\nwhile True:\n    x.append(bytearray(1 << 24))",
    "forks": "import os\nwhile True:\n    os.fork()",
    "crashes": "import faulthandler\nfaulthandler._sigsegv()",
    "never returns": "import time\ntime.sleep(10**6)",
    "uses the network": "import socket\nsocket.create_connection(('127.0.0.1', 9))",
    "starts a process": "import subprocess\nsubprocess.run(['true'])",
    "calls libc directly": "import ctypes\nctypes.CDLL(None).fork()",
    "kills its parent": "import os\nos.kill(os.getppid(), 9)",
    "fails its test": "assert 1 == 2",
}


@pytest.mark.slow
def test_each_failure_mode_fails_only_its_program(tmp_path):
    escape = tmp_path / "escaped"
    bad = {**BAD, "writes outside its directory": f"open({str(escape)!r}, 'w').write('x')"}
    sources = [GOOD]
    for source in bad.values():
        sources += [source, GOOD]
    # 6 s: a passing program must not time out on a loaded 2-core CI machine.
    outcomes = run_programs(sources, timeout=6.0, memory_mb=256, workers=2)
    assert [o.passed for o in outcomes[::2]] == [True] * (len(bad) + 1)
    for (name, _), outcome in zip(bad.items(), outcomes[1::2], strict=True):
        assert not outcome.passed, name
    results = dict(zip(bad, (o.result for o in outcomes[1::2]), strict=True))
    assert results["loops"] == results["never returns"] == "timed out"
    assert "MemoryError" in results["allocates without bound"]
    assert "os.fork is not allowed" in results["forks"]
    assert results["crashes"] == "killed by SIGSEGV"
    assert "socket" in results["uses the network"]
    assert "AssertionError" in results["fails its test"]
    assert not escape.exists()


def test_a_program_may_write_in_its_own_directory_and_import_the_stdlib():
    source = "import math, re, hashlib\nopen('a.txt', 'w').write('x')\nassert open('a.txt').read() == 'x'"
    assert run_program(source, timeout=10.0).passed


def test_a_program_does_not_see_the_callers_environment():
    os.environ["DLM_SANDBOX_SECRET"] = "1"
    try:
        assert run_program("import os\nassert 'DLM_SANDBOX_SECRET' not in os.environ").passed
    finally:
        del os.environ["DLM_SANDBOX_SECRET"]


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="--workers must be positive, got 0"):
        run_programs([GOOD], workers=0)
