"""Evaluation: HumanEval pass@1 with speed figures, a sandbox for generated code, an lm-eval adapter."""
