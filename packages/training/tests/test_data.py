import socket
import time

import datasets.config
import huggingface_hub.constants
import numpy as np
import pytest
import torch

from dlm.core import ByteTokenizer
from dlm.core.corpora import split_of
from dlm.training.data import PackedTextDataModule, Source
from dlm.training.data import cache as data_cache


def module(corpus, cache_dir, **kw):
    kw.setdefault("seq_len", 32)
    kw.setdefault("batch_size", 4)
    return PackedTextDataModule(
        str(corpus), cache_dir=cache_dir, validation_fraction=0.2, test_fraction=0.2, **kw
    )


def test_samples_carry_tokens_doc_ids_and_index(corpus_dir, cache_dir):
    dm = module(corpus_dir, cache_dir)
    dm.setup("fit")
    train = dm.datasets["train"]
    item = train[3]
    assert item["tokens"].shape == (32,) and item["doc_ids"].shape == (32,) and item["index"] == 3
    stream = np.concatenate([train[i]["tokens"].numpy() for i in range(len(train))])
    text = bytes(int(t) for t in stream if t < 256).decode()
    assert "w0 w1" in text or "w1 w2" in text
    eos = stream == ByteTokenizer.eos_id
    docs = np.concatenate([train[i]["doc_ids"].numpy() for i in range(len(train))])
    assert (np.diff(docs)[:-1] >= 0).all(), "doc ids count up along the stream"
    assert set(np.flatnonzero(np.diff(docs))) <= set(np.flatnonzero(eos)), "documents end with EOS"
    batch = next(iter(dm.train_dataloader()))
    assert batch["tokens"].shape == (4, 32) and batch["index"].shape == (4,)


def test_splits_are_deterministic_and_disjoint(corpus_dir, cache_dir):
    source = Source(str(corpus_dir), validation=0.2, test=0.2)
    splits = {s: list(source.documents(s)) for s in ("train", "validation", "test")}
    assert all(splits.values())
    assert not set(splits["train"]) & (set(splits["validation"]) | set(splits["test"]))
    assert sum(map(len, splits.values())) == 40
    # the rule is dlm.core.corpora's: a stable hash of the document's name (its id) and segment
    assert len(splits["test"]) == sum(split_of(f"doc{i}#0", 0.2, 0.2) == "test" for i in range(40))
    assert list(Source(str(corpus_dir), validation=0.2, test=0.2).documents("test")) == splits["test"]


def test_cache_is_built_once_and_keyed_by_tokenizer(corpus_dir, cache_dir, monkeypatch):
    dm = module(corpus_dir, cache_dir)
    dm.prepare_data()
    calls = []
    monkeypatch.setattr(data_cache, "tokenize_split", lambda *a: calls.append(a))
    module(corpus_dir, cache_dir, seq_len=16).setup("fit")  # another seq_len reuses the arrays
    assert calls == []
    directory = data_cache.cache_directory(dm.source, dm.tokenizer, dm.cache_root)
    assert sorted(p.name for p in directory.iterdir())[:2] == ["meta.json", "test.docs.npy"]
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(".")], "no temporary left"


def test_streaming_gives_the_cached_samples(corpus_dir, cache_dir):
    cached = module(corpus_dir, cache_dir)
    cached.setup("fit")
    streamed = module(corpus_dir, cache_dir, streaming=True)
    streamed.setup("fit")
    items = list(streamed.datasets["validation"])
    assert len(items) == len(cached.datasets["validation"])
    for item in items:
        ref = cached.datasets["validation"][item["index"]]
        assert torch.equal(item["tokens"], ref["tokens"]) and torch.equal(item["doc_ids"], ref["doc_ids"])


def test_training_order_is_seeded_by_epoch_and_split_across_processes(corpus_dir, cache_dir):
    dm = module(corpus_dir, cache_dir, batch_size=2)
    order = [b["index"].tolist() for b in dm.train_dataloader()]
    again = [b["index"].tolist() for b in module(corpus_dir, cache_dir, batch_size=2).train_dataloader()]
    assert order == again
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    assert [b["index"].tolist() for b in loader] != order


def test_text_files_are_documents(tmp_path, cache_dir):
    for i in range(30):
        (tmp_path / f"f{i}.txt").write_text(f"file {i}\n" * 20)
    dm = PackedTextDataModule(
        str(tmp_path / "*.txt"), seq_len=16, cache_dir=cache_dir, validation_fraction=0.2, test_fraction=0.2
    )
    dm.setup("fit")
    assert len(dm.datasets["train"]) > 10


def test_embedded_corpus_has_every_split(cache_dir):
    dm = PackedTextDataModule("shakespeare", seq_len=256, cache_dir=cache_dir)
    dm.setup()
    assert all(len(dm.datasets[s]) > 10 for s in ("train", "validation", "test"))


def test_an_unknown_corpus_name_fails_at_once_in_one_line(cache_dir, monkeypatch):
    with socket.socket() as closed:  # bound, never listening: the hub refuses every connection
        closed.bind(("127.0.0.1", 0))
        hub = f"http://127.0.0.1:{closed.getsockname()[1]}"
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub)
        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub)
        start = time.monotonic()
        with pytest.raises(ValueError) as err:
            PackedTextDataModule("no-such-corpus-xyz", cache_dir=cache_dir).setup("fit")
        elapsed = time.monotonic() - start
    message = str(err.value)
    assert message.startswith("corpus 'no-such-corpus-xyz' is neither an embedded corpus (shakespeare, ")
    assert "nor a dataset reachable on the HF hub (" in message and "\n" not in message
    assert elapsed < 5, f"{elapsed:.1f} s: the hub client retried (5 times over ~23 s)"


def test_bad_corpora_are_named(tmp_path, cache_dir, corpus_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PackedTextDataModule(str(tmp_path / "missing.jsonl"), cache_dir=cache_dir)
    with pytest.raises(FileNotFoundError, match="no files match"):
        PackedTextDataModule(str(tmp_path / "*.parquet"), cache_dir=cache_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no"):
        PackedTextDataModule(str(tmp_path / "empty"), cache_dir=cache_dir)
    (tmp_path / "empty" / "a.txt").write_text("")
    with pytest.raises(ValueError, match="holds no text"):
        PackedTextDataModule(str(tmp_path / "empty"), cache_dir=cache_dir).setup("fit")
    assert not list((tmp_path / "cache").iterdir()), "nothing half-written"
    with pytest.raises(ValueError, match="fewer than one sequence of seq_len=100000"):
        module(corpus_dir, cache_dir, seq_len=100000).setup("fit")
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.txt").write_text("x")
    (tmp_path / "mixed" / "b.jsonl").write_text('{"text": "y"}\n')
    with pytest.raises(ValueError, match="mixes file types"):
        PackedTextDataModule(str(tmp_path / "mixed"), cache_dir=cache_dir).setup("fit")
    with pytest.raises(ValueError, match="no text_field 'body'"):
        module(corpus_dir, cache_dir, text_field="body").setup("fit")
    with pytest.raises(ValueError, match="token id .* outside the model's vocabulary of 100"):
        module(corpus_dir, cache_dir, vocab_size=100).setup("fit")
    with pytest.raises(ValueError, match="seq_len must be a positive integer"):
        module(corpus_dir, cache_dir, seq_len=0)
