import pytest
import torch
from torch.utils.data import DistributedSampler

from dlm.core import ByteTokenizer
from dlm.training.data import StreamingPackedDataset
from dlm.training.sampler import ResumableLoader, ResumableSampler, ResumableStreamLoader


class Indices(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def loader(n=37, world=1, rank=0, batch=4, seed=3, workers=0):
    sampler = ResumableSampler(Indices(n), world, rank, seed)
    return ResumableLoader(Indices(n), batch_size=batch, sampler=sampler, drop_last=True, num_workers=workers)


def batches(dl, epoch=0):
    dl.sampler.set_epoch(epoch)
    return [b.tolist() for b in dl]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_order_is_distributed_samplers(world):
    for rank in range(world):
        ours = ResumableSampler(Indices(37), world, rank, seed=5)
        ref = DistributedSampler(Indices(37), world, rank, shuffle=True, seed=5, drop_last=True)
        for epoch in (0, 1):
            ours.set_epoch(epoch)
            ref.set_epoch(epoch)
            assert list(ours) == list(ref)


def test_processes_together_see_the_global_batch():
    single = batches(loader(batch=4))
    ranks = [batches(loader(world=2, rank=r, batch=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 9
    for step, whole in enumerate(single):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(whole)


@pytest.mark.parametrize("workers", [0, 1])
def test_resumed_loader_yields_exactly_the_remaining_batches(workers):
    full = batches(loader(workers=workers), epoch=1)
    first = loader(workers=workers)
    first.sampler.set_epoch(1)
    it = iter(first)
    for _ in range(3):
        next(it)  # workers have prefetched more by now; the state counts what was handed out
    state = first.state_dict()
    assert state["epoch"] == 1 and state["consumed"] == 12
    second = loader(workers=workers)
    second.load_state_dict(state)
    rest = [b.tolist() for b in second]
    assert rest == full[3:]
    assert second.state_dict()["consumed"] == 36
    assert batches(second, epoch=2) == batches(loader(), epoch=2), "the next epoch starts from its beginning"


def test_resume_on_another_number_of_processes_continues_the_global_order():
    first = loader(batch=4)
    it = iter(first)
    seen = [next(it).tolist() for _ in range(2)]
    state = first.state_dict()
    ranks = []
    for rank in (0, 1):
        dl = loader(world=2, rank=rank, batch=2)
        dl.load_state_dict(state)
        ranks.append([b.tolist() for b in dl])
    order = ResumableSampler(Indices(37), 1, 0, 3).order()
    assert sorted(sum(seen, [])) == sorted(order[:8])
    remaining = sorted(sum(ranks[0] + ranks[1], []))
    assert remaining == sorted(order[8:36])


def test_a_finished_epoch_resumes_at_the_next():
    first = loader()
    assert len(list(first)) == 9
    second = loader()
    second.load_state_dict(first.state_dict())
    assert second.sampler.epoch == 1
    assert [b.tolist() for b in second] == batches(loader(), epoch=1)


def test_other_data_is_refused():
    state = loader().state_dict()
    with pytest.raises(
        ValueError, match=r"training order \(seed 3, 37 samples\) differs .* \(seed 3, 40 samples\)"
    ):
        loader(n=40).load_state_dict(state)


def stream_loader(workers):
    texts = [f"document {i}: " + "abc " * (i % 5 + 3) for i in range(30)]
    dataset = StreamingPackedDataset(lambda: iter(texts), ByteTokenizer(), seq_len=16)
    return ResumableStreamLoader(dataset, batch_size=2, drop_last=True, num_workers=workers)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_stream_skips_the_consumed_batches(workers):
    full = [b["index"].tolist() for b in stream_loader(workers)]
    assert len(full) > 8
    first = stream_loader(workers)
    it = iter(first)
    for _ in range(5):
        next(it)
    state = first.state_dict()
    assert state == {"batches": 5}
    second = stream_loader(workers)
    second.load_state_dict(state)
    assert [b["index"].tolist() for b in second] == full[5:]
    assert second.state_dict() == {"batches": 0}, "a finished pass resumes at the next one's start"
    assert [b["index"].tolist() for b in second] == full, "the next pass reads the whole stream"
