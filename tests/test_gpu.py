"""What only a CUDA device can check (marker `gpu`; skipped without CUDA): the `trainer=gpu`
preset (bf16-mixed autocast, channels_last, fused Adam, device-resident batches) for an
autoencoder, a VAE and a GAN; torch.compile; exact GAN resume on the device; the decode-once
image cache served from device memory. benchmarks/gpu/run.sh runs them on the GPU machine.

`GENLAB_TEST_DEVICE=cpu` runs them on the CPU with the same switches (bf16 autocast on the
CPU, compile through the aot_eager backend, which needs no compiler): a check of the tests
themselves and of everything but the CUDA kernels.
"""

from __future__ import annotations

import os
from functools import partial

# cuBLAS is deterministic only with a fixed workspace (read when CUDA starts: set it first)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import lightning as L  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import FAST, TINY_GAN, load, make_cfg  # noqa: E402
from datafiles import write_image_folder  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import open_dict  # noqa: E402

DEVICE = os.environ.get("GENLAB_TEST_DEVICE", "cuda")
ON_CUDA = DEVICE == "cuda"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        ON_CUDA and not torch.cuda.is_available(),
        reason="needs a CUDA device (GENLAB_TEST_DEVICE=cpu runs these on the CPU)",
    ),
]

# FAST without its trainer=cpu: a few batches, two epochs, CSV logger
SHORT = [o for o in FAST if not o.startswith("trainer=")]
# what trainer=gpu sets, on the CPU
PRESET = (
    ["trainer=gpu"] if ON_CUDA else ["trainer=cpu", "perf=gpu", "trainer.precision=bf16-mixed"]
)
FAMILIES = {
    "ae_conv": ["model=ae", "model/encoder=conv", "model/decoder=conv"],
    "vae": ["model=vae"],
    "dcgan": ["model=dcgan", "model.latent_dim=16"],
}
PROBES: list[Probe] = []


class Probe(L.Callback):
    """Records what training ran with: the first batch's device, dtype and memory format, the
    devices of the model's parameters and buffers at that batch (Lightning moves the model back
    to the CPU when fit ends), the dtypes the nets compute in during training steps (image
    callbacks run outside autocast), and the model itself."""

    def __init__(self) -> None:
        self.batch: tuple[str, torch.dtype, bool] | None = None
        self.devices: set[str] = set()
        self.net_dtypes: dict[str, set[torch.dtype]] = {}
        self.module: L.LightningModule | None = None
        self.in_step = False
        PROBES.append(self)

    def on_fit_start(self, trainer, pl_module) -> None:
        self.module = pl_module
        for name, net in pl_module.named_children():
            if any(p.requires_grad for p in net.parameters()):
                net.register_forward_hook(partial(self._record, name))

    def _record(self, name, module, inputs, output) -> None:
        if self.in_step and isinstance(output, torch.Tensor):
            self.net_dtypes.setdefault(name, set()).add(output.dtype)

    def on_train_batch_end(self, *args) -> None:
        self.in_step = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.in_step = True
        if self.batch is None:
            x = batch[0]
            cl = x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last)
            self.batch = (x.device.type, x.dtype, cl)
            tensors = [*pl_module.parameters(), *pl_module.buffers()]
            self.devices = {v.device.type for v in tensors}


def train_probed(tmp_path, *overrides: str) -> tuple[dict, Probe]:
    from genlab.train import train

    cfg = make_cfg(tmp_path, *SHORT, *PRESET, *overrides)
    with open_dict(cfg):
        cfg.callbacks["probe"] = {"_target_": f"{__name__}.Probe"}
    summary = train(cfg)
    return summary, PROBES[-1]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_gpu_preset_trains_each_family(tmp_path, family):
    """bf16 autocast in every net, channels-last device-resident batches and conv weights,
    fused Adam; 2 epochs x 4 batches; a checkpoint that loads on the CPU."""
    summary, probe = train_probed(tmp_path, *FAMILIES[family], "test=false")
    assert summary["status"] == "completed" and summary["global_step"] == 8
    assert probe.batch == (DEVICE, torch.float32, True)
    # every net computes under bf16 autocast (an op on autocast's float32 list may add float32)
    assert len(probe.net_dtypes) >= 2
    assert all(torch.bfloat16 in dtypes for dtypes in probe.net_dtypes.values())
    convs = [p for p in probe.module.parameters() if p.ndim == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert probe.devices == {DEVICE}  # every parameter and buffer, during training
    ckpt = load(summary["last_ckpt"])
    for opt in ckpt["optimizer_states"]:
        assert all(group["fused"] is True for group in opt["param_groups"])
    assert all(torch.isfinite(v.float()).all() for v in ckpt["state_dict"].values())
    cfg = make_cfg(tmp_path / "load", "trainer=cpu", *FAMILIES[family])
    instantiate(cfg.model).load_state_dict(ckpt["state_dict"])  # plain CPU weights


def test_compiled_nets_train_and_match_eager(tmp_path):
    """compile=true (inductor on CUDA): training completes, checkpoint keys carry no
    compile prefix, and the compiled nets compute what the same weights compute eagerly."""
    backend = "inductor" if ON_CUDA else "aot_eager"
    summary, probe = train_probed(
        tmp_path, *FAMILIES["ae_conv"], "compile=true", f"compile_backend={backend}", "test=false"
    )
    assert summary["status"] == "completed" and summary["global_step"] == 8
    ckpt = load(summary["last_ckpt"])
    assert "encoder.head.weight" in ckpt["state_dict"]
    assert not any("_orig_mod" in k for k in ckpt["state_dict"])
    compiled = probe.module.to(DEVICE).eval()  # Lightning left it on the CPU after fit
    eager = instantiate(make_cfg(tmp_path / "e", "trainer=cpu", *FAMILIES["ae_conv"]).model)
    eager.load_state_dict(compiled.state_dict())
    eager = eager.to(DEVICE).eval()
    x = torch.rand(16, 1, 28, 28, device=DEVICE)
    with torch.no_grad():
        a, b = compiled.reconstruct(x), eager.reconstruct(x)
    # on CUDA, TF32 products (perf.matmul_precision=high) in kernels fused otherwise
    tol = 1e-2 if ON_CUDA else 1e-5
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize("split", [4, 3])
def test_gan_resume_is_exact_on_the_device(tmp_path, split):
    """6 GAN iterations straight == `split` iterations, stop, resume to 6 (at an epoch boundary
    and in the middle of an epoch of 4 batches), under the GPU preset with deterministic
    kernels: every weight (G, D, EMA) and both optimizer states equal bit for bit."""
    from genlab.train import train

    common = [*SHORT, *PRESET, *TINY_GAN, "test=false", "trainer.deterministic=true"]
    common += ["trainer.max_epochs=10", "trainer.limit_train_batches=4"]
    straight = train(make_cfg(tmp_path / "a", *common, "trainer.max_steps=6"))
    first = train(make_cfg(tmp_path / "b", *common, f"trainer.max_steps={split}"))
    resumed = train(
        make_cfg(tmp_path / "c", *common, "trainer.max_steps=6", f"ckpt_path={first['last_ckpt']}")
    )
    a, b = load(straight["last_ckpt"]), load(resumed["last_ckpt"])
    assert a["global_step"] == b["global_step"] == 6
    assert load(first["last_ckpt"])["global_step"] == split
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert any(k.startswith("generator_ema.") for k in a["state_dict"])
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for i in oa["state"]:
            for name in oa["state"][i]:
                assert torch.equal(
                    torch.as_tensor(oa["state"][i][name]), torch.as_tensor(ob["state"][i][name])
                ), (i, name)


def test_cached_image_folder_is_served_from_device_memory(tmp_path):
    """data=image_folder with its decode-once cache: batches are cut on the device."""
    write_image_folder(tmp_path / "imgs", ["a", "b"], per_class=40, size=(36, 30))
    summary, probe = train_probed(
        tmp_path,
        *FAMILIES["ae_conv"],
        "data=image_folder",
        f"data.path={tmp_path / 'imgs'}",
        "data.image_size=28",
        "data.channels=1",
        "data.batch_size=16",
        "test=false",
    )
    assert summary["status"] == "completed" and summary["global_step"] == 8
    assert probe.batch == (DEVICE, torch.float32, True)


def test_divergence_tracking_does_not_wait_for_the_gpu(tmp_path):
    """Every training step records whether its losses are finite; on CUDA that must queue
    kernels only: a host-device sync per step (as a Python number copied to the device was)
    makes the host wait for the GPU at every step. torch.cuda's sync debug mode "error"
    raises on any synchronising call. The record still names the first bad step."""
    model = instantiate(make_cfg(tmp_path, "trainer=cpu", *FAMILIES["vae"]).model).to(DEVICE)
    good, bad = torch.ones((), device=DEVICE), torch.full((), float("nan"), device=DEVICE)
    if ON_CUDA:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        for step, loss in ((7, good), (8, bad), (9, good), (10, bad)):
            model.track_finite(step, {"loss": loss})
    finally:
        if ON_CUDA:
            torch.cuda.set_sync_debug_mode("default")
    from genlab.models.genlab_module import Diverged

    with pytest.raises(Diverged, match="step 8"):
        model.raise_if_diverged()
