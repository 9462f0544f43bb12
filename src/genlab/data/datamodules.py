"""The base datamodule: images in [0, 1] with labels, deterministic splits, shape from config."""

from __future__ import annotations

from collections.abc import Callable, Sized
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from genlab.data.modality import Condition, Modality, image
from genlab.utils.errors import GenlabError

BINARIZE = (None, "static", "dynamic")


class ArrayImages(Dataset):
    """Images held in memory as uint8 (N, C, H, W) with labels; items are floats in [0, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        assert images.dtype == torch.uint8 and images.ndim == 4, images.shape
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        return self.images[i].float().div_(255), self.labels[i]


class Binarized(Dataset):
    """Samples each pixel as Bernoulli(p = intensity).

    `static`: one fixed draw per image (seeded by its index, so every epoch and every process
    sees the same binary image); `dynamic`: a fresh draw each time the image is read.
    """

    def __init__(self, base: Dataset, mode: str, seed: int) -> None:
        self.base, self.mode, self.seed = base, mode, seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        x, y = self.base[i]
        gen = None
        if self.mode == "static":
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return torch.bernoulli(x, generator=gen), y


class Indexed(Dataset):
    """The items of `base` at `indices` (a deterministic split)."""

    def __init__(self, base: Dataset, indices: torch.Tensor) -> None:
        self.base, self.indices = base, indices.tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.base[self.indices[i]]


class EpochShuffle(Sampler[int]):
    """A random permutation that depends only on (seed, epoch): the order survives a resume.

    `start` skips that many indices of the next pass only (a resume in the middle of an epoch);
    the length stays the whole epoch's, as Lightning counts the skipped batches as done.
    """

    def __init__(self, data: Sized, seed: int) -> None:
        self.n, self.seed, self.epoch, self.start = len(data), seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch)
        start, self.start = self.start, 0
        return iter(torch.randperm(self.n, generator=gen)[start:].tolist())

    def __len__(self) -> int:
        return self.n


class ResumableLoader(DataLoader):
    """A DataLoader that Lightning can save and restore in the middle of an epoch.

    Lightning stores `state_dict()` of the training loader in every checkpoint and hands it to
    `load_state_dict()` on resume (its `_Stateful` protocol). The state is the epoch and the
    number of batches handed out in it (Lightning does not prefetch from loaders with a
    length, so that is the number of batches trained on); a resumed epoch starts after them,
    through `EpochShuffle.start`. The worker seed of each epoch comes from a generator seeded
    by (seed, epoch), not from the global RNG, so loading data never changes the random
    stream the model draws from. Same constructor as DataLoader, so Lightning can rebuild it
    (e.g. with a DistributedSampler under DDP; mid-epoch resume then restarts that epoch).
    """

    _epoch = 0
    _served = 0
    _resume: tuple[int, int] | None = None

    def __iter__(self):
        sampler = self.sampler
        epoch = getattr(sampler, "epoch", 0)
        # under DDP Lightning wraps the sampler (DistributedSamplerWrapper); versions before
        # 2.6 did not hand the epoch on to the wrapped one, which would then repeat epoch 0's
        # order (and generated data keyed by the epoch) every epoch
        inner = getattr(getattr(sampler, "dataset", None), "_sampler", None)
        if isinstance(inner, EpochShuffle) and inner.epoch != epoch:
            inner.set_epoch(epoch)
        skip = 0
        if self._resume is not None and self._resume[0] == epoch:
            skip = self._resume[1]
        self._resume = None
        if skip and isinstance(sampler, EpochShuffle):
            sampler.start = skip * int(self.batch_size or 1)
        else:
            skip = 0
        if self.generator is not None:
            self.generator.manual_seed(int(getattr(sampler, "seed", 0)) * 10_007 + epoch)
        self._epoch, self._served = epoch, skip
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["batches"]))


def materialize(data: Dataset) -> tuple[torch.Tensor, torch.Tensor, str | None]:
    """(uint8 images (N, C, H, W), labels, dynamic-binarization mode) of an in-memory split."""
    if isinstance(data, ArrayImages):
        return data.images, data.labels, None
    if isinstance(data, Indexed):
        images, labels, mode = materialize(data.base)
        idx = torch.as_tensor(data.indices, dtype=torch.long)
        return images[idx], labels[idx], mode
    if isinstance(data, Binarized):
        if data.mode == "dynamic":
            images, labels, _ = materialize(data.base)
            return images, labels, "dynamic"
        # a static draw is fixed per image: take it once, store it as 0/255
        items = [data[i] for i in range(len(data))]
        images = torch.stack([x for x, _ in items]).mul_(255).to(torch.uint8)
        return images, torch.stack([torch.as_tensor(y) for _, y in items]), None
    raise GenlabError(
        "data.device_resident=true needs a dataset held in memory (mnist_5k, mnist, "
        "fashion_mnist, cifar10); image files are decoded one by one: set "
        "data.device_resident=false for this dataset."
    )


class TensorBatches:
    """Batches cut from tensors held on the training device: uint8 images are indexed a whole
    batch at a time, converted to [0, 1] floats (and binarized or flipped) there. No DataLoader
    workers and no per-image Python: for datasets that fit in device memory.

    Shuffling depends only on (seed, epoch), as with EpochShuffle, so a resumed run sees the
    same order; under DDP each rank takes every world_size-th index of the permutation.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        epoch: Callable[[], int],
        rank: int = 0,
        world_size: int = 1,
        dynamic_binarize: bool = False,
        hflip: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, epoch
        self.rank, self.world_size = rank, world_size
        self.dynamic_binarize, self.hflip, self.channels_last = (
            dynamic_binarize,
            hflip,
            channels_last,
        )
        n = len(images)
        # training drops the ragged end (as drop_last); evaluation pads by repeating indices so
        # every rank runs the same number of batches
        self.per_rank = n // world_size if shuffle else -(-n // world_size)
        self._epoch, self._served = 0, 0
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        if self.shuffle and self.per_rank > self.batch_size:
            return self.per_rank // self.batch_size
        return -(-self.per_rank // self.batch_size)

    def _indices(self) -> torch.Tensor:
        n = len(self.images)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch())
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
            if self.per_rank * self.world_size > n:
                order = torch.cat([order, order[: self.per_rank * self.world_size - n]])
        return order[self.rank :: self.world_size][: self.per_rank].to(self.images.device)

    def state_dict(self) -> dict[str, int]:
        """The epoch and how many of its batches were handed out (Lightning's `_Stateful`
        protocol: stored in checkpoints, so a resume continues in the middle of an epoch)."""
        return {"epoch": self._epoch, "batches": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["batches"]))

    def __iter__(self):
        order = self._indices()
        epoch = self.epoch()
        skip = 0
        if self._resume is not None and self._resume[0] == epoch:
            skip = self._resume[1]
        self._resume = None
        self._epoch, self._served = epoch, skip
        for b in range(skip, len(self)):
            self._served = b + 1
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.images[idx].float().div_(255)  # (b, c, h, w) in [0, 1]
            if self.dynamic_binarize:
                x = torch.bernoulli(x)
            if self.hflip:
                flip = torch.rand(len(x), device=x.device) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to (size, size) with antialiasing, in chunks."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = [
        F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True)
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for chunk in images.split(4096)
    ]
    return torch.cat(out)


def match_channels(images: torch.Tensor, channels: int, name: str) -> torch.Tensor:
    """Convert uint8 (N, C, H, W) grey images to RGB (or RGB to grey) to give `channels`."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round_().to(torch.uint8)
    raise GenlabError(f"data.channels={channels} is not possible for {name}: use 1 or 3.")


class SampleDataModule(L.LightningDataModule):
    """Base class of every genlab datamodule: subclasses load the splits and say what a sample
    is (`modality`) and what it is conditioned on (`condition`, genlab.data.modality); this
    class splits, batches and hands them out resumably (an interrupted epoch continues where
    it stopped). Every batch is `(x, y)`: x as the modality says, y as the condition says
    (labels, captions, context frames...)."""

    name = "samples"

    def __init__(
        self,
        *,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise GenlabError(f"data.val_fraction={val_fraction} must be in [0, 1).")
        self.data_dir = str(data_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        # batches handed over at once for training (the fast path, perf.steps_per_batch: the
        # model splits them and takes one optimizer step on each); set by genlab.training
        self.steps_per_batch = 1
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.val_fraction = val_fraction
        self.split_seed, self.shuffle_seed, self.download = split_seed, shuffle_seed, download
        self.splits: dict[str, Dataset] = {}

    @property
    def modality(self) -> Modality:
        """What `x` of a batch is (kind, shape per sample, value range)."""
        raise NotImplementedError

    @property
    def condition(self) -> Condition | None:
        """What `y` of a batch is, or None when the data are unconditional."""
        return None

    @property
    def train_batch_size(self) -> int:
        """Samples per training batch: `batch_size` times the batches handed over at once."""
        return self.batch_size * self.steps_per_batch

    # --- conditions for grids and for genlab.sample ------------------------------------------
    def grid_conditions(self, n: int, split: str = "val") -> torch.Tensor | None:
        """The conditions of `n` samples shown in grids (the same every time): None where the
        model makes up its own (no condition, or classes: every class in turn), else the
        conditions of `n` evenly spaced examples of `split` (captions, context clips...)."""
        condition = self.condition
        if condition is None or condition.kind == "class":
            return None
        from genlab.data.subsets import spread_batch

        _, y = spread_batch(self.dataset(split), n)
        return y

    def encode_condition(self, text: str) -> torch.Tensor:
        """A condition given as text on the command line (`genlab.sample text=...`) as the
        model takes it: (1, *condition.shape). Data whose condition is text implement it."""
        kind = self.condition.kind if self.condition is not None else "none"
        raise GenlabError(
            f"data={self.name} is conditioned on {kind}, not on text: give the condition "
            "another way (classes=[...] for classes, input_dir=... for images)."
        )

    # --- what subclasses provide -----------------------------------------------------------
    def load_splits(self) -> dict[str, Dataset]:
        """Return {'train', 'val', 'test'} datasets of (x, y)."""
        raise NotImplementedError

    # --- shared machinery ------------------------------------------------------------------
    def split_off(self, data: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
        """Split `data` into (rest, part of size `fraction`), permuted by `split_seed`."""
        n = len(data)  # type: ignore[arg-type]
        n_part = round(n * fraction)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        return Indexed(data, perm[n_part:].sort().values), Indexed(
            data, perm[:n_part].sort().values
        )

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = self.load_splits()

    def dataset(self, split: str) -> Dataset:
        if not self.splits:
            self.setup()
        return self.splits[split]

    def _loader(self, split: str, *, train: bool) -> DataLoader | TensorBatches:
        data = self.dataset(split)
        return ResumableLoader(
            data,
            batch_size=self.train_batch_size if train else self.eval_batch_size,
            sampler=EpochShuffle(data, self.shuffle_seed) if train else None,
            drop_last=train and len(data) > self.train_batch_size,  # type: ignore[arg-type]
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            generator=torch.Generator(),
        )

    def train_dataloader(self) -> DataLoader | TensorBatches:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | TensorBatches:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader | TensorBatches:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader | TensorBatches:
        return self._loader("test", train=False)


class ImageDataModule(SampleDataModule):
    """Images: subclasses load the splits; this class batches, binarizes and describes them.

    Every batch is `(x, y)`: x float (B, channels, image_size, image_size) in [0, 1], y the
    labels (class index, or an attribute vector for CelebA). `image_shape`, `channels` and
    `num_classes` let models size their nets from the data.
    """

    name = "images"

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        num_classes: int | None = None,
        binarize: str | None = None,
        device_resident: bool = False,
        hflip: bool = False,
        channels_last: bool = False,
        pairing: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if binarize not in BINARIZE:
            raise GenlabError(
                f"data.binarize={binarize!r} is not an option: use null, static or dynamic."
            )
        if image_size < 4 or channels not in (1, 3):
            raise GenlabError(
                f"data.image_size={image_size} / data.channels={channels}: the image size must "
                "be at least 4 pixels and channels 1 (grey) or 3 (RGB)."
            )
        self.image_size, self.channels, self.num_classes = image_size, channels, num_classes
        self.binarize = binarize
        self.device_resident, self.hflip, self.channels_last = (
            device_resident,
            hflip,
            channels_last,
        )
        self._resident: dict[str, tuple[torch.Tensor, torch.Tensor, str | None]] = {}
        # data/pairing=...: batches become (target, source) pairs for translation models, the
        # source derived from each image on its device (genlab.data.pairing)
        self.pairing = pairing
        if pairing is not None:
            pairing.check(self.image_shape)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every image in every batch."""
        return (self.channels, self.image_size, self.image_size)

    @property
    def modality(self) -> Modality:
        return image(self.channels, self.image_size)

    @property
    def condition(self) -> Condition | None:
        if self.pairing is not None:
            return Condition("image", tuple(self.pairing.source_shape(self.image_shape)))
        if not self.num_classes:
            return None
        names = tuple(getattr(self, "attr_names", None) or ())
        if names:  # an attribute vector per image (CelebA)
            return Condition("attributes", (self.num_classes,), self.num_classes, names=names)
        classes = tuple(getattr(self, "classes", None) or ())
        return Condition("class", (), self.num_classes, names=classes)

    def grid_conditions(self, n: int, split: str = "val") -> torch.Tensor | None:
        """Paired data: the sources of `n` evenly spaced images of `split` (fixed per image);
        otherwise as every datamodule (None for classes or no condition)."""
        if self.pairing is None:
            return super().grid_conditions(n, split)
        from genlab.data.subsets import spread_batch

        x, _ = spread_batch(self.dataset(split), n)
        return self.pairing(x, step=None)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits = self.load_splits()
        if self.binarize is not None:
            # Evaluation splits always use a fixed draw so test numbers are comparable.
            splits = {
                name: Binarized(
                    ds, self.binarize if name == "train" else "static", self.split_seed + i
                )
                for i, (name, ds) in enumerate(splits.items())
            }
        self.splits = splits

    def _resident_batches(self, split: str, *, train: bool) -> TensorBatches:
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if split not in self._resident or self._resident[split][0].device != device:
            images, labels, mode = materialize(self.dataset(split))
            self._resident[split] = (images.to(device), labels.to(device), mode)
        images, labels, mode = self._resident[split]
        return TensorBatches(
            images,
            labels,
            batch_size=self.train_batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.shuffle_seed,
            epoch=lambda: trainer.current_epoch if trainer is not None else 0,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            dynamic_binarize=mode == "dynamic",
            hflip=self.hflip and train,
            channels_last=self.channels_last,
        )

    def _loader(self, split: str, *, train: bool) -> DataLoader | TensorBatches:
        if self.device_resident:
            return self._resident_batches(split, train=train)
        return super()._loader(split, train=train)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # random horizontal flips for the DataLoader path (TensorBatches flips by itself)
        trainer = self.trainer
        if self.hflip and not self.device_resident and trainer is not None and trainer.training:
            x, y = batch
            flip = torch.rand(len(x), device=x.device) < 0.5
            batch = torch.where(flip[:, None, None, None], x.flip(-1), x), y
        if self.pairing is not None:  # training sources are fresh each step, others fixed
            step = trainer.global_step if trainer is not None and trainer.training else None
            batch = (batch[0], self.pairing(batch[0], step=step))
        return batch


def check_files(paths: list[str], *, what: str, how: str) -> None:
    """Raise a GenlabError listing the files of `paths` that do not exist."""
    import os

    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        shown = "\n  ".join(missing[:8]) + ("\n  ..." if len(missing) > 8 else "")
        raise GenlabError(f"{what}: these files are missing:\n  {shown}\n{how}")


Transform = Callable[[Any], torch.Tensor]
