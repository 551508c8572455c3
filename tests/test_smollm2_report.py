"""apps/trimode/smollm2_report.py reads what apps/trimode/smollm2.sh wrote: retention against the
conversion ablation's AR rows (a seed without its own rows read against another's), the decode
table per dtype and pass@1."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "apps/trimode/smollm2_report.py"


def table(**metrics: float) -> str:
    return "".join(f"│ {name} │ {value} │\n" for name, value in metrics.items())


def test_the_report_reads_the_runs_against_the_ar_baselines(tmp_path):
    ablation = {
        "args": {"steps": 100},
        "rows": [
            ["(AR start, 0 steps)", "-", [{"seed": 0, "test/ar_loss": 2.0, "ood/ar_loss": 4.0}]],
            ["(AR continued)", "-", [{"seed": 0, "test/ar_loss": 1.6, "ood/ar_loss": 3.2}]],
        ],
    }
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs/conversion-smollm2-ar-t100.json").write_text(json.dumps(ablation))
    run = tmp_path / "runs/trimode-smollm2/w0.3-b8-s1-t100"
    (run / "model").mkdir(parents=True)
    (run / "test-stdlib-code.txt").write_text(
        table(**{"test/ar_ce": 1.8, "test/masked_ce": 4.5, "test/masked_acc": 0.25})
    )
    (run / "test-shakespeare.txt").write_text(
        table(**{"test/ar_ce": 3.6, "test/masked_ce": 6.0, "test/masked_acc": 0.1})
    )
    row = {
        "decoder": "fused",
        "tpf": 1.5,
        "tau": 3.0,
        "acceptance_by_position": [0.9, 0.5],
        "speedup_vs_ar": 1.25,
        "agreement_with_ar": 1.0,
    }
    (run / "decode-float64.json").write_text(json.dumps([row]))
    (run / "humaneval.json").write_text(
        "log line\n" + json.dumps({"decoders": [{"decoder": "fused", "pass@1": 0.1, "tokens": 64}]})
    )
    out = subprocess.run(
        [sys.executable, str(REPORT)], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    # seed 1 has no AR rows of its own: seed 0's stand in (the data order does not follow the seed)
    assert "| w0.3-b8-s1-t100 | 1.8000 | -10.0% | +12.5% | 3.6000 | -10.0% | +12.5% | 4.50 / 0.250 |" in out
    assert "| w0.3-b8-s1-t100 | float64 | fused | 1.50 | 3.00 | 0.90 / 0.50 | 1.25x | 1.000 |" in out
    assert "| w0.3-b8-s1-t100 | fused | 0.100 | 64 |" in out


def test_a_run_is_never_read_against_a_baseline_of_another_length(tmp_path):
    ablation = {
        "args": {"steps": 30},
        "rows": [["(AR continued)", "-", [{"seed": 0, "test/ar_loss": 1.6, "ood/ar_loss": 3.2}]]],
    }
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs/conversion-smollm2.json").write_text(json.dumps(ablation))
    run = tmp_path / "runs/trimode-smollm2/w1.0-b8-s0-t100"
    (run / "model").mkdir(parents=True)
    for corpus in ("stdlib-code", "shakespeare"):
        (run / f"test-{corpus}.txt").write_text(
            table(**{"test/ar_ce": 1.8, "test/masked_ce": 4.5, "test/masked_acc": 0.25})
        )
    out = subprocess.run(
        [sys.executable, str(REPORT)], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert "| w1.0-b8-s0-t100 | 1.8000 | - | - | 1.8000 | - | - | 4.50 / 0.250 |" in out


def test_without_runs_the_report_says_what_to_run(tmp_path):
    done = subprocess.run([sys.executable, str(REPORT)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == "no runs under runs/trimode-smollm2: run apps/trimode/smollm2.sh first"
