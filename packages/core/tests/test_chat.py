"""Chat templates render as transformers renders them, stay with the tokenizer through a checkpoint,
never run code, and the instruct framing of a code task is the one documented in dlm.core.chat."""

import json

import pytest

from dlm.core import ByteTokenizer, HFTokenizer
from dlm.core.chat import CODE_RESPONSE, TemplateError, code_from_answer, code_instruct_prompt, render_chat
from dlm.core.tokenizers import tokenizer_fingerprint, tokenizer_from_spec

# SmolLM2's template (a default system message when none is given), and one that uses the features
# transformers adds to Jinja: raise_exception, tojson, loop controls, trimmed blocks.
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
FEATURES = """{{ bos_token }}
{% for m in messages %}
  {% if m['role'] not in ['user', 'assistant', 'system'] %}
    {{ raise_exception('unknown role ' + m['role']) }}
  {% endif %}
  {% if m['content'] == 'skip' %}{% continue %}{% endif %}
[{{ m['role'] }}] {{ m['content'] | tojson }}
{% endfor %}
{% if add_generation_prompt %}[assistant]{% endif %}"""
CONVERSATIONS = [
    [{"role": "user", "content": "def f(x):\n    return x"}],
    [{"role": "system", "content": "Be brief"}, {"role": "user", "content": 'quote " and ✓'}],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "skip"},
    ],
]


def write_checkpoint_tokenizer(directory, template, in_config=False):
    from tokenizers import Tokenizer, models

    words = ["<unk>", "<s>", "</s>", "a", "b"]
    Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")).save(
        str(directory / "tokenizer.json")
    )
    settings = {"eos_token": "</s>", "bos_token": "<s>", "tokenizer_class": "PreTrainedTokenizerFast"}
    if in_config:
        settings["chat_template"] = template
    else:
        (directory / "chat_template.jinja").write_text(template)
    (directory / "tokenizer_config.json").write_text(json.dumps(settings))
    return directory


@pytest.mark.parametrize("template", [CHATML, FEATURES], ids=["chatml", "features"])
@pytest.mark.parametrize("in_config", [False, True], ids=["jinja-file", "tokenizer-config"])
def test_rendering_matches_transformers(tmp_path, template, in_config):
    transformers = pytest.importorskip("transformers")
    write_checkpoint_tokenizer(tmp_path, template, in_config)
    ours = HFTokenizer.from_directory(tmp_path, add_mask_token=False)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for messages in CONVERSATIONS:
        for generation in (True, False):
            expected = theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
            assert ours.apply_chat_template(messages, generation) == expected


def test_the_template_survives_a_spec_and_a_save_and_is_not_fingerprinted(tmp_path):
    write_checkpoint_tokenizer(tmp_path, CHATML)
    tok = HFTokenizer.from_directory(tmp_path)
    again = tokenizer_from_spec(tok.to_spec())
    assert again.chat_template == CHATML
    saved = tmp_path / "saved"
    saved.mkdir()
    tok.save(saved)
    assert HFTokenizer.from_directory(saved).chat_template == CHATML
    plain = tokenizer_from_spec({**tok.to_spec(), "chat_template": None})
    assert tokenizer_fingerprint(plain) == tokenizer_fingerprint(tok)


def test_a_template_cannot_reach_python_internals():
    escape = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(TemplateError, match="chat template does not render"):
        render_chat(escape, CONVERSATIONS[0])


def test_bad_templates_and_missing_templates_are_one_line_errors(tmp_path):
    with pytest.raises(TemplateError, match=r"^chat template does not parse: "):
        render_chat("{% for %}", CONVERSATIONS[0])
    with pytest.raises(TemplateError, match=r"^chat template: unknown role tool$"):
        render_chat(FEATURES, [{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match=r"^the byte tokenizer has no chat template"):
        code_instruct_prompt(ByteTokenizer(), "def f(): pass")
    write_checkpoint_tokenizer(tmp_path, CHATML)
    (tmp_path / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match=r"^the tokenizer has no chat template \(no chat_template.jinja"):
        code_instruct_prompt(HFTokenizer.from_directory(tmp_path), "def f(): pass")


def test_the_code_framing_is_evalplus(tmp_path):
    write_checkpoint_tokenizer(tmp_path, CHATML)
    text = code_instruct_prompt(HFTokenizer.from_directory(tmp_path), "def f(x):\n    '''Twice x.'''\n\n")
    assert text == (
        "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\n"
        "Please provide a self-contained Python script that solves the following problem in a markdown "
        "code block:\n```python\ndef f(x):\n    '''Twice x.'''\n```<|im_end|>\n<|im_start|>assistant\n"
        + CODE_RESPONSE
    )
    assert (
        code_from_answer("def f(x):\n    return 2 * x\n```\nMore prose ```")
        == "def f(x):\n    return 2 * x\n"
    )
    assert code_from_answer("def f(x):\n    return 2 * x\n") == "def f(x):\n    return 2 * x\n"
