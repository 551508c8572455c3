"""Each package installs alone into a fresh plain venv with only its declared dependencies (+ torch).

The four packages are built as wheels into a wheelhouse, and each venv installs one of them by name
with `--find-links` to it: pip finds the internal dlm-* dependencies only because the package
declares them, and the venv must end up with exactly that closure (dlm-attention alone needs no
dlm-core). torch is installed once into a template venv (from this machine's local wheels, as the
pip configuration provides) that each package's venv copies with hard links.
"""

import json
import os
import runpy
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
# package -> the dlm distributions its venv must hold after `pip install dlm-<package>`
CLOSURE = {
    "attention": {"dlm-attention"},
    "core": {"dlm-attention", "dlm-core"},
    "decoding": {"dlm-attention", "dlm-core", "dlm-decoding"},
    "training": {"dlm-attention", "dlm-core", "dlm-training"},
}


def run(*args, cwd=None):
    # A clean environment: nothing from the test's own venv or the repository leaks onto sys.path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        pytest.fail(f"{' '.join(map(str, args))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    """Wheels of the four packages, built from copies so no build/ lands in the working tree."""
    sources, wheels = tmp_path_factory.mktemp("sources"), tmp_path_factory.mktemp("wheels")
    skip = shutil.ignore_patterns("*.egg-info", "build", "__pycache__", "tests")
    copies = [shutil.copytree(ROOT / "packages" / name, sources / name, ignore=skip) for name in CLOSURE]
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, *copies)
    return wheels


@pytest.fixture(scope="module")
def torch_venv(tmp_path_factory):
    venv = tmp_path_factory.mktemp("template") / "venv"
    run(sys.executable, "-m", "venv", venv)  # plain: no --system-site-packages
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", TORCH)
    return venv


CHECK = textwrap.dedent(
    """
    import importlib, importlib.metadata as md, json, sys
    module = importlib.import_module(sys.argv[1])
    dists = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].startswith("dlm-"))
    print(json.dumps({"version": module.__version__, "dist": md.version(sys.argv[2]),
                      "file": module.__file__, "dlm": dists}))
    """
)


@pytest.mark.parametrize("package", list(CLOSURE))
def test_package_installs_alone(package, wheelhouse, torch_venv, tmp_path):
    venv = tmp_path / "venv"
    run("cp", "-al", torch_venv, venv)  # hard links: pip only adds or unlinks files
    python = venv / "bin" / "python"
    dist = f"dlm-{package}"
    run(python, "-m", "pip", "install", "-q", "--find-links", wheelhouse, dist)
    report = json.loads(run(python, "-c", CHECK, f"dlm.{package}", dist, cwd=tmp_path))
    expected = runpy.run_path(str(ROOT / f"packages/{package}/src/dlm/{package}/version.py"))["__version__"]
    assert report["version"] == report["dist"] == expected
    assert report["file"].startswith(str(venv))
    assert set(report["dlm"]) == CLOSURE[package]
