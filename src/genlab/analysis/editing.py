"""Editing real images: change one attribute by a chosen amount and keep the rest; the
library behind `python -m genlab.edit`.

An image is edited through its code: encoded by models with an encoder (autoencoders, VAEs,
WAEs, the CAAE) or found by inversion for models with only a prior and a decoder (GANs,
genlab.analysis.inversion). The code then changes by one of these methods:

- `interfacegan` (Shen et al. 2020): a labeler (an attribute classifier or measurement) scores
  images decoded from prior draws; for each attribute a linear boundary (a linear SVM or
  logistic regression, scikit-learn) separates the top from the bottom `fraction` of the
  scores; the edit moves along its unit normal. `keep=[...]` is the conditional edit: the
  normal with the normals of the kept attributes projected out, so moving along it leaves
  their linear scores unchanged;
- `mean_difference`: the mean code of the top `fraction` minus that of the bottom, on the
  same labelled draws (the DCGAN paper's attribute vectors, genlab.latent op=attribute, here
  from labelled samples), the baseline;
- `condition`: for models conditioned on attributes (the CAAE; a CVAE on attributes): the
  code is kept and the condition changed, the attribute set to its value plus the amount.

Amounts are in the attribute's own units (pixels of thickness, degrees of slant, years of
age, a classifier's logit): a direction is calibrated by regressing the labeler's scores of
the draws on their position along it (`Direction.slope`, attribute units per unit of code).

Attribute data (datamodules whose condition is an attribute vector) can say more
(`AttributeData`): which attributes a condition edit can change, each input's values (measured
from the image, or read from its file name) and the condition of given values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from genlab.analysis.inversion import ActivationFeatures, feature_distance
from genlab.models.protocols import CanDecode, CanEncode, HasPrior
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

METHODS = ("interfacegan", "mean_difference", "condition")
BOUNDARIES = ("svm", "logistic")


@runtime_checkable
class AttributeData(Protocol):
    """A datamodule that knows its condition's attributes in their own units."""

    edit_attributes: tuple[str, ...]

    def attribute_values(self, images: torch.Tensor, paths: Sequence[str] | None) -> Any: ...

    def condition_of(self, values: torch.Tensor) -> torch.Tensor: ...


# --- which route gives codes of real images ----------------------------------------------------
def code_route(model: Any) -> str:
    """`encode` (the model has an encoder) or `invert` (a prior and a decoder to invert), or
    the refusal: a GenlabError in one paragraph saying which models genlab.edit takes."""
    if isinstance(model, CanEncode) and isinstance(model, CanDecode):
        return "encode"
    if isinstance(model, HasPrior):
        return "invert"
    raise GenlabError(
        f"{type(model).__name__} can neither encode images (it has no encode_latent, as the "
        "autoencoders, VAEs, WAEs and the CAAE have) nor be inverted (it has no prior and "
        "decoder to search for a code with, as the GANs have), so genlab.edit cannot find the "
        "code of an image to change: pass the checkpoint of one of those models. Image-to-"
        "image models change images with genlab.translate instead; a classifier generates "
        "nothing."
    )


def check_method(model: Any, method: str, data: Any) -> str:
    """The method to use (`auto`: `condition` for a model conditioned on attributes, else
    `interfacegan`); a GenlabError when the model or data cannot take it."""
    conditional = bool(getattr(model, "num_classes", 0))
    kind = getattr(getattr(data, "condition", None), "kind", None)
    if method == "auto":
        method = "condition" if conditional and kind == "attributes" else "interfacegan"
    if method not in METHODS:
        raise GenlabError(f"method={method!r}: use auto or one of {', '.join(METHODS)}.")
    if method == "condition":
        if not conditional or kind != "attributes":
            raise GenlabError(
                f"method=condition changes a model's condition, but {type(model).__name__} is "
                f"not conditioned on attributes (its data's condition: {kind or 'none'}): use "
                "method=interfacegan or mean_difference, or a model trained on attribute data "
                "(experiment=caae_digits_thickness)."
            )
        if code_route(model) != "encode":
            raise GenlabError(
                "method=condition keeps an image's code and changes its condition: it needs a "
                "model with an encoder (the CAAE, a conditional VAE)."
            )
    elif not isinstance(model, HasPrior):
        raise GenlabError(
            f"method={method} finds a direction from labelled prior draws, and "
            f"{type(model).__name__} has no prior: use a VAE, WAE, CAAE or GAN checkpoint."
        )
    return method


# --- labelers: images -> attribute scores -----------------------------------------------------
class Labeler:
    """Images (N, C, H, W) in [0, 1] -> scores (N, len(names)) in each attribute's units."""

    names: tuple[str, ...] = ()
    kind = "?"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def index(self, attribute: str, option: str = "attribute") -> int:
        if attribute not in self.names:
            raise GenlabError(
                f"{option}={attribute!r} is not an attribute the {self.kind} labeler scores: use "
                f"one of {', '.join(self.names)}."
            )
        return self.names.index(attribute)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "names": list(self.names)}


class MorphoLabeler(Labeler):
    """The Morpho-MNIST measures of grey digit images (genlab.data.morpho_digits): exact, no
    network. `attributes`: any of thickness, slant, width, height."""

    kind = "morpho"

    def __init__(
        self,
        *,
        attributes: Sequence[str] = ("thickness", "slant", "width", "height"),
        scale: int = 4,
    ) -> None:
        from genlab.data.morpho_digits import MEASURES

        bad = [a for a in attributes if a not in MEASURES]
        if bad or not attributes:
            raise GenlabError(
                f"labeler.attributes={list(attributes)}: use some of {', '.join(MEASURES)}."
            )
        self.names, self.scale = tuple(attributes), scale

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from genlab.data.morpho_digits import measure

        if images.shape[1] != 1:
            raise GenlabError(
                f"the morpho labeler measures grey digit images; these have {images.shape[1]} "
                "channels: score other images with a classifier checkpoint (labeler=classifier "
                "labeler.ckpt_path=CLF.ckpt)."
            )
        return measure(images.float().cpu(), scale=self.scale, names=self.names)


class ClassifierLabeler(Labeler):
    """A genlab classifier checkpoint's logits as scores (multilabel on CelebA's 40
    attributes: each logit is an attribute's score; a class classifier: each class's logit).
    `names`: the attributes' names in the order of its outputs (default: 0, 1, ...)."""

    kind = "classifier"

    def __init__(
        self, *, ckpt_path: str, names: Sequence[str] | None = None, device: str = "cpu"
    ) -> None:
        from genlab.metrics.features import DomainFeatures

        self.domain = DomainFeatures(ckpt_path=ckpt_path)
        self.device = device
        n = int(self.domain.net.num_classes)
        names = [str(v) for v in names] if names else [str(i) for i in range(n)]
        if len(names) != n:
            raise GenlabError(
                f"labeler.names lists {len(names)} attributes but the classifier {ckpt_path} has "
                f"{n} outputs: give its {n} names in order."
            )
        self.names, self.ckpt_path = tuple(names), ckpt_path

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.domain.to(self.device)
        out = [self.domain.extract(x.to(self.device)).logits.cpu() for x in images.split(256)]
        return torch.cat(out).float()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "ckpt_path": self.ckpt_path}


class DigitRegressorLabeler(Labeler):
    """A small CNN regressing the digits' measures, trained when built on the bundled digits
    and their thickened and thinned versions (genlab.data.morpho_digits.MorphoDigits, train split):
    an attribute predictor as InterFaceGAN uses, independent of the exact measures that judge
    the edits. Its held-out R^2 per attribute (test split) is in `describe()`."""

    kind = "digit_regressor"

    def __init__(
        self,
        *,
        attributes: Sequence[str] = ("thickness", "slant", "width", "height"),
        steps: int = 1500,
        batch_size: int = 128,
        lr: float = 2e-3,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        from genlab.data.morpho_digits import MEASURES, MorphoDigits, to_condition
        from genlab.nets import ConvClassifier

        self.names = tuple(attributes)
        if not self.names or any(a not in MEASURES for a in self.names):
            raise GenlabError(
                f"labeler.attributes={list(attributes)}: use some of {', '.join(MEASURES)}."
            )
        torch.manual_seed(seed)
        data = MorphoDigits(image_size=28, channels=1, split_seed=0, device_resident=False)
        data.setup()
        cols = [MEASURES.index(a) for a in self.names]

        def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
            from genlab.data.datamodules import materialize

            images, _, _ = materialize(data.dataset(name))
            targets = to_condition(data.measures(name)[:, cols], self.names)
            return images, targets

        x, t = split("train")
        self.net = ConvClassifier(
            channels=1,
            image_size=28,
            num_classes=len(self.names),
            hidden_channels=(32, 64),
            feature_dim=64,
            dropout=0.0,
        ).to(device)
        self.device = device
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        self.net.train()
        for _ in range(steps):
            idx = torch.randint(len(x), (batch_size,), generator=gen)
            pred = self.net(x[idx].float().div(255).to(device))
            loss = (pred - t[idx].to(device)).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self.net.eval().requires_grad_(False)
        xt, tt = split("test")
        with torch.no_grad():
            pred = self._standardised(xt.float().div(255))
        r2 = 1 - (pred - tt).pow(2).mean(0) / tt.var(0, unbiased=False).clamp_min(1e-12)
        self.r2 = dict(zip(self.names, (round(float(v), 4) for v in r2), strict=True))
        self._to_units = lambda c: _from_condition(c, self.names)

    def _standardised(self, images: torch.Tensor) -> torch.Tensor:
        out = [self.net(x.to(self.device)).cpu() for x in images.float().split(512)]
        return torch.cat(out)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != 1 or images.shape[-1] != 28:
            raise GenlabError(
                "the digit regressor reads grey 28x28 digits; these images are "
                f"{tuple(images.shape[1:])}."
            )
        return self._to_units(self._standardised(images))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "held_out_r2": self.r2}


def _from_condition(condition: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    from genlab.data.morpho_digits import from_condition

    return from_condition(condition, names)


# --- labelled draws and directions ------------------------------------------------------------
@dataclass
class LabelledCodes:
    """Codes (N, d), the labeler's scores of their images (N, K) and its names."""

    codes: torch.Tensor
    scores: torch.Tensor
    names: tuple[str, ...]


@torch.no_grad()
def labelled_draws(
    model: Any,
    labeler: Labeler,
    *,
    n: int,
    generator: torch.Generator,
    batch_size: int = 256,
    y: Callable[[int], torch.Tensor | None] | None = None,
) -> LabelledCodes:
    """`n` prior draws, decoded and scored by `labeler` (InterFaceGAN's labelled samples)."""
    if n < 20:
        raise GenlabError(f"n_samples={n}: a boundary needs at least 20 labelled draws.")
    codes, scores = [], []
    for start in range(0, n, batch_size):
        z = model.sample_latent(min(batch_size, n - start), generator=generator)
        images = model.decode(z, y(len(z)) if y else None).float()
        codes.append(z.cpu().float())
        scores.append(labeler(images).float())
    return LabelledCodes(torch.cat(codes), torch.cat(scores), labeler.names)


def extremes(scores: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the bottom and top `fraction` of `scores` (N,) (InterFaceGAN's chosen
    samples: the clearest negatives and positives)."""
    if not 0.0 < fraction <= 0.5:
        raise GenlabError(f"fraction={fraction} must be in (0, 0.5].")
    k = max(2, int(len(scores) * fraction))
    order = torch.argsort(scores)
    return order[:k], order[-k:]


def boundary_normal(
    codes: torch.Tensor,
    scores: torch.Tensor,
    *,
    kind: str = "svm",
    fraction: float = 0.25,
    seed: int = 0,
    held_out: float = 0.3,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The unit normal of a linear boundary between the bottom and the top `fraction` of
    `scores` (N,) over `codes` (N, d), pointing to the top: a linear SVM or logistic regression
    (scikit-learn) fitted on 1 - `held_out` of them; returns it (d,) and the accuracy on
    the held-out rest (and on the training part)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if kind not in BOUNDARIES:
        raise GenlabError(f"boundary={kind!r}: use one of {', '.join(BOUNDARIES)}.")
    low, high = extremes(scores, fraction)
    x = torch.cat([codes[low], codes[high]]).double().numpy()
    labels = torch.cat([torch.zeros(len(low)), torch.ones(len(high))]).long().numpy()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).numpy()
    n_train = max(2, int(round(len(x) * (1 - held_out))))
    train, test = perm[:n_train], perm[n_train:]
    if len(set(labels[train])) < 2:
        raise GenlabError("the boundary's training draws hold one class only: raise n_samples.")
    if kind == "svm":
        clf = LinearSVC(C=1.0, max_iter=20_000, random_state=seed)
    else:
        clf = LogisticRegression(C=1.0, max_iter=5_000)
    clf.fit(x[train], labels[train])
    normal = torch.from_numpy(clf.coef_[0]).float()
    norm = normal.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise GenlabError("the boundary came out degenerate (a zero normal): raise n_samples.")
    info = {"train_accuracy": float(clf.score(x[train], labels[train]))}
    if len(test):
        info["held_out_accuracy"] = float(clf.score(x[test], labels[test]))
    return normal / norm, info


def mean_difference(
    codes: torch.Tensor, scores: torch.Tensor, fraction: float = 0.25
) -> torch.Tensor:
    """Mean code of the top `fraction` of `scores` minus that of the bottom (d,)."""
    low, high = extremes(scores, fraction)
    return codes[high].mean(0) - codes[low].mean(0)


def project_out(primal: torch.Tensor, others: Sequence[torch.Tensor]) -> torch.Tensor:
    """`primal` (d,) with its components along `others` removed (InterFaceGAN's conditional
    manipulation, n1 - N (N^T N)^-1 N^T n1 for the matrix N of the other normals), unit
    length: moving along it does not move along any of `others`."""
    if not others:
        return primal / primal.norm()
    basis = torch.stack(list(others), 1).double()  # (d, k)
    p = primal.double()
    coef = torch.linalg.lstsq(basis, p[:, None]).solution  # (k, 1)
    rest = p - (basis @ coef)[:, 0]
    if rest.norm() < 1e-6 * p.norm():
        raise GenlabError(
            "the attribute's direction lies in the span of the kept attributes' directions: "
            "it cannot move while they are held; keep fewer attributes."
        )
    return (rest / rest.norm()).float()


def calibrate(
    codes: torch.Tensor, scores: torch.Tensor, direction: torch.Tensor
) -> dict[str, float]:
    """Least squares of `scores` (N,) on the draws' positions t = codes . direction:
    scores ~ intercept + slope * t; the slope is the attribute's change per unit of code
    along the direction, and r2 how well the line explains the scores."""
    t = codes.double() @ direction.double()
    s = scores.double()
    tc, sc = t - t.mean(), s - s.mean()
    slope = float((tc * sc).sum() / (tc * tc).sum().clamp_min(1e-12))
    residual = sc - slope * tc
    r2 = float(1 - residual.pow(2).sum() / sc.pow(2).sum().clamp_min(1e-12))
    return {"slope": slope, "intercept": float(s.mean() - slope * t.mean()), "r2": r2}


@dataclass
class Direction:
    """A unit direction in code space for `attribute` and its calibration: moving a code
    by `amount / slope` along `vector` changes the attribute by about `amount`."""

    attribute: str
    method: str
    vector: torch.Tensor
    slope: float
    kept: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def step(self, amount: float) -> torch.Tensor:
        return self.vector * (amount / self.slope)


def fit_direction(
    labelled: LabelledCodes,
    attribute: str,
    *,
    method: str,
    boundary: str = "svm",
    fraction: float = 0.25,
    keep: Sequence[str] = (),
    seed: int = 0,
) -> Direction:
    """The direction of `attribute` by `method` (interfacegan | mean_difference), with the
    directions of the `keep` attributes projected out (the conditional edit), calibrated."""
    names = list(labelled.names)
    for a in [attribute, *keep]:
        if a not in names:
            raise GenlabError(
                f"attribute {a!r} is not scored by the labeler: use one of {', '.join(names)}."
            )
    if attribute in keep:
        raise GenlabError(f"keep={list(keep)} holds the edited attribute {attribute!r} itself.")
    codes = labelled.codes

    def raw(a: str) -> tuple[torch.Tensor, dict[str, float]]:
        scores = labelled.scores[:, names.index(a)]
        if method == "interfacegan":
            return boundary_normal(codes, scores, kind=boundary, fraction=fraction, seed=seed)
        if method == "mean_difference":
            vec = mean_difference(codes, scores, fraction)
            return vec / vec.norm().clamp_min(1e-12), {"vector_norm": float(vec.norm())}
        raise GenlabError(f"method={method!r} does not fit a direction.")

    primal, info = raw(attribute)
    others = [raw(a)[0] for a in keep]
    vector = project_out(primal, others)
    fit = calibrate(codes, labelled.scores[:, names.index(attribute)], vector)
    if abs(fit["slope"]) < 1e-8:
        raise GenlabError(
            f"the labeler's {attribute} does not change along the direction found (slope 0): "
            "the model's codes do not carry it; raise n_samples or pick another attribute."
        )
    info.update(fit)
    info["cosine_to_unconditional"] = float(vector @ primal)
    kept = {a: calibrate(codes, labelled.scores[:, names.index(a)], vector)["slope"] for a in keep}
    info["kept_slopes"] = kept
    return Direction(attribute, method, vector, fit["slope"], list(keep), info)


# --- codes of the inputs, and the edits ----------------------------------------------------------
@dataclass
class Coded:
    """Inputs' codes (N, d), their reconstructions (N, C, H, W) and how they were found."""

    codes: torch.Tensor
    reconstructions: torch.Tensor
    info: dict[str, Any]


def code_inputs(
    model: Any,
    images: torch.Tensor,
    y: torch.Tensor | None,
    *,
    route: str,
    inversion: dict[str, Any] | None = None,
    features: ActivationFeatures | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 100,
) -> Coded:
    """Codes of real images: the encoder's, or found by inversion (`inversion`: steps, lr,
    pixel_weight, feature_weight, and `encoder_steps` > 0 to start from an encoder trained on
    the model's samples: genlab.analysis.inversion)."""
    from genlab.analysis.inversion import fit_inversion_encoder, invert

    x = images.to(model.device).float()
    yy = y.to(model.device) if y is not None else None
    if route == "encode":
        with torch.no_grad():
            codes = torch.cat(
                [
                    model.encode_latent(c, yy[i : i + len(c)] if yy is not None else None)
                    for i, c in zip(range(0, len(x), batch_size), x.split(batch_size), strict=True)
                ]
            )
            recon = model.decode(codes, yy).float()
        return Coded(codes, recon.cpu(), {"route": "encode"})
    opts = dict(inversion or {})
    encoder_steps = int(opts.pop("encoder_steps", 0))
    info: dict[str, Any] = {"route": "invert", **opts, "encoder_steps": encoder_steps}
    init = None
    if encoder_steps:
        encoder, losses = fit_inversion_encoder(model, steps=encoder_steps, generator=generator)
        with torch.no_grad():
            init = encoder(x)
        info["encoder_final_loss"] = float(losses[-20:].mean())
    codes, losses = [], []
    for i in range(0, len(x), batch_size):
        found = invert(
            model,
            x[i : i + batch_size],
            yy[i : i + batch_size] if yy is not None else None,
            init=init[i : i + batch_size] if init is not None else None,
            features=features,
            generator=generator,
            **opts,
        )
        codes.append(found.codes)
        losses.append(found.losses)
    loss = torch.stack(losses).mean(0)
    info.update(loss_start=float(loss[0]), loss_end=float(loss[-1]))
    codes_all = torch.cat(codes)
    with torch.no_grad():
        recon = model.decode(codes_all, yy).float().cpu()
    return Coded(codes_all, recon, info)


@torch.no_grad()
def edit_along(
    model: Any,
    codes: torch.Tensor,
    y: torch.Tensor | None,
    direction: Direction,
    amounts: Sequence[float],
) -> torch.Tensor:
    """Images decoded from codes (N, d) moved along `direction` by each amount: (N, A, C, H, W)."""
    steps = torch.stack([direction.step(a) for a in amounts]).to(codes)  # (a, d)
    moved = codes[:, None, :] + steps[None]  # (n, a, d)
    n, a, d = moved.shape
    yy = y.repeat_interleave(a, 0) if y is not None else None
    out = model.decode(moved.reshape(n * a, d), yy).float().cpu()
    return out.view(n, a, *out.shape[1:])


class ConditionEdit:
    """How a condition changes when an attribute changes by an amount, for attribute data:
    values in the attribute's units from the data (`AttributeData`: measured from the
    images, read from file names, or recovered from known conditions), the new condition
    from the data. Other attribute data (e.g. CelebA's 0/1 attributes): the condition itself
    holds the values, known only for inputs taken from the data."""

    def __init__(self, data: Any, attribute: str) -> None:
        self.data, self.attribute = data, attribute
        self.k  # noqa: B018  (the refusal, before any image is read)

    @property
    def names(self) -> list[str]:
        if isinstance(self.data, AttributeData):
            return list(self.data.edit_attributes)
        return list(getattr(self.data, "attr_names", None) or [])

    @property
    def k(self) -> int:
        """The attribute's column, looked up each time: data that read their attribute names
        from their files when set up (CelebA's list_attr_celeba.txt) may order them otherwise
        than the names they know before."""
        names = self.names
        if self.attribute not in names:
            raise GenlabError(
                f"attribute={self.attribute!r} is not part of the model's condition: use one of "
                f"{', '.join(names) or '(none)'}."
            )
        return names.index(self.attribute)

    def values(
        self, images: torch.Tensor, paths: Sequence[str] | None, y: torch.Tensor | None
    ) -> torch.Tensor:
        """The inputs' values (N, K) in their units."""
        if y is not None and hasattr(self.data, "values_of"):
            return self.data.values_of(y.cpu()).float()
        if isinstance(self.data, AttributeData):
            return torch.as_tensor(self.data.attribute_values(images.cpu(), paths)).float()
        if y is None:
            raise GenlabError(
                "the condition of these input files is not known (this data cannot measure or "
                "read it from a file): edit images of the run's data instead (input_dir=null, "
                "split=test)."
            )
        return y.cpu().float()

    def condition(self, values: torch.Tensor) -> torch.Tensor:
        if isinstance(self.data, AttributeData):
            return self.data.condition_of(values)
        return values

    @torch.no_grad()
    def edit(
        self, model: Any, codes: torch.Tensor, values: torch.Tensor, amounts: Sequence[float]
    ) -> torch.Tensor:
        """Decode codes (N, d) with the attribute set to its value plus each amount."""
        rows = []
        for a in amounts:
            moved = values.clone()
            moved[:, self.k] += a
            rows.append(model.decode(codes, self.condition(moved).to(model.device)).float().cpu())
        return torch.stack(rows, 1)  # (n, a, c, h, w)


# --- evaluation --------------------------------------------------------------------------------
@torch.no_grad()
def judge_edit(
    inputs: torch.Tensor,
    reconstructions: torch.Tensor,
    edited: torch.Tensor,
    amounts: Sequence[float],
    attribute: str,
    judge: Labeler,
) -> dict[str, Any]:
    """How much of the requested change a judge (a labeler not used to find the direction)
    sees: per amount, the mean change of `attribute` against the reconstruction (the edit's
    own effect) and against the input, the slope of achieved on requested (through 0), the
    mean absolute error; and the other attributes' mean absolute drift from the
    reconstruction."""
    n, a = edited.shape[:2]
    k = judge.index(attribute)
    s_in, s_rec = judge(inputs), judge(reconstructions)
    s_ed = judge(edited.flatten(0, 1)).view(n, a, -1)
    req = torch.tensor(list(amounts), dtype=torch.float32)
    vs_rec = s_ed[:, :, k] - s_rec[:, None, k]  # (n, a)
    vs_in = s_ed[:, :, k] - s_in[:, None, k]
    out: dict[str, Any] = {
        "judge": judge.describe(),
        "requested": [float(v) for v in amounts],
        "achieved_vs_reconstruction": [float(v) for v in vs_rec.mean(0)],
        "achieved_vs_input": [float(v) for v in vs_in.mean(0)],
        "achieved_slope": float((vs_rec.mean(0) * req).sum() / req.pow(2).sum().clamp_min(1e-12)),
        "abs_error": float((vs_rec - req[None]).abs().mean()),
        "reconstruction_shift": float((s_rec[:, k] - s_in[:, k]).mean()),
    }
    drift = {}
    for j, name in enumerate(judge.names):
        if j != k:
            drift[name] = float((s_ed[:, :, j] - s_rec[:, None, j]).abs().mean())
    out["other_drift"] = drift
    return out


@torch.no_grad()
def identity_report(
    inputs: torch.Tensor,
    reconstructions: torch.Tensor,
    edited: torch.Tensor,
    classifier: Any,
    features: ActivationFeatures,
) -> dict[str, Any]:
    """Identity kept: a classifier's (genlab.metrics.features.DomainFeatures) agreement with
    its own class of the input, for the reconstruction and each edit amount; and the LPIPS-like
    feature distance of each to the input."""
    n, a = edited.shape[:2]

    def classes(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([classifier.extract(c).logits.argmax(1).cpu() for c in x.split(256)])

    def distance(x: torch.Tensor) -> torch.Tensor:
        out = []
        for c, i in zip(x.split(256), inputs.split(256), strict=True):
            out.append(feature_distance(features(i), features(c)).cpu())
        return torch.cat(out)

    own = classes(inputs)
    out = {
        "reconstruction_agreement": float((classes(reconstructions) == own).float().mean()),
        "reconstruction_feature_distance": float(distance(reconstructions).mean()),
    }
    if a == 0:  # no edits (attribute=None): the reconstruction alone
        return out
    ed = edited.flatten(0, 1)
    ed_classes = classes(ed).view(n, a)
    ed_dist = torch.stack([distance(edited[:, j]) for j in range(a)], 1)  # (n, a)
    return {
        **out,
        "edit_agreement": [float(v) for v in (ed_classes == own[:, None]).float().mean(0)],
        "edit_feature_distance": [float(v) for v in ed_dist.mean(0)],
    }


# --- strips --------------------------------------------------------------------------------------
def strip_rows(
    inputs: torch.Tensor, reconstructions: torch.Tensor, edited: torch.Tensor
) -> torch.Tensor:
    """(N * (2 + A), C, H, W): per input, the input, its reconstruction, its edits."""
    rows = torch.cat([inputs[:, None].cpu(), reconstructions[:, None].cpu(), edited.cpu()], 1)
    return rows.flatten(0, 1).float().clamp(0, 1)


def write_strip(
    path: Path, inputs: torch.Tensor, reconstructions: torch.Tensor, edited: torch.Tensor
) -> Path:
    """A PNG with one row per input: input | reconstruction | edits (genlab.writers)."""
    from genlab.data.modality import image
    from genlab.writers import writer_for

    modality = image(int(inputs.shape[1]), int(inputs.shape[-2]), int(inputs.shape[-1]))
    writer = writer_for(modality)
    (file,) = writer.save(
        strip_rows(inputs, reconstructions, edited),
        path.with_suffix(""),
        modality=modality,
        n_per_row=2 + edited.shape[1],
    )
    return file


def amounts_of(amount: Any, steps: int) -> list[float]:
    """A list of amounts as given, or `steps` evenly spaced amounts up to a single `amount`."""
    if isinstance(amount, (int, float)) and not isinstance(amount, bool):
        if steps < 1:
            raise GenlabError(f"steps={steps} must be at least 1.")
        return [float(amount) * k / steps for k in range(1, steps + 1)]
    try:
        values = [float(v) for v in amount]
    except (TypeError, ValueError):
        values = []
    if not values:
        raise GenlabError(f"amount={amount!r}: give a number (e.g. amount=1.5) or a list.")
    return values


# --- the command's library function -----------------------------------------------------------
SOURCES = ("auto", "files", "data", "lfw")


def read_inputs(
    *,
    source: str,
    input_dir: str | None,
    data: Any,
    split: str,
    n_inputs: int,
    image_shape: Sequence[int],
    max_image_pixels: int,
) -> tuple[torch.Tensor, torch.Tensor | None, list[str] | None]:
    """The images to edit (N, C, H, W) at the model's shape, their conditions where the data
    give them (inputs of the data) and their file paths (input files): the first `n_inputs`
    files of `input_dir` (sorted), `n_inputs` images spread over the data's `split`, or the
    faces scikit-image ships (`lfw`)."""
    from genlab.analysis.translate_folder import load_image
    from genlab.data.paired import image_files
    from genlab.data.subsets import spread_batch

    if source not in SOURCES:
        raise GenlabError(f"source={source!r}: use one of {', '.join(SOURCES)}.")
    if source == "auto":
        source = "files" if input_dir else "data"
    channels, size = int(image_shape[0]), int(image_shape[-1])
    if source == "files":
        if not input_dir or not Path(input_dir).is_dir():
            raise GenlabError(f"input_dir={input_dir!r} is not a directory of images.")
        paths = image_files(input_dir, outside_links="follow")
        if not paths:
            raise GenlabError(f"input_dir={input_dir!r} holds no image files.")
        if len(paths) > n_inputs:
            log.info("editing the first %d of %d files (n_inputs)", n_inputs, len(paths))
            paths = paths[:n_inputs]
        images = torch.cat(
            [load_image(p, channels, size, max_pixels=max_image_pixels) for p in paths]
        )
        return images, None, paths
    if source == "lfw":
        from genlab.data.lfw_faces import lfw_faces

        faces = lfw_faces(image_size=size, channels=channels)
        pick = torch.linspace(0, len(faces) - 1, min(n_inputs, len(faces))).long()
        return faces[pick].float() / 255.0, None, None
    if data is None:
        raise GenlabError(
            "source=data edits images of the run's data, which cannot be built here: give "
            "input_dir=DIR (a folder of images) instead."
        )
    data.setup("test")
    images, labels = spread_batch(data.dataset(split), n_inputs)
    return images.float(), (labels if labels.ndim > 0 else None), None


def write_edits(
    model: Any,
    data: Any,
    out_dir: Path,
    *,
    attribute: str | None,
    amounts: Sequence[float],
    method: str = "auto",
    baselines: Sequence[str] = (),
    keep: Sequence[str] = (),
    labeler: Labeler | None = None,
    judges: Sequence[Labeler] = (),
    boundary: str = "svm",
    fraction: float = 0.25,
    n_samples: int = 2000,
    source: str = "auto",
    input_dir: str | None = None,
    split: str = "test",
    n_inputs: int = 8,
    inversion: dict[str, Any] | None = None,
    feature: str = "none",
    classifier_ckpt: str | None = None,
    seed: int = 0,
    max_image_pixels: int = 64_000_000,
) -> dict[str, Any]:
    """Edit images (files, the data's, or scikit-image's faces) with `model`: strips
    (input | reconstruction | edits at `amounts`) per method, the edited files, the
    direction, and edit.json with the evaluation (`judges`: labelers that measure the edits;
    `classifier_ckpt`: identity kept). See the module doc for the methods. `attribute=None`
    changes nothing: the images are only coded (encoded or inverted), and the strip
    (input | reconstruction), the files and the reconstruction's PSNR/SSIM say how well."""
    from genlab.analysis.inversion import (
        classifier_features,
        discriminator_features,
        reconstruction_quality,
    )
    from genlab.data.morpho_digits import pixel_edit

    route = code_route(model)
    modality = getattr(data, "modality", None)
    if modality is not None and modality.kind != "image":
        raise GenlabError(
            f"genlab.edit edits images, and this model's data are {modality.kind}: use a model "
            "trained on images."
        )
    if attribute is None:  # nothing to change: how well the model's codes reproduce the images
        method, methods, amounts, baselines = "reconstruction", ["reconstruction"], [], []
    else:
        method = check_method(model, method, data)
        methods = [method, *[b for b in baselines if b != method]]
    for b in methods[1:]:
        if b not in (*METHODS, "pixel"):
            raise GenlabError(f"baselines={list(baselines)}: use some of {METHODS} or pixel.")
    if any(m in ("interfacegan", "mean_difference") for m in methods) and labeler is None:
        raise GenlabError(
            "the interfacegan and mean_difference methods need a labeler to score images "
            "(labeler=morpho for digits, or a classifier checkpoint): set labeler."
        )
    if feature not in ("none", "discriminator", "classifier"):
        raise GenlabError(f"feature={feature!r}: use none, discriminator or classifier.")
    if feature == "classifier" and not classifier_ckpt:
        raise GenlabError("feature=classifier needs classifier_ckpt=PATH (a genlab classifier).")
    if n_inputs < 1:
        raise GenlabError(f"n_inputs={n_inputs}: edit at least one image.")
    # the attribute and the kept ones are checked here, before any image is read, coded or
    # drawn (an inversion or 2,000 labelled draws take minutes)
    labelled_methods = any(m in ("interfacegan", "mean_difference") for m in methods)
    if labelled_methods and labeler is not None:
        labeler.index(attribute)
        for k in keep:
            labeler.index(k, "keep")
    if "pixel" in methods and attribute not in ("thickness", "slant"):
        raise GenlabError(
            f"baselines=[pixel] edits the image itself, which genlab can do for thickness "
            f"(morphology) and slant (shear), not for attribute={attribute!r}: drop pixel."
        )
    cond_edit = ConditionEdit(data, attribute) if "condition" in methods else None
    device = model.device
    gen = torch.Generator(device=device).manual_seed(int(seed))
    torch.manual_seed(int(seed))

    # the images and their codes
    probe = model.sample_latent(1, generator=gen) if isinstance(model, HasPrior) else None
    shape = tuple(getattr(data, "image_shape", ())) if data is not None else ()
    if not shape and probe is not None:
        with torch.no_grad():
            shape = tuple(model.decode(probe, model.default_labels(1)).shape[1:])
    if not shape:
        raise GenlabError("the model's image shape is not known: its run's data cannot be built.")
    if labelled_methods and probe is not None:
        with torch.no_grad():  # a labeler that cannot read these images says so now
            labeler(model.decode(probe, model.default_labels(1)).float().cpu())
    images, y_known, paths = read_inputs(
        source=source,
        input_dir=input_dir,
        data=data,
        split=split,
        n_inputs=n_inputs,
        image_shape=shape,
        max_image_pixels=max_image_pixels,
    )
    y_own = y_known
    values = None
    if cond_edit is not None:
        values = cond_edit.values(images, paths, y_known)
        y_own = cond_edit.condition(values)
    elif getattr(model, "num_classes", 0) and y_own is None:
        raise GenlabError(
            f"{type(model).__name__} is conditional and the condition of these input files is "
            "not known: edit images of the run's data (input_dir=null) instead."
        )
    y_dev = y_own.to(device) if y_own is not None and getattr(model, "num_classes", 0) else None
    features = None
    if route == "invert" and float((inversion or {}).get("feature_weight", 0) or 0):
        features = (
            discriminator_features(model)
            if feature == "discriminator"
            else classifier_features(classifier_ckpt, device)
            if feature == "classifier"
            else None
        )
        if features is None:
            raise GenlabError(
                "inversion.feature_weight > 0 needs feature=discriminator or feature=classifier."
            )
    coded = code_inputs(
        model, images, y_dev, route=route, inversion=inversion, features=features, generator=gen
    )

    # the directions and the edits, per method
    labelled = None
    if any(m in ("interfacegan", "mean_difference") for m in methods):
        draws_y = (lambda n: model.default_labels(n)) if getattr(model, "num_classes", 0) else None
        labelled = labelled_draws(model, labeler, n=n_samples, generator=gen, y=draws_y)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    edited_by: dict[str, torch.Tensor] = {}
    recon_by: dict[str, torch.Tensor] = {}
    for m in methods:
        recon = coded.reconstructions
        entry: dict[str, Any] = {}
        if m in ("interfacegan", "mean_difference"):
            direction = fit_direction(
                labelled,
                attribute,
                method=m,
                boundary=boundary,
                fraction=fraction,
                keep=keep,
                seed=seed,
            )
            edited = edit_along(model, coded.codes, y_dev, direction, amounts)
            entry["direction"] = {"kept": direction.kept, **direction.info}
            torch.save(
                {"vector": direction.vector, "slope": torch.tensor(direction.slope)},
                out_dir / f"direction_{m}.pt",
            )
        elif m == "condition":
            edited = cond_edit.edit(model, coded.codes, values, amounts)
        elif m == "reconstruction":  # attribute=None: the strip is input | reconstruction
            edited = images.float()[:, None][:, :0]  # (n, 0, c, h, w)
        else:  # pixel: the edit made on the images themselves, reconstruction = the input
            recon = images.float()
            edited = torch.stack([pixel_edit(images, attribute, a) for a in amounts], 1)
        edited_by[m], recon_by[m] = edited, recon
        entry["strip"] = str(write_strip(out_dir / f"strip_{m}.png", images, recon, edited))
        results[m] = entry

    # what was achieved, what was kept
    identity = id_features = None
    if classifier_ckpt:
        from genlab.metrics.features import DomainFeatures

        identity = DomainFeatures(ckpt_path=classifier_ckpt).to(device)
        id_features = classifier_features(classifier_ckpt, device)
    for m in methods:
        entry = results[m]
        if m != "pixel":
            entry["reconstruction"] = reconstruction_quality(images, recon_by[m], id_features)
        for judge in judges:
            if attribute in judge.names:
                entry.setdefault("judged", []).append(
                    judge_edit(images, recon_by[m], edited_by[m], amounts, attribute, judge)
                )
        if identity is not None:
            entry["identity"] = identity_report(
                images.to(device),
                recon_by[m].to(device),
                edited_by[m].to(device),
                identity,
                id_features,
            )

    # the edited files: each input at the largest amount of the main method
    if paths is not None:
        (out_dir / "outputs").mkdir(exist_ok=True)
        from torchvision.utils import save_image

        final = edited_by[method][:, -1] if len(amounts) else recon_by[method]
        for path, image in zip(paths, final, strict=True):
            save_image(image, out_dir / "outputs" / f"{Path(path).stem}.png")
    summary = {
        "ckpt_model": type(model).__name__,
        "route": route,
        "method": method,
        "attribute": attribute,
        "amounts": list(amounts),
        "keep": list(keep),
        "n_inputs": len(images),
        "source": source if source != "auto" else ("files" if input_dir else "data"),
        "coding": coded.info,
        "labeler": labeler.describe() if labeler is not None else None,
        "labelled_draws": len(labelled.codes) if labelled is not None else 0,
        "strip_columns": "input | reconstruction | edits at the amounts",
        "methods": results,
    }
    return summary
