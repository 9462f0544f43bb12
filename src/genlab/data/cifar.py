"""CIFAR-10, held in memory as uint8: the official python batches, checked and read as data.

The batches are Python pickles, and `pickle.load` runs whatever code a pickle names: a
`data_batch_1` from elsewhere could do anything. So genlab (1) checks each file's MD5 against
the official one whenever the files exist, downloaded or not (`check_md5`), remembering the
files it verified (by path, size, times and inode) so a later start does not hash 170 MB
again, and (2) reads the batches with its own unpickler, which builds only numpy arrays of
numbers and plain Python values and refuses everything else, so even a file that is not the
official one (`check_md5=false`) is data, never code. torchvision is used to download only.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets

from genlab.data.datamodules import (
    ArrayImages,
    ImageDataModule,
    check_files,
    match_channels,
    resize_uint8,
)
from genlab.utils.errors import GenlabError
from genlab.utils.untrusted import read_json_object

# {file name: MD5} of the official batches (torchvision's list)
OFFICIAL_MD5 = dict(datasets.CIFAR10.train_list + datasets.CIFAR10.test_list)
TRAIN = [f for f, _ in datasets.CIFAR10.train_list]
TEST = [f for f, _ in datasets.CIFAR10.test_list]
# an official batch is 31 MB (10,000 images of 3,072 bytes and their labels)
MAX_BATCH_BYTES = 64 << 20
PIXELS = 3 * 32 * 32


# --- integrity -------------------------------------------------------------------------------
def _verified_record() -> Path:
    # genlab's own record, in the user's cache: never beside the data (whoever made a data
    # folder could put a record there claiming anything)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "genlab" / "verified_files.json"


def _stat_key(path: str) -> dict[str, int]:
    st = os.stat(path)
    # a changed file changes its size, mtime or ctime (which no one can set back), or is
    # another inode when it was replaced
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "device": st.st_dev,
    }


_HASHED: dict[str, dict[str, Any]] = {}


def _load_record(record: Path) -> dict[str, Any]:
    try:
        return read_json_object(record, what="genlab's record of verified files")
    except (GenlabError, OSError, ValueError):
        return {}  # missing or damaged: hash again


def file_md5s(paths: list[str], *, record: Path | None = None) -> dict[str, str]:
    """{path: MD5} of `paths`, hashed once per file version: the MD5 of a file whose size,
    times, inode and device are those recorded at its last hashing is read from `record`."""
    record = record or _verified_record()
    known = _load_record(record)
    out, changed = {}, False
    for path in paths:
        real = os.path.realpath(path)
        key = _stat_key(real)
        entry = known.get(real)
        if not (isinstance(entry, dict) and entry.get("stat") == key and "md5" in entry):
            entry = _HASHED.get(real)  # this process hashed it (the record may be read-only)
        if isinstance(entry, dict) and entry.get("stat") == key and "md5" in entry:
            out[path] = str(entry["md5"])
            continue
        digest = hashlib.md5(usedforsecurity=False)
        with open(real, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        out[path] = digest.hexdigest()
        known[real] = _HASHED[real] = {"stat": key, "md5": out[path]}
        changed = True
    if changed:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            tmp = record.with_suffix(f".{os.getpid()}.tmp")
            # bounded: the most recent 256 files
            tmp.write_text(json.dumps(dict(list(known.items())[-256:])))
            tmp.replace(record)
        except OSError:  # a read-only home: hash again next time
            pass
    return out


# --- reading the batches as data ------------------------------------------------------------
# The unpickler below builds nothing but plain values and the placeholders here; numpy's own
# reconstruction (ndarray/dtype __setstate__, which trust their state) never runs. The arrays
# are made afterwards from the recorded bytes, type code and shape, each checked.
class _DtypeSpec:
    """A dtype a pickle asks for: its type code, and the byte order its state gives."""

    def __init__(self, code: Any, *_: Any) -> None:
        self.code, self.state = code, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def dtype(self) -> np.dtype:
        if not isinstance(self.code, str):
            raise ValueError(f"the dtype {self.code!r} is not a type code")
        dtype = np.dtype(self.code)
        state = self.state
        if state is not None:
            # (version, byte order, subarray, names, fields, ...): plain numbers only
            if not isinstance(state, tuple) or len(state) < 5 or any(state[2:5]):
                raise ValueError("the dtype is structured, not plain numbers")
            if state[1] in ("<", ">"):
                dtype = dtype.newbyteorder(state[1])
        if dtype.kind not in "biuf":
            raise ValueError(f"the dtype {dtype} is not numeric")
        return dtype


class _ArraySpec:
    """An array a pickle describes (shape, dtype, raw bytes), made by `array()` once checked."""

    def __init__(self, state: Any = None) -> None:
        self.state = state

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def array(self) -> np.ndarray:
        state = self.state
        if not isinstance(state, tuple) or len(state) != 5:
            raise ValueError("an array without its shape, dtype and bytes")
        _, shape, spec, fortran, raw = state
        if not isinstance(spec, _DtypeSpec):
            raise ValueError("an array without a dtype")
        return _make_array(raw, spec.dtype(), shape, "F" if fortran else "C")


def _make_array(raw: Any, dtype: np.dtype, shape: Any, order: str) -> np.ndarray:
    if isinstance(raw, str):  # a Python 2 pickle's bytes, decoded as latin1
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)):
        raise ValueError("an array whose data are not bytes")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise ValueError(f"an array of shape {shape!r}")
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(raw):
        raise ValueError(f"an array of shape {shape} whose bytes do not match it")
    return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order=order).copy()


class _NdarrayClass:
    """What `numpy.ndarray` resolves to: a token only `_reconstruct` accepts."""


_NDARRAY = _NdarrayClass()


def _reconstruct(cls: Any, *_: Any) -> _ArraySpec:
    # protocols 0-4: numpy pickles an array as _reconstruct(ndarray, (0,), b"b") and then
    # sets its state (version, shape, dtype, fortran order, raw bytes)
    if cls is not _NDARRAY:
        raise ValueError("_reconstruct of something other than an array")
    return _ArraySpec()


def _frombuffer(raw: Any, spec: Any, shape: Any, order: Any) -> _ArraySpec:
    # protocol 5: _frombuffer(bytes, dtype, shape, order)
    if not isinstance(spec, _DtypeSpec) or order not in ("C", "F"):
        raise ValueError("an array without a plain dtype and order")
    return _ArraySpec((1, shape, spec, order == "F", raw))


def _encode(text: Any, encoding: Any = "latin1") -> bytes:
    # protocol 2 from Python 3 writes bytes as _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding != "latin1":
        raise ValueError("_codecs.encode other than of text as latin1")
    return text.encode("latin1")


class BatchUnpickler(pickle.Unpickler):
    """Unpickles plain Python values and placeholders of numeric numpy arrays; every other
    global a pickle names (a function to call, a class to build) is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _DtypeSpec,
        ("_codecs", "encode"): _encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which is code, not data"
            ) from None


def _values(value: Any) -> Any:
    return value.array() if isinstance(value, _ArraySpec) else value


def read_batch(path: str) -> tuple[np.ndarray, list[int]]:
    """(uint8 images (N, 3072), labels) of one CIFAR-10 python batch, read as data; a
    GenlabError naming the file when it is anything else."""

    def refuse(why: str) -> GenlabError:
        return GenlabError(
            f"CIFAR-10 file {path} is not a CIFAR-10 batch: {why}. Replace it with the file "
            "of the same name from cifar-10-python.tar.gz (or delete the folder and run with "
            "data.download=true)."
        )

    size = os.path.getsize(path)
    if size > MAX_BATCH_BYTES:
        raise refuse(f"{size:,} bytes, where a batch is about 31 MB")
    try:
        with open(path, "rb") as f:
            entry = BatchUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # refused globals, truncated or not a pickle
        raise refuse(f"it cannot be read as data ({type(exc).__name__}: {exc})") from None
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        raise refuse("not a dict with 'data' and 'labels'")
    try:
        data, labels = _values(entry["data"]), _values(entry["labels"])
    except ValueError as exc:
        raise refuse(str(exc)) from None
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == PIXELS
    ):
        shape = getattr(data, "shape", None)
        raise refuse(f"'data' is {type(data).__name__} {shape}, not uint8 (N, {PIXELS})")
    labels = list(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
    if labels is None or len(labels) != len(data):
        raise refuse(f"'labels' is not a list of {len(data)} class indices")
    if not all(isinstance(v, (int, np.integer)) and 0 <= v < 10 for v in labels):
        raise refuse("'labels' holds values that are not class indices 0-9")
    return data, [int(v) for v in labels]


class CIFAR10(ImageDataModule):
    """CIFAR-10 (32x32 RGB, 10 classes): downloaded when allowed, else read from
    `data_dir/cifar-10-batches-py/` (the python pickles). Train is split into train / val.

    The batches are checked against their official MD5 whenever they exist (`check_md5`,
    remembered per file version) and always read as data, never as code (see the module)."""

    name = "cifar10"

    def __init__(self, *, check_md5: bool = True, **kwargs) -> None:
        kwargs.setdefault("num_classes", 10)
        super().__init__(**kwargs)
        self.check_md5 = check_md5

    @property
    def base(self) -> str:
        return os.path.join(self.data_dir, datasets.CIFAR10.base_folder)

    def _check(self) -> None:
        check_files(
            [os.path.join(self.base, f) for f in TRAIN + TEST],
            what=f"CIFAR-10 not found under data.data_dir={self.data_dir!r}",
            how=(
                f"Extract cifar-10-python.tar.gz so that {self.base}/ holds the batch files, or "
                "run once where the network allows with data.download=true (the default)."
            ),
        )

    def _not_official(self) -> list[str]:
        """The batch files present whose MD5 is not the official one."""
        present = [
            os.path.join(self.base, f)
            for f in TRAIN + TEST
            if os.path.isfile(os.path.join(self.base, f))
        ]
        md5s = file_md5s(present)
        return [p for p in present if md5s[p] != OFFICIAL_MD5[os.path.basename(p)]]

    def _verify(self) -> None:
        self._check()
        if not self.check_md5:
            return
        wrong = self._not_official()
        if wrong:
            shown = "\n  ".join(wrong)
            raise GenlabError(
                f"CIFAR-10: these files under data.data_dir={self.data_dir!r} are not the "
                f"official ones (their MD5 differs):\n  {shown}\nThey may be damaged, or made "
                "by someone else: delete them and extract cifar-10-python.tar.gz again (or run "
                "with data.download=true). If you changed them on purpose, set "
                "data.check_md5=false (genlab reads them as data either way)."
            )

    def prepare_data(self) -> None:
        if self.download and (
            not self._all_present() or (self.check_md5 and self._not_official())
        ):
            # missing or not official: torchvision fetches the archive and extracts it again
            try:
                datasets.CIFAR10(self.data_dir, train=True, download=True)
            except (RuntimeError, OSError) as exc:
                self._check()
                raise GenlabError(f"CIFAR-10: download failed ({exc}).") from exc
        self._verify()

    def _all_present(self) -> bool:
        return all(os.path.isfile(os.path.join(self.base, f)) for f in TRAIN + TEST)

    def load_splits(self) -> dict[str, Dataset]:
        self._verify()
        out = {}
        for split, names in (("train", TRAIN), ("test", TEST)):
            parts = [read_batch(os.path.join(self.base, f)) for f in names]
            data = np.concatenate([d for d, _ in parts])
            labels = [v for _, part in parts for v in part]
            images = torch.from_numpy(data).view(-1, 3, 32, 32)  # (N, 3, 32, 32) uint8
            images = match_channels(
                resize_uint8(images, self.image_size), self.channels, self.name
            )
            out[split] = ArrayImages(images, torch.tensor(labels, dtype=torch.long))
        out["train"], out["val"] = self.split_off(out["train"], self.val_fraction)
        return out
