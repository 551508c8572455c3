"""`python -m dlm.attention.info`: the attention backends available here, and why not the others."""

from __future__ import annotations

import os

import torch

from dlm.attention.backends import BACKENDS
from dlm.attention.dispatch import ENV_VAR


def local_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def report() -> str:
    here = local_devices()
    lines = [
        f"dlm.attention backends in priority order (torch {torch.__version__}; devices here: {', '.join(here)})"
    ]
    for name, backend in BACKENDS.items():
        missing = backend.available()
        usable = [d for d in here if d in backend.devices]
        if missing:
            status = f"unavailable: {missing}"
        elif not usable:
            status = f"unavailable: runs on {', '.join(sorted(backend.devices))}, none of which is here"
        else:
            notes = []
            for device in usable:
                if backend.auto_devices is not None and device not in backend.auto_devices:
                    notes.append(f"{device} only when forced")
                if backend.grad_devices is not None and device not in backend.grad_devices:
                    notes.append(f"{device} forward only")
            status = f"available on {', '.join(usable)}" + (f" ({'; '.join(notes)})" if notes else "")
            away = sorted(backend.devices - set(here))
            if away:
                status += f"; also runs on {', '.join(away)}, not here"
        lines.append(f"  {name:9s} {status}")
        lines.append(f"  {'':9s} {backend.describe()}")
    forced = os.environ.get(ENV_VAR)
    lines.append(f"forced by ${ENV_VAR}: {forced}" if forced else f"${ENV_VAR} unset: dispatch chooses")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
