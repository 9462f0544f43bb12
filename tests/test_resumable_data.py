"""What exact resume rests on, in closed form: the epoch shuffle, the resumable DataLoader and
the device-resident batches give the order of (seed, epoch) and continue an epoch after the
batches a checkpoint says were served."""

from __future__ import annotations

import torch

from genlab.data.datamodules import ArrayImages, EpochShuffle, ResumableLoader, TensorBatches

N = 10
IMAGES = torch.arange(N * 4, dtype=torch.uint8).view(N, 1, 2, 2) * 6  # (n, 1, 2, 2), distinct
LABELS = torch.arange(N) * 3


def permutation(seed: int, epoch: int, n: int = N) -> list[int]:
    return torch.randperm(
        n, generator=torch.Generator().manual_seed(seed * 10_007 + epoch)
    ).tolist()


def test_epoch_shuffle_depends_on_seed_and_epoch_and_skips_once():
    sampler = EpochShuffle(range(N), seed=4)
    assert len(sampler) == N and list(sampler) == permutation(4, 0)
    sampler.set_epoch(3)
    assert list(sampler) == permutation(4, 3) != permutation(4, 0)
    sampler.start = 4
    assert list(sampler) == permutation(4, 3)[4:] and len(sampler) == N
    assert list(sampler) == permutation(4, 3)  # the skip applies to one pass only


def loader(seed: int = 2) -> ResumableLoader:
    data = ArrayImages(IMAGES, LABELS)
    return ResumableLoader(
        data, batch_size=3, sampler=EpochShuffle(data, seed), generator=torch.Generator()
    )


def labels_of(batches) -> list[list[int]]:
    return [y.tolist() for _, y in batches]


def test_resumable_loader_continues_an_epoch_after_the_served_batches():
    full = loader()
    full.sampler.set_epoch(1)
    order = [3 * i for i in permutation(2, 1)]  # labels = 3 * index
    want = [order[i : i + 3] for i in range(0, N, 3)]
    assert labels_of(full) == want
    assert full.state_dict() == {"epoch": 1, "batches": 4}
    assert full.generator.initial_seed() == 2 * 10_007 + 1  # worker seeds from (seed, epoch)

    first = loader()
    first.sampler.set_epoch(1)
    it = iter(first)
    served = [next(it)[1].tolist() for _ in range(2)]
    assert served == want[:2] and first.state_dict() == {"epoch": 1, "batches": 2}

    resumed = loader()
    resumed.sampler.set_epoch(1)
    resumed.load_state_dict(first.state_dict())
    assert labels_of(resumed) == want[2:]
    assert resumed.state_dict() == {"epoch": 1, "batches": 4}
    assert labels_of(resumed) == want  # the next pass is whole again

    other_epoch = loader()
    other_epoch.sampler.set_epoch(2)
    other_epoch.load_state_dict({"epoch": 1, "batches": 2})  # a state of another epoch
    assert len(labels_of(other_epoch)) == 4

    # a sampler that is not an EpochShuffle: epoch 0, seed 0, and a stored state cannot skip
    plain = ResumableLoader(ArrayImages(IMAGES, LABELS), batch_size=3, generator=torch.Generator())
    assert plain.state_dict() == {"epoch": 0, "batches": 0}
    plain.load_state_dict({"epoch": 0, "batches": 2})
    assert labels_of(plain) == [[0, 3, 6], [9, 12, 15], [18, 21, 24], [27]]
    assert plain.state_dict() == {"epoch": 0, "batches": 4}
    assert plain.generator.initial_seed() == 0

    # unbatched (batch_size=None): a served "batch" is one item
    data = ArrayImages(IMAGES, LABELS)
    single = ResumableLoader(data, batch_size=None, sampler=EpochShuffle(data, 2))
    single.load_state_dict({"epoch": 0, "batches": 7})
    assert [int(y) for _, y in single] == [3 * i for i in permutation(2, 0)[7:]]


def batches(**kw) -> TensorBatches:
    options = {"batch_size": 3, "shuffle": True, "seed": 5, "epoch": lambda: 0, **kw}
    return TensorBatches(IMAGES, LABELS, **options)


def test_tensor_batches_order_length_and_content():
    tb = batches(epoch=lambda: 2)
    assert len(tb) == 3  # 10 images, batches of 3: the ragged end is dropped in training
    order = permutation(5, 2)
    got = list(tb)
    assert [y.tolist() for _, y in got] == [[3 * i for i in order[b : b + 3]] for b in (0, 3, 6)]
    for x, y in got:
        assert torch.equal(x, IMAGES[y // 3].float() / 255) and x.dtype == torch.float32
    assert tb.state_dict() == {"epoch": 2, "batches": 3}
    # evaluation: in order, the ragged end kept; ranks pad by repeating the first indices
    ev = batches(shuffle=False, rank=1, world_size=3)
    assert len(ev) == 2 and ev.per_rank == 4
    assert [y.tolist() for _, y in ev] == [[3, 12, 21], [0]]  # indices 1, 4, 7 and (10 -> 0)
    ranks = [batches(shuffle=True, rank=r, world_size=2, epoch=lambda: 1) for r in (0, 1)]
    shards = [torch.cat([y for _, y in tb]) // 3 for tb in ranks]
    assert [len(s) for s in shards] == [3, 3] and len(ranks[0]) == 1  # 5 per rank, batch 3
    assert (
        shards[0].tolist() == permutation(5, 1)[0:6:2]
        and shards[1].tolist() == (permutation(5, 1)[1:6:2])
    )
    assert len(batches(batch_size=20)) == 1 and len(batches(batch_size=5)) == 2
    assert batches(world_size=3).per_rank == 3  # training drops the 10th image
    assert batches().state_dict() == {"epoch": 0, "batches": 0}


def test_tensor_batches_memory_format():
    rgb = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    labels = torch.arange(2)

    def first(**kw) -> torch.Tensor:
        options = {"batch_size": 2, "shuffle": False, "seed": 0, "epoch": lambda: 0, **kw}
        return next(iter(TensorBatches(rgb, labels, **options)))[0]

    plain, last = first(), first(channels_last=True)
    assert plain.is_contiguous() and not plain.is_contiguous(memory_format=torch.channels_last)
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, plain)


def test_tensor_batches_resume_mid_epoch():
    first = batches(epoch=lambda: 1)
    it = iter(first)
    head = [next(it)[1].tolist()]
    assert first.state_dict() == {"epoch": 1, "batches": 1}
    resumed = batches(epoch=lambda: 1)
    resumed.load_state_dict(first.state_dict())
    tail = [y.tolist() for _, y in resumed]
    assert head + tail == [y.tolist() for _, y in batches(epoch=lambda: 1)]
    assert resumed.state_dict() == {"epoch": 1, "batches": 3}
    stale = batches(epoch=lambda: 2)
    stale.load_state_dict({"epoch": 1, "batches": 2})
    assert len(list(stale)) == 3  # another epoch's state does not skip
    assert len(list(stale)) == 3


def test_a_wrapped_sampler_follows_the_epoch_under_ddp():
    """Lightning replaces a custom sampler by DistributedSamplerWrapper(sampler) under DDP; the
    wrapped EpochShuffle must see every epoch (its order, and data generated from the epoch,
    change each epoch). Seen failing with the epoch not handed on (Lightning < 2.6's wrapper)."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    from genlab.data.datamodules import EpochShuffle, ResumableLoader

    data = torch.arange(40).float()[:, None]
    inner = EpochShuffle(data, seed=3)
    wrapper = DistributedSamplerWrapper(inner, num_replicas=2, rank=0, shuffle=False)
    loader = ResumableLoader(data, batch_size=4, sampler=wrapper)
    orders = []
    for epoch in range(3):
        DistributedSamplerWrapper.__mro__[1].set_epoch(wrapper, epoch)  # the base class's only
        orders.append(torch.cat([b[:, 0] for b in loader]).tolist())
        assert inner.epoch == epoch
    assert orders[0] != orders[1] != orders[2]
    assert len(orders[0]) == 20  # rank 0's half
