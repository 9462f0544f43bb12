"""UTKFace (Zhang, Song & Qi 2017): faces whose file names carry the age, gender and race,
`{age}_{gender}_{race}_{date}.jpg` (the aligned and cropped release adds `.chip.jpg`), for
face aging: a condition made of the age group (groups by config), and optionally the gender
and race.

Names are parsed strictly: the age a whole number of years (0-120), the gender 0 (male) or 1
(female), the race 0-4 (White, Black, Asian, Indian, Others), the date digits. The release
has a few files whose names lack a field (e.g. `39_1_20170116174525125.jpg.chip.jpg`): every
bad name is named in the error, or left out with `on_bad_name=skip`. The images are opened
as untrusted files (genlab.data.untrusted_files, through genlab.data.cache).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from genlab.data.cache import FileDataModule, Source
from genlab.data.datamodules import Indexed
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

GENDERS = ("male", "female")
RACES = ("white", "black", "asian", "indian", "others")
FIELDS = ("age", "gender", "race")
MAX_AGE = 120
# the ten groups of the CAAE paper (Zhang et al. 2017): 0-5, 6-10, ..., 61-70, 71+
CAAE_AGE_GROUPS = (0, 6, 11, 16, 21, 31, 41, 51, 61, 71)
NAME_FORM = "{age}_{gender}_{race}_{date}.jpg"


def parse_name(path: str) -> tuple[int, int, int]:
    """(age, gender, race) from a UTKFace file name; ValueError saying what is wrong."""
    stem = os.path.basename(path).split(".", 1)[0]
    parts = stem.split("_")
    if len(parts) != 4:
        raise ValueError(f"{len(parts)} fields separated by '_', not 4 ({NAME_FORM})")
    age, gender, race, date = parts
    if not age.isdigit() or int(age) > MAX_AGE:
        raise ValueError(f"age {age!r} is not a whole number of years from 0 to {MAX_AGE}")
    if gender not in ("0", "1"):
        raise ValueError(f"gender {gender!r} is not 0 (male) or 1 (female)")
    if race not in ("0", "1", "2", "3", "4"):
        raise ValueError(f"race {race!r} is not one of 0-4 ({', '.join(RACES)})")
    if not date.isdigit():
        raise ValueError(f"date {date!r} is not digits")
    return int(age), int(gender), int(race)


def parse_names(
    paths: Sequence[str], *, on_bad_name: str = "error", where: str = "UTKFace"
) -> tuple[list[int], torch.Tensor]:
    """The indices of `paths` whose names parse, and their (age, gender, race) (N, 3) long.
    Bad names: a GenlabError naming them (up to 10) and why, or, with `on_bad_name=skip`,
    left out with a warning naming them."""
    keep, rows, bad = [], [], []
    for i, path in enumerate(paths):
        try:
            rows.append(parse_name(path))
            keep.append(i)
        except ValueError as exc:
            bad.append(f"{os.path.basename(path)} ({exc})")
    if bad and on_bad_name != "skip":
        shown = "\n  ".join(bad[:10]) + (
            f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        )
        raise GenlabError(
            f"{where}: {len(bad)} file name(s) do not say age, gender and race as "
            f"{NAME_FORM} does:\n  {shown}\nRename or remove them, or set "
            "data.on_bad_name=skip to leave them out."
        )
    if bad:
        log.warning(
            "%s: leaving out %d file(s) whose names do not parse: %s",
            where,
            len(bad),
            ", ".join(bad[:10]),
        )
    return keep, torch.tensor(rows, dtype=torch.long).view(-1, 3)


def check_age_groups(groups: Sequence[int]) -> list[int]:
    """Group start ages: whole numbers, strictly increasing, the first 0."""
    try:
        starts = [int(g) for g in groups]
    except (TypeError, ValueError):
        starts = []
    ok = (
        starts
        and all(float(g) == s for g, s in zip(groups, starts, strict=True))
        and starts[0] == 0
        and all(a < b for a, b in zip(starts, starts[1:], strict=False))
        and starts[-1] <= MAX_AGE
    )
    if not ok:
        raise GenlabError(
            f"data.age_groups={list(groups)}: give the first age of each group, whole numbers "
            f"from 0, strictly increasing, up to {MAX_AGE} (the CAAE paper's ten groups: "
            f"{list(CAAE_AGE_GROUPS)})."
        )
    return starts


def group_names(starts: Sequence[int]) -> list[str]:
    """`age_0-5`, `age_6-10`, ..., `age_71+` for group starts [0, 6, ..., 71]."""
    ends = [f"{b - 1}" for b in starts[1:]] + [""]
    return [
        f"age_{a}-{e}" if e and int(e) != a else (f"age_{a}" if e else f"age_{a}+")
        for a, e in zip(starts, ends, strict=True)
    ]


class UTKFace(FileDataModule):
    """UTKFace faces from the image files under `path` (the release's `UTKFace/` folder;
    subfolders are walked, links out of it refused unless `outside_links=follow`), resized and
    center-cropped to `image_size`, split at random (`split_seed`) by `val_fraction` and
    `test_fraction`.

    `attributes` chooses the condition, an attribute vector per face (Condition "attributes"):
    `age` -> one-hot of the age group (`age_groups`: the first age of each group), `gender` ->
    1 for female, `race` -> one-hot of the five races. `attr_names` name its entries.

    What editing asks of attribute data (genlab.analysis.editing): `edit_attributes` (age in
    years, gender 0/1, race 0-4), `attribute_values(images, paths)` (from the file names) and
    `condition_of(values)`.
    """

    name = "utkface"

    def __init__(
        self,
        *,
        path: str,
        attributes: Sequence[str] = ("age",),
        age_groups: Sequence[int] = CAAE_AGE_GROUPS,
        on_bad_name: str = "error",
        test_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        attributes = list(attributes)
        if (
            not attributes
            or any(a not in FIELDS for a in attributes)
            or len(set(attributes)) != len(attributes)
        ):
            raise GenlabError(
                f"data.attributes={attributes}: choose from {', '.join(FIELDS)}, each once "
                "(e.g. [age] or [age, gender])."
            )
        if on_bad_name not in ("error", "skip"):
            raise GenlabError(f"data.on_bad_name={on_bad_name!r}: use error or skip.")
        if not 0.0 <= test_fraction < 1.0:
            raise GenlabError(f"data.test_fraction={test_fraction} must be in [0, 1).")
        self.age_starts = check_age_groups(age_groups)
        names: list[str] = []
        for a in attributes:
            if a == "age":
                names += group_names(self.age_starts)
            elif a == "gender":
                names.append("female")
            else:
                names += [f"race_{r}" for r in RACES]
        kwargs["num_classes"] = len(names)
        super().__init__(**kwargs)
        self.path, self.attributes = str(path), attributes
        self.attr_names = names
        self.on_bad_name, self.test_fraction = on_bad_name, test_fraction
        self._fields: torch.Tensor | None = None

    @property
    def where(self) -> str:
        return f"UTKFace (data.path={self.path!r})"

    # --- the files ------------------------------------------------------------------------
    def source(self) -> Source:
        from genlab.data.untrusted_files import walk_files

        if not os.path.isdir(self.path):
            raise GenlabError(
                f"data.path={self.path!r} is not a directory. Download UTKFace (the aligned and "
                "cropped faces, UTKFace.tar.gz) from its site, unpack it and point data.path "
                "at its UTKFace/ folder."
            )
        root = os.path.realpath(self.path)
        paths = walk_files(self.path, IMG_EXTENSIONS, root=root, outside_links=self.outside_links)
        keep, fields = parse_names(paths, on_bad_name=self.on_bad_name, where=self.where)
        if not keep:
            raise GenlabError(f"{self.where} holds no image named {NAME_FORM}.")
        self._fields = fields
        return Source(
            name=self.name,
            root=self.path,
            paths=[paths[i] for i in keep],
            extra=[*self.attributes, *map(str, self.age_starts)],
        )

    def labels(self, source: Source) -> tuple[torch.Tensor, dict[str, Any]]:
        fields = self._fields if self._fields is not None else parse_names(source.paths)[1]
        return self.condition_of(fields.float()), {"attr_names": self.attr_names}

    def make_splits(self, full: Dataset, keep: torch.Tensor) -> dict[str, Dataset]:
        rest, test = self.split_off(Indexed(full, keep), self.test_fraction)
        train, val = self.split_off(rest, self.val_fraction)
        if len(train) == 0:
            raise GenlabError(
                f"{self.where}: {len(keep)} usable image(s) leave none to train on with "
                f"data.val_fraction={self.val_fraction} and data.test_fraction="
                f"{self.test_fraction}: add images or lower the fractions."
            )
        return {"train": train, "val": val, "test": test}

    # --- what editing asks of attribute data -------------------------------------------------
    @property
    def edit_attributes(self) -> tuple[str, ...]:
        return tuple(self.attributes)

    def age_group(self, ages: torch.Tensor) -> torch.Tensor:
        """The group index of each age (years) (N,) long."""
        starts = torch.tensor(self.age_starts, dtype=torch.float32)
        return (torch.bucketize(ages.float().contiguous(), starts, right=True) - 1).clamp_min(0)

    def attribute_values(
        self, images: torch.Tensor | None, paths: Sequence[str] | None
    ) -> torch.Tensor:
        """(N, len(attributes)) from the file names: age in years, gender 0/1, race 0-4."""
        if paths is None:
            raise GenlabError(
                "UTKFace's attributes are read from file names: give the faces as files "
                f"named {NAME_FORM} (input_dir=...)."
            )
        fields = []
        for p in paths:
            try:
                fields.append(parse_name(p))
            except ValueError as exc:
                raise GenlabError(
                    f"{p}: its name does not say the face's age, gender and race ({exc}); "
                    f"name it {NAME_FORM} to edit it with a UTKFace model."
                ) from None
        cols = [FIELDS.index(a) for a in self.attributes]
        return torch.tensor(fields, dtype=torch.float32)[:, cols]

    def condition_of(self, values: torch.Tensor) -> torch.Tensor:
        """Values (N, len(attributes)) -> conditions (N, num_classes): one-hot age groups,
        female 0/1 (clamped), one-hot races. Accepts all three fields (N, 3) too."""
        if values.shape[1] == len(FIELDS) and len(self.attributes) != len(FIELDS):
            values = values[:, [FIELDS.index(a) for a in self.attributes]]
        parts = []
        for k, a in enumerate(self.attributes):
            v = values[:, k]
            if a == "age":
                group = self.age_group(v)
                parts.append(torch.nn.functional.one_hot(group, len(self.age_starts)).float())
            elif a == "gender":
                parts.append(v.float().clamp(0, 1)[:, None])
            else:
                race = v.round().long().clamp(0, len(RACES) - 1)
                parts.append(torch.nn.functional.one_hot(race, len(RACES)).float())
        return torch.cat(parts, 1)
