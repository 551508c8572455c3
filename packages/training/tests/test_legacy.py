"""Configs written before `evaluation:` are rewritten into it, with each module's old defaults."""

import pytest
import yaml

from dlm.training.legacy import migrate_args, migrate_model

OLD_TRIMODE = """
model:
  class_path: dlm.training.TriModeModule
  init_args:
    block_size: 8
    decoders:
      ar: {class_path: dlm.decoding.ARDecoder}
      self_spec: {class_path: dlm.decoding.SelfSpeculativeDecoder, init_args: {k: 7}}
    decode: {prompts: 8, prompt_tokens: 64, max_new_tokens: 128, batch_size: 1}
    plot: dlm.decoding.plot.plot_acceptance
trainer: {max_steps: 2}
"""


def test_a_tri_mode_config_keeps_its_decoders_settings_and_default_baseline():
    config = yaml.safe_load(OLD_TRIMODE)
    assert migrate_model(config["model"])
    args = config["model"]["init_args"]
    assert set(args) == {"block_size", "evaluation"}
    assert args["evaluation"] == {
        "class_path": "dlm.decoding.Evaluation",
        "init_args": {
            "decoders": yaml.safe_load(OLD_TRIMODE)["model"]["init_args"]["decoders"],
            "prompts": 8,
            "prompt_tokens": 64,
            "max_new_tokens": 128,
            "batch_size": 1,
            "baseline": "ar",
            "plot": True,
        },
    }
    assert not migrate_model(config["model"]), "a migrated config is left alone"


def test_the_drafter_keeps_its_report_and_plot_and_conversion_gets_neither():
    drafter = {"class_path": "dlm.training.DrafterModule", "init_args": {"decoders": {"g": {}}}}
    migrate_model(drafter)
    assert drafter["init_args"]["evaluation"]["init_args"] == {
        "decoders": {"g": {}},
        "plot": True,
        "report": "drafter_eval",
    }
    conversion = {
        "class_path": "dlm.training.ConversionModule",
        "init_args": {"decoders": {"b": {}}, "baseline": None},
    }
    migrate_model(conversion)
    assert conversion["init_args"]["evaluation"]["init_args"] == {"decoders": {"b": {}}}
    with pytest.raises(ValueError, match="sets both evaluation and the old keys \\['decode'\\]"):
        migrate_model({"init_args": {"evaluation": {}, "decode": {}}})


def test_arguments_name_the_migrated_config_and_the_new_keys(tmp_path, capsys):
    old = tmp_path / "old.yaml"
    old.write_text(OLD_TRIMODE)
    new = tmp_path / "new.yaml"
    new.write_text("model: {class_path: dlm.training.TriModeModule}\n")
    argv = ["fit", "--config", str(old), f"--config={new}", "--model.init_args.decode.prompts", "2"]
    out = migrate_args(argv)
    assert out[:2] == ["fit", "--config"] and "evaluation" in yaml.safe_load(out[2])["model"]["init_args"]
    assert out[3:] == ["--config", str(new), "--model.init_args.evaluation.init_args.prompts", "2"]
    err = capsys.readouterr().err
    assert "old.yaml: model.init_args.{decoders, decode, baseline, plot} are now" in err
    assert "--model.init_args.decode.prompts is now --model.init_args.evaluation.init_args.prompts" in err
