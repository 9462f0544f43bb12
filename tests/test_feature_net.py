"""Feature networks of the SR content loss (`model.feature_ckpt`) are untrusted files: a
TorchScript file or a torch.export program is a program, loaded only with
`model.trust_feature_code=true`; a genlab classifier checkpoint is read as weights only.
Real files written by torch, real training runs."""

from __future__ import annotations

import contextlib
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import FAST, make_cfg

from genlab.models.translation import FeatureNet, program_kind
from genlab.train import train
from genlab.utils.errors import GenlabError

SR = [
    "experiment=sr_x4_mnist",
    "model.generator.base_channels=4",
    "model.generator.n_blocks=1",
    "model.discriminator.base_channels=4",
    "model.discriminator.dense=8",
    "data.batch_size=16",
    "trainer.max_steps=2",
    "test=false",
    "model.feature_weight=0.5",
]


class Spy(torch.nn.Module):
    """A feature net that, when run, maps `path` into memory shared with the file and writes
    "AAAA" into it: what any TorchScript file can do while it trains."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.conv = torch.nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mark = torch.from_file(self.path, shared=True, size=4, dtype=torch.uint8)
        mark.fill_(65)
        return self.conv(x) + 0.0 * mark[0].float()  # used, so TorchScript keeps the write


class Unpickled:
    """Creates `marker` when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def small_net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.AdaptiveAvgPool2d(2))


def exported(net: torch.nn.Module, path: Path) -> Path:
    batch = torch.export.Dim("batch")
    program = torch.export.export(net, (torch.rand(2, 1, 28, 28),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def scripted(net: torch.nn.Module, path: Path) -> Path:
    with pytest.warns(FutureWarning):  # TorchScript is deprecated; its files still load
        torch.jit.script(net).save(str(path))
    return path


def with_pickled_weight(src: Path, dst: Path, marker: Path) -> Path:
    """`src` (a torch.export archive) with its first weight replaced by a pickle that creates
    `marker`, flagged `use_pickle` as torch.export.save flags tensor subclasses."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                for payload in config["config"].values():
                    payload["use_pickle"] = True
                data = json.dumps(config).encode()
            elif info.filename.endswith("data/weights/weight_0"):
                data = pickle.dumps(Unpickled(str(marker)))
            zout.writestr(info, data)
    return dst


def test_a_torchscript_file_is_refused_unless_trusted_and_then_runs_as_code(tmp_path):
    """The spy net writes a marker file when it runs. Without the option training is refused
    before any step and the marker never appears; with model.trust_feature_code=true the file
    is loaded and runs, marker and all (which is why it needs the option). Broken variant
    checked: FeatureNet loading programs whatever `trust_code` says fails both asserts of the
    refusal (no GenlabError, the marker is written during training)."""
    marker = tmp_path / "marker"
    spy = scripted(Spy(str(marker)), tmp_path / "features.pt")
    assert program_kind(spy) == "TorchScript"
    with pytest.raises(GenlabError, match=r"TorchScript file.*model\.trust_feature_code=true"):
        train(make_cfg(tmp_path / "refused", *FAST, *SR, f"model.feature_ckpt={spy}"))
    assert not marker.exists()
    summary = train(
        make_cfg(
            tmp_path / "trusted",
            *FAST,
            *SR,
            f"model.feature_ckpt={spy}",
            "model.trust_feature_code=true",
        )
    )
    assert summary["status"] == "completed" and summary["metrics"]["train/loss_g_feature"] > 0
    assert marker.read_bytes() == b"AAAA"


def test_loading_a_torch_export_program_runs_its_pickles(tmp_path):
    """Why torch.export programs need the option too (torch 2.14): torch.export.load unpickles
    any payload the archive flags `use_pickle` (torch.load(weights_only=False)). If a torch
    release makes this safe, this test fails: then torch.export files could be accepted
    without the option."""
    marker = tmp_path / "marker"
    evil = with_pickled_weight(
        exported(small_net(), tmp_path / "f.pt2"), tmp_path / "evil.pt2", marker
    )
    # the payload is not a tensor: loading fails, after the pickle ran
    with contextlib.suppress(Exception):
        torch.export.load(str(evil))
    assert marker.exists()


def test_a_torch_export_program_is_refused_unless_trusted(tmp_path):
    """An exported program carrying a pickle that creates a marker: refused without the option,
    told from the zip directory alone (the marker never appears). Broken variant checked:
    trying torch.export.load before the trust check (as genlab did) creates the marker."""
    marker = tmp_path / "marker"
    evil = with_pickled_weight(
        exported(small_net(), tmp_path / "f.pt2"), tmp_path / "evil.pt2", marker
    )
    assert program_kind(evil) == "torch.export"
    with pytest.raises(GenlabError, match=r"torch\.export file.*trust_feature_code"):
        FeatureNet(str(evil))
    assert not marker.exists()


def test_trusted_programs_compute_the_nets_features(tmp_path):
    """With trust_code, a torch.export program and a TorchScript file give the features of the
    net they were made from, and stay differentiable in the input; a file that only looks
    like a program (a TorchScript record name, then garbage) is one clear error."""
    torch.manual_seed(0)
    net = small_net().eval()
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    for path in (exported(net, tmp_path / "f.pt2"), scripted(net, tmp_path / "f.pt")):
        features = FeatureNet(str(path), trust_code=True)
        got = features(x)
        assert torch.allclose(got, net(x), atol=1e-6), path.name
        (grad,) = torch.autograd.grad(got.sum(), x)
        assert grad.abs().sum() > 0
        assert not any(p.requires_grad for p in features._module.parameters())
    fake = tmp_path / "fake.pt"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("fake/constants.pkl", b"not a pickle")
    with pytest.raises(GenlabError, match=r"fake\.pt.*does not load"):
        FeatureNet(str(fake), trust_code=True)


def test_a_classifier_checkpoint_needs_no_trust(tmp_path):
    """A genlab classifier checkpoint is a torch.save archive: not a program, read as weights
    only, with or without the option."""
    summary = train(
        make_cfg(tmp_path, *FAST, "model=classifier", "trainer.max_epochs=1", "test=false")
    )
    assert program_kind(Path(summary["last_ckpt"])) is None
    features = FeatureNet(summary["last_ckpt"])
    assert features.kind == "genlab-classifier"
    assert features(torch.rand(2, 1, 28, 28)).shape[0] == 2
