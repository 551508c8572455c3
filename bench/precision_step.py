"""Per-step time of one training step in fp32, bf16-mixed and bf16-true, interleaved in one process
so that a shared machine's load falls on all three alike (ratios, not absolute times).

Each step is what `dlm fit` runs: the module's objective (forward), backward, grad-norm clip 1.0 and
AdamW. bf16-mixed: forward under CPU autocast with fp32 weights and optimizer; bf16-true: bf16
weights and bf16 default dtype in the forward.

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python bench/precision_step.py \
        apps/trimode/configs/smollm2-135m.yaml --rounds 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from lightning import LightningDataModule

from dlm.training import LanguageModule
from dlm.training.cli import DLMCLI

MODES = ("32-true", "bf16-mixed", "bf16-true")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a dlm fit config (its model and data are used as they are)")
    parser.add_argument("--rounds", type=int, default=2, help="timed steps per precision")
    args = parser.parse_args()
    cli = DLMCLI(
        LanguageModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        args=["--config", args.config],
    )
    data = cli.datamodule
    data.prepare_data()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    small = {k: v[:1, :64] if v.dim() == 2 else v[:1] for k, v in batch.items()}
    fp32 = cli.model.train()
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    modules = {"32-true": fp32, "bf16-mixed": fp32, "bf16-true": bf16}
    optimizers = {m: torch.optim.AdamW(modules[m].parameters(), lr=3e-5, weight_decay=0.1) for m in MODES}

    def step(mode: str, b: dict) -> float:
        module = modules[mode]
        if mode == "bf16-mixed":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = module.objective(b, 0)["loss"]
        elif mode == "bf16-true":
            torch.set_default_dtype(torch.bfloat16)
            try:
                loss = module.objective(b, 0)["loss"]
            finally:
                torch.set_default_dtype(torch.float32)
        else:
            loss = module.objective(b, 0)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizers[mode].step()
        optimizers[mode].zero_grad(set_to_none=True)
        return loss.item()

    for mode in MODES:  # warm-up: allocator and optimizer state
        step(mode, small)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES:
            with open("/proc/loadavg") as f:
                load = f.read().split()[0]
            wall, cpu = time.perf_counter(), time.process_time()
            loss = step(mode, batch)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            times[mode].append(wall)
            print(f"round {r} {mode:10s} wall {wall:7.2f} s  cpu {cpu:7.2f} s  loss {loss:.4f}  load {load}")
    base = statistics.median(times["32-true"])
    for mode in MODES:
        median = statistics.median(times[mode])
        print(f"{mode:10s} median wall {median:.2f} s, fp32 / this = {base / median:.2f}x")


if __name__ == "__main__":
    main()
