"""CUB-200-2011 and Oxford-102 with Reed et al.'s captions, read from small files written in
their published layouts (genlab.data.cub_captions): StackGAN's bounding-box crop, the split by
class from the class lists, captions and their vocabulary, missing or damaged files named,
and pretrained embeddings from a .npz (never a pickle).

Broken variants each test was seen failing on (in a scratch copy): the crop's half-side
taken as 0.5 x the box (crop test), the crop not clipped at the image border, the split by
image instead of class (the test classes' images in train), val drawn from the test classes,
the vocabulary built from every split (a test-only word known), the embeddings aligned in
file order instead of by name.
"""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg
from hydra.utils import instantiate
from PIL import Image

from genlab.data.cub_captions import CUBCaptions, FlowersCaptions, crop_box
from genlab.nets.text_encoders import LookupTextEncoder
from genlab.utils.errors import GenlabError

CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Crow"]
PER_CLASS = 3


def coordinate_image(width: int, height: int) -> np.ndarray:
    """RGB pixels that say where they are: R = 4 x, G = 4 y, B = 128."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([4 * xs, 4 * ys, np.full_like(xs, 128)], axis=-1).astype(np.uint8)


def captions_of(c: int, i: int, n: int = 10) -> list[str]:
    """The captions of the i-th image of class c: unique, in words every class uses."""
    return [f"bird {c} number {i} has wings of kind {k}" for k in range(n)]


def write_cub(root: Path, *, size=(60, 50)) -> dict[str, tuple]:
    """root/birds/ as StackGAN's Data/birds: CUB_200_2011's lists and images (JPEG), text_c10/
    captions (10 lines), Reed et al.'s class lists (the last class held out). Returns
    {name: box}."""
    base = root / "birds"
    cub = base / "CUB_200_2011"
    images, boxes, names = [], [], {}
    key = 0
    for c, cls in enumerate(CLASSES):
        (cub / "images" / cls).mkdir(parents=True, exist_ok=True)
        (base / "text_c10" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            key += 1
            stem = f"{cls.split('.')[1]}_{i:04d}_{key}"
            rel = f"{cls}/{stem}.jpg"
            Image.fromarray(coordinate_image(*size)).save(
                cub / "images" / rel, quality=100, subsampling=0
            )
            (base / "text_c10" / cls / f"{stem}.txt").write_text(
                "\n".join(captions_of(c, i)) + "\n"
            )
            # box (x, y, w, h): the last image of a class touches the left border
            box = (10.0, 8.0, 12.0, 8.0) if i < PER_CLASS - 1 else (1.0, 20.0, 16.0, 10.0)
            images.append(f"{key} {rel}")
            boxes.append(f"{key} {' '.join(str(v) for v in box)}")
            names[f"{cls}/{stem}"] = box
    (cub / "images.txt").write_text("\n".join(images) + "\n")
    (cub / "bounding_boxes.txt").write_text("\n".join(boxes) + "\n")
    (cub / "classes.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CLASSES)))
    (cub / "train_test_split.txt").write_text("".join(f"{k} {k % 2}\n" for k in range(1, key + 1)))
    (base / "trainvalclasses.txt").write_text("\n".join(CLASSES[:3]) + "\n")
    (base / "testclasses.txt").write_text(CLASSES[3] + "\n")
    return names


def cub(root: Path, **kw) -> CUBCaptions:
    dm = CUBCaptions(data_dir=str(root), **{"image_size": 18, "val_fraction": 0.2, **kw})
    dm.setup()
    return dm


def test_crop_box_is_stackgans():
    # a square of half-side int(0.75 * max(w, h)) around the box centre, clipped
    assert crop_box(60, 50, (10, 8, 12, 8)) == (7, 3, 25, 21)
    assert crop_box(60, 50, (1, 20, 16, 10)) == (0, 13, 21, 37)
    assert crop_box(30, 30, (0, 0, 30, 30)) == (0, 0, 30, 30)


def test_cub_layout_crop_and_class_split(tmp_path):
    write_cub(tmp_path)
    dm = cub(tmp_path)
    # the bounding-box crop: image_size 18 is the crop's own size, so no resampling: the
    # pixels are the source's at x 7..24, y 3..20 (JPEG at quality 100 moves them by a few
    # levels, a neighbour is 4 levels away... so compare the coordinates they encode)
    train = dm.dataset("train")
    full = [i for i, r in enumerate(train.records) if r.box == (10.0, 8.0, 12.0, 8.0)]
    x = train.images[full[0]].float()  # (3, 18, 18) uint8 as float
    assert torch.allclose(x[0] / 4, torch.arange(7, 25).float()[None].expand(18, 18), atol=0.5)
    assert torch.allclose(x[1] / 4, torch.arange(3, 21).float()[:, None].expand(18, 18), atol=0.5)
    # a box at the left border: the crop is clipped (x from 0) and resized to a square
    edge = [i for i, r in enumerate(train.records) if r.box[0] == 1.0]
    xe = train.images[edge[0]].float()
    assert float(xe[0, :, 0].mean()) < 4 * 1.0 and float(xe[1, 0].mean()) < 4 * 14
    # split by class: the held-out class only in test; val from the training classes
    classes = {s: {r.class_name for r in dm.dataset(s).records} for s in ("train", "val", "test")}
    assert classes["test"] == {CLASSES[3]}
    assert classes["train"] | classes["val"] <= set(CLASSES[:3])
    n = {s: len(dm.dataset(s).records) for s in ("train", "val", "test")}
    assert n == {"train": 7, "val": 2, "test": 3}
    # every item is an (image, caption) pair: 10 per image, tokens of its caption file
    data = dm.dataset("test")
    assert len(data) == 30
    img, tokens = data[13]
    assert img.shape == (3, 18, 18) and float(img.min()) >= 0 and float(img.max()) <= 1
    assert dm.vocab.decode(tokens) == data.caption(13)
    assert data.caption(13) == captions_of(3, 1)[3]
    assert dm.condition.kind == "tokens" and dm.condition.shape == (32,)
    # genlab.sample text=...: words of the training captions only
    assert dm.vocab.decode(dm.encode_condition("bird 2 has wings")[0]) == "bird 2 has wings"
    with pytest.raises(GenlabError, match="'crimson'"):
        dm.encode_condition("a crimson bird")


def test_vocabulary_comes_from_the_training_classes(tmp_path):
    write_cub(tmp_path)
    # a word only the held-out class uses
    test_caps = sorted((tmp_path / "birds" / "text_c10" / CLASSES[3]).glob("*.txt"))
    test_caps[0].write_text("bird purple crow\n" + "a bird\n" * 9)
    dm = cub(tmp_path)
    assert "purple" not in dm.vocab and "bird" in dm.vocab and "a" not in dm.vocab
    data = dm.dataset("test")
    j = [r.captions for r in data.records].index(str(test_caps[0]))
    assert data.tokens[j, 0, :4].tolist() == [dm.vocab.index["bird"], 1, 1, 0]  # 2 x <unk>


def test_flowers_layout(tmp_path):
    base = tmp_path / "flowers"
    (base / "jpg").mkdir(parents=True)
    colours = {}
    for c in range(1, 4):
        folder = base / "text_c10" / f"class_{c:05d}"
        folder.mkdir(parents=True)
        for i in range(2):
            stem = f"image_{c * 100 + i:05d}"
            colour = (40 * c, 20 * i + 10, 200)
            colours[stem] = colour
            Image.new("RGB", (50, 30), colour).save(base / "jpg" / f"{stem}.jpg", quality=95)
            (folder / f"{stem}.txt").write_text("\n".join(f"petals {k}" for k in range(10)))
    (base / "trainvalclasses.txt").write_text("class_00001\nclass_00002\n")
    (base / "testclasses.txt").write_text("class_00003\n")
    dm = FlowersCaptions(data_dir=str(tmp_path), image_size=8, val_fraction=0.0)
    dm.setup()
    test = dm.dataset("test")
    assert {r.class_name for r in test.records} == {"class_00003"}
    assert len(dm.dataset("train").records) == 4
    # whole images, resized (no crop): the colour stays
    for j, r in enumerate(test.records):
        mean = test.images[j].float().mean((1, 2))
        assert torch.allclose(mean, torch.tensor(colours[r.name]).float(), atol=3)
    # a caption file without its image: the image is named
    (base / "text_c10" / "class_00003" / "image_09999.txt").write_text("petals\n" * 10)
    with pytest.raises(GenlabError, match=r"jpg/image_09999\.jpg"):
        FlowersCaptions(data_dir=str(tmp_path), image_size=8).setup()


@pytest.mark.parametrize(
    "damage, named",
    [
        ("missing_caption", "text_c10/002.Laysan_Albatross/Laysan_Albatross_0001_5.txt"),
        ("short_caption", "has 3 captions, fewer than data.captions_per_image=10"),
        ("bad_box", "the box of image 4 in"),
        ("unlisted_class", "002.Laysan_Albatross have images but are in neither"),
        ("escape", "'002.Laysan_Albatross/../../../outside.jpg'"),
        ("no_lists", "testclasses.txt"),
        ("missing_image", "Laysan_Albatross_0000_4.jpg"),
    ],
)
def test_damaged_cub_files_are_named(tmp_path, damage, named):
    write_cub(tmp_path)
    base = tmp_path / "birds"
    cls = CLASSES[1]
    caption = base / "text_c10" / cls / "Laysan_Albatross_0001_5.txt"
    if damage == "missing_caption":
        caption.unlink()
    elif damage == "short_caption":
        caption.write_text("a\nb\nc\n")
    elif damage == "bad_box":
        path = base / "CUB_200_2011" / "bounding_boxes.txt"
        path.write_text(path.read_text().replace("4 10.0 8.0 12.0 8.0", "4 10.0 8.0 -1 8.0"))
    elif damage == "unlisted_class":
        (base / "trainvalclasses.txt").write_text(f"{CLASSES[0]}\n{CLASSES[2]}\n")
    elif damage == "escape":
        path = base / "CUB_200_2011" / "images.txt"
        text = path.read_text().replace(
            f"{cls}/Laysan_Albatross_0000_4.jpg", f"{cls}/../../../outside.jpg"
        )
        path.write_text(text)
    elif damage == "no_lists":
        (base / "testclasses.txt").unlink()
    elif damage == "missing_image":
        (base / "CUB_200_2011" / "images" / cls / "Laysan_Albatross_0000_4.jpg").unlink()
    with pytest.raises(GenlabError) as err:
        cub(tmp_path)
    assert named in str(err.value)


def test_a_fifo_for_a_caption_file_is_refused_not_waited_on(tmp_path):
    """A FIFO named like a caption or list file would block a reader for ever: refused."""
    write_cub(tmp_path)
    caption = tmp_path / "birds" / "text_c10" / CLASSES[0] / "Black_footed_Albatross_0000_1.txt"
    caption.unlink()
    os.mkfifo(caption)
    outcome: list[BaseException] = []

    def load():
        try:
            cub(tmp_path)
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the reader blocked on a FIFO"
    assert isinstance(outcome[0], GenlabError) and "not a regular file" in str(outcome[0])


def test_configs_compose_and_instantiate(tmp_path):
    """data=cub_captions and data=flowers_captions as shipped, pointed at small files."""
    write_cub(tmp_path)
    cfg = make_cfg(
        tmp_path,
        "data=cub_captions",
        f"data.data_dir={tmp_path}",
        "data.image_size=8",
        "data.num_workers=0",
    )
    dm = instantiate(cfg.data)
    assert isinstance(dm, CUBCaptions) and dm.root == str(tmp_path / "birds")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 8, 8) and y.dtype == torch.int64 and y.shape[1] == 32
    cfg = make_cfg(tmp_path, "data=flowers_captions")
    assert instantiate(cfg.data).root.endswith("flowers")


def test_seeded_class_split_without_the_lists(tmp_path):
    write_cub(tmp_path)
    for name in ("trainvalclasses.txt", "testclasses.txt"):
        (tmp_path / "birds" / name).unlink()
    dm = cub(tmp_path, class_split="seeded", n_test_classes=1, val_fraction=0.0)
    train = {r.class_name for r in dm.dataset("train").records}
    test = {r.class_name for r in dm.dataset("test").records}
    assert len(test) == 1 and len(train) == 3 and not train & test


def test_pretrained_embeddings_from_npz(tmp_path):
    names = write_cub(tmp_path)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(names))  # the file's order is not the dataset's
    listed = [list(names)[i] for i in order]
    vectors = np.zeros((len(listed), 10, 4), dtype=np.float32)
    for row, name in enumerate(listed):
        vectors[row, :, 0] = list(names).index(name)  # which image
        vectors[row, :, 1] = np.arange(10)  # which caption
    path = tmp_path / "char-CNN-RNN-embeddings.npz"
    np.savez(path, filenames=np.array(listed), embeddings=vectors)
    dm = cub(tmp_path, embeddings=str(path))
    keys, table = dm.text_embedding_table()
    encoder = LookupTextEncoder(keys=keys, vectors=table)
    # every caption's vector says its image and its line in the caption file
    for split in ("train", "test"):
        data = dm.dataset(split)
        for i in range(0, len(data), 7):
            _, tokens = data[i]
            j, k = divmod(i, 10)
            vec = encoder(tokens[None])[0]
            assert vec[0] == list(names).index(data.records[j].name) and vec[1] == k
    with pytest.raises(GenlabError, match="no pretrained embedding"):
        encoder(torch.ones(1, keys.shape[1], dtype=torch.long))
    # an image the file does not cover is named; an object array (a pickle inside) is refused
    np.savez(path, filenames=np.array(listed[1:]), embeddings=vectors[1:])
    with pytest.raises(GenlabError, match=listed[0].split("/")[1]):
        cub(tmp_path, embeddings=str(path))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, filenames=np.array(listed, dtype=object), embeddings=vectors)
    with pytest.raises(GenlabError, match="without pickles"):
        cub(tmp_path, embeddings=str(pickled))
    # the authors' own format, a pickle, and a .npy holding one: never unpickled (unpickling
    # them would write the marker)
    marker = tmp_path / "marker"
    authors = tmp_path / "char-CNN-RNN-embeddings.pickle"
    authors.write_bytes(pickle.dumps([WritesMarker(str(marker))]))
    with pytest.raises(GenlabError, match="pickles, as the authors ship, are not read"):
        cub(tmp_path, embeddings=str(authors))
    npy = tmp_path / "embeddings.npy"
    np.save(npy, np.array([WritesMarker(str(marker))], dtype=object), allow_pickle=True)
    with pytest.raises(GenlabError, match="without pickles"):
        cub(tmp_path, embeddings=str(npy))
    assert not marker.exists()


class WritesMarker:
    """Unpickling this writes a file: what a hostile pickle could do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))
