"""Tasks decoders are evaluated on: HumanEval pass@k as metrics of the one Evaluation (with a sandbox
for generated code), an lm-eval model class, and the dlm-eval command line."""
