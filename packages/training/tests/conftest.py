import json

import pytest


@pytest.fixture
def corpus_dir(tmp_path):
    """A small local corpus: 40 json documents of a few hundred bytes each."""
    root = tmp_path / "corpus"
    root.mkdir()
    lines = []
    for i in range(40):
        body = f"document {i}: " + " ".join(f"w{(i * 7 + j) % 13}" for j in range(60))
        lines.append(json.dumps({"id": f"doc{i}", "text": body}))
    (root / "docs.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")
