"""The GAN's health checks (models/gan.py, `_count_collapse_signs` / `_report_collapse_signs`):
each sign at its documented threshold with hand-made values (D saturated: D(x) > 0.99 and
D(G(z)) < 0.01 for the probability-valued losses; G's gradient norm < 1e-6; D's < 1e-8; a loss
beyond 1e6), the warning rule (a sign on at least half of an epoch's logged steps, at least 3
of them), and a healthy tiny GAN as the control: it counts no sign and warns of nothing.

Seen failing (each in a scratch copy of src/): `d_saturated` always true (the threshold tests
and the healthy control), saturation needing only D(x) > 0.99, each threshold moved to <= or
>=, the warning rule at "more than half", and a loss of -2e6 not counted (abs dropped)."""

from __future__ import annotations

import logging
import tempfile
from functools import cache
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import FAST, TINY_GAN, make_cfg
from hydra.utils import instantiate

from genlab.models.gan import COLLAPSE_HINTS, GAN
from genlab.train import train

SIGNS = ("d_saturated", "g_grad_vanished", "d_grad_vanished", "loss_exploded")
HEALTHY = {"d_real": 0.6, "d_fake": 0.4, "loss_g": 0.9, "loss_d": 1.3, "g": 0.5, "d": 0.5}


@cache
def model_config(*extra: str):
    return make_cfg(Path(tempfile.mkdtemp()), *TINY_GAN, *extra).model


def gan(tmp_path, *extra: str) -> GAN:
    return instantiate(model_config(*extra))


def logged_step(model: GAN, **values: float) -> None:
    """One logging step with these scalars and gradient norms (HEALTHY for the others)."""
    v = {**HEALTHY, **values}
    model._grad_norms = {net: torch.tensor(v[net]) for net in ("g", "d")}
    scalars = {k: torch.tensor(v[k]) for k in ("d_real", "d_fake", "loss_g", "loss_d")}
    model._count_collapse_signs(scalars)


def signs_of(model: GAN, **values: float) -> dict[str, int]:
    """The signs one logging step with `values` counts (a fresh epoch, reported at once)."""
    model._health = {}
    logged_step(model, **values)
    model._report_collapse_signs()
    return {name: model.health().get(name, 0) for name in SIGNS}


NONE = dict.fromkeys(SIGNS, 0)


@pytest.mark.parametrize(
    ("values", "sign"),
    [
        ({}, None),
        ({"d_real": 0.995, "d_fake": 0.005}, "d_saturated"),
        ({"d_real": 0.99, "d_fake": 0.005}, None),  # at the threshold: not above it
        ({"d_real": 0.995, "d_fake": 0.01}, None),
        ({"d_real": 0.995, "d_fake": 0.3}, None),  # both conditions are needed
        ({"d_real": 0.7, "d_fake": 0.005}, None),
        ({"g": 9e-7}, "g_grad_vanished"),
        ({"g": 1e-6}, None),
        ({"d": 9e-9}, "d_grad_vanished"),
        ({"d": 1e-8}, None),
        ({"g": 9e-9, "d": 2e-8}, "g_grad_vanished"),  # G's threshold is G's own
        ({"loss_g": 1.01e6}, "loss_exploded"),
        ({"loss_d": -2e6}, "loss_exploded"),  # the size of the loss, either sign
        ({"loss_g": 1e6, "loss_d": -1e6}, None),
        ({"loss_g": 1000000.5}, "loss_exploded"),  # just above: float32 holds it
        ({"loss_d": -1000000.5}, "loss_exploded"),
    ],
)
def test_each_sign_at_its_threshold(tmp_path, values, sign):
    model = gan(tmp_path)
    want = {**NONE, **({sign: 1} if sign else {})}
    assert signs_of(model, **values) == want


def test_no_gradient_norm_recorded_is_no_sign(tmp_path):
    """Before a net's first logged optimizer step there is no norm to judge: no sign."""
    model = gan(tmp_path)
    model._health, model._grad_norms = {}, {}
    scalars = {k: torch.tensor(HEALTHY[k]) for k in ("d_real", "d_fake", "loss_g", "loss_d")}
    model._count_collapse_signs(scalars)
    model._report_collapse_signs()
    assert model.health() == {"logged_steps": 1}


@pytest.mark.parametrize("loss", ["wgan_gp", "hinge"])
def test_saturation_is_not_counted_for_raw_scores(tmp_path, loss):
    """wgan_gp and hinge log raw critic scores, not probabilities: 5 and -5 are no sign."""
    model = gan(tmp_path, f"model.loss={loss}")
    assert signs_of(model, d_real=5.0, d_fake=-5.0) == NONE
    assert signs_of(model, g=0.0) == {**NONE, "g_grad_vanished": 1}


def test_a_warning_needs_half_of_at_least_three_logged_steps(tmp_path, caplog):
    """Per epoch: 2 of 4 steps saturated warns; 1 of 4 does not; 2 of 2 does not (too few
    steps); 2 of 3 does; 1 of 3 does not. The counts add up over epochs in `health()`."""
    caplog.set_level(logging.WARNING, logger="genlab.models.gan")
    model = gan(tmp_path)
    saturated = {"d_real": 0.999, "d_fake": 0.001}
    epochs = [(4, 2), (4, 1), (2, 2), (3, 2), (3, 1)]
    for logged, bad in epochs:
        for i in range(logged):
            logged_step(model, **(saturated if i < bad else {}))
        model._report_collapse_signs()
    health = model.health()
    assert health["logged_steps"] == 16 and health["d_saturated"] == 8
    assert health["warnings"] == [
        {"epoch": 0, "sign": "d_saturated", "steps": 2, "of": 4},
        {"epoch": 0, "sign": "d_saturated", "steps": 2, "of": 3},
    ]
    messages = [r.getMessage() for r in caplog.records if r.name == "genlab.models.gan"]
    hint = COLLAPSE_HINTS["d_saturated"]
    assert messages == [
        f"GAN health, epoch 0: d_saturated on 2 of 4 logged steps. {hint}",
        f"GAN health, epoch 0: d_saturated on 2 of 3 logged steps. {hint}",
    ]


def test_every_sign_warns_with_its_hint(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="genlab.models.gan")
    model = gan(tmp_path)
    bad = {"d_real": 0.999, "d_fake": 0.001, "g": 0.0, "d": 0.0, "loss_g": 3e6}
    for _ in range(3):
        logged_step(model, **bad)
    model._report_collapse_signs()
    assert {w["sign"] for w in model.health()["warnings"]} == set(SIGNS)
    for name in SIGNS:
        assert f"{name} on 3 of 3 logged steps. {COLLAPSE_HINTS[name]}" in caplog.text


def test_a_healthy_tiny_gan_counts_no_sign_and_warns_of_nothing(tmp_path, caplog):
    """The control for the collapse test in test_trust: the default learning rates, 2 epochs
    of 4 logged steps. Measured over seeds 0-3 (32 steps each): D(x) <= 0.96 with
    D(G(z)) >= 0.38, gradient norms >= 0.14, |losses| <= 1.6, far from every threshold."""
    caplog.set_level(logging.WARNING, logger="genlab.models.gan")
    summary = train(make_cfg(tmp_path, *FAST, *TINY_GAN, "test=false"))
    assert summary["status"] == "completed" and summary["global_step"] == 8
    assert summary["health"] == {"logged_steps": 8}
    assert "GAN health" not in caplog.text


class FlatCritic(L.Callback):
    """Zeroes D's output layer before training: D's score is its bias alone, whatever the
    image, so G's gradient through D is zero (at most 1.4e-11 with lr_d 1e-12, measured)."""

    def on_fit_start(self, trainer, pl_module) -> None:
        with torch.no_grad():
            pl_module.discriminator.head.weight.zero_()


def test_a_gan_whose_generator_gets_no_gradient_is_warned_about(tmp_path, caplog):
    """A real run where G's gradient vanishes (a critic that ignores its input): every logged
    step counts g_grad_vanished (from the norms the optimizer steps recorded), each epoch
    warns; D still gets gradient (its bias), so d_grad_vanished is not counted."""
    caplog.set_level(logging.WARNING, logger="genlab.models")
    summary = train(
        make_cfg(
            tmp_path,
            *FAST,
            *TINY_GAN,
            "test=false",
            "model.optimizer_d.lr=1e-12",
            "+callbacks.flat._target_=test_health.FlatCritic",
        )
    )
    health = summary["health"]
    assert health["logged_steps"] == 8 and health["g_grad_vanished"] == 8, health
    assert "d_grad_vanished" not in health
    assert [(w["epoch"], w["sign"]) for w in health["warnings"]] == [
        (0, "g_grad_vanished"),
        (1, "g_grad_vanished"),
    ]
