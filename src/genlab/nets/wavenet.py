"""WaveNet (van den Oord et al. 2016): a causal stack of dilated convolutions that gives the
distribution of each μ-law sample given all the samples before it.

- Input: the μ-law classes of the clip shifted right by one (a "go" class, the class of 0.0,
  comes first), embedded (a learned vector per class plus its companded value times a
  learned vector), then a causal convolution; so output t is p(q_t | q_<t, condition)
  and a clip's log-likelihood is the sum over all its samples, the first one included.
- Residual layers with dilations 1, 2, ..., 2^(layers_per_stack - 1), repeated `stacks`
  times; each a gated unit tanh(W_f * h + V_f c) ⊙ σ(W_g * h + V_g c) with a residual 1×1
  convolution back into the stack and a skip 1×1 convolution to the output.
- Output: relu -> 1×1 -> relu -> 1×1 from the sum of skips: 256 logits (softmax) or the
  parameters of a discretised mixture of logistics over the 256 companded levels
  (Salimans et al. 2017, as in Parallel WaveNet / PixelCNN++).
- Conditioning: global (a digit and, optionally, a speaker: embeddings added to every gate)
  and local (a mel spectrogram, upsampled to the sample rate by repeating each frame over
  its hop, then a 1×1 convolution per layer: the vocoder mode).

Generation draws the uniforms of all steps first (one (n, length, 2) tensor from the
generator) and turns each step's distribution into a sample by inverse CDF, so the naive
loop (`fast=False`: the whole receptive field recomputed for every sample) and the fast one
(Paine et al. 2016: each layer keeps a queue of its past inputs and computes one new
position per step) make the same draws from the same distributions. The two compute the
same functions with float operations in a different order (a long convolution against a
window of one position); a draw would differ only where a uniform falls within that
rounding (~1e-7 in float32) of a class boundary, and in float64 the two agree to ~1e-13.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab.utils.errors import GenlabError

OUTPUTS = ("softmax", "logistic_mixture")
GO_CLASS = 128  # the μ-law class of 0.0: the input before the first sample


class CausalConv1d(nn.Conv1d):
    """A Conv1d whose output t sees inputs t - (k-1)·d ... t only (zeros before the clip)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))  # (b, c_out, l)

    def step(self, taps: torch.Tensor) -> torch.Tensor:
        """The output at one position from its k taps (b, c_in, k), oldest first: (b, c_out, 1)."""
        return F.conv1d(taps, self.weight, self.bias)


class ResidualLayer(nn.Module):
    """One dilated gated layer: (h, conditioning terms) -> (h + residual, skip)."""

    def __init__(
        self,
        *,
        residual_channels: int,
        gate_channels: int,
        skip_channels: int,
        kernel_size: int,
        dilation: int,
        global_dim: int,
        local_dim: int,
    ) -> None:
        super().__init__()
        self.dilation, self.kernel_size = dilation, kernel_size
        self.conv = CausalConv1d(residual_channels, 2 * gate_channels, kernel_size, dilation)
        self.global_proj = (
            nn.Linear(global_dim, 2 * gate_channels, bias=False) if global_dim else None
        )
        self.local_proj = (
            nn.Conv1d(local_dim, 2 * gate_channels, 1, bias=False) if local_dim else None
        )
        self.residual = nn.Conv1d(gate_channels, residual_channels, 1)
        self.skip = nn.Conv1d(gate_channels, skip_channels, 1)

    def conditioning(self, g: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor | None:
        """V·g (b, 2G, 1) plus V·c (b, 2G, L) for the whole clip (None without conditioning)."""
        term = None
        if self.global_proj is not None and g is not None:
            term = self.global_proj(g)[:, :, None]
        if self.local_proj is not None and c is not None:
            local = self.local_proj(c)
            term = local if term is None else term + local
        return term

    def gated(
        self, h: torch.Tensor, z: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if cond is not None:
            z = z + cond
        a, b = z.chunk(2, dim=1)
        u = torch.tanh(a) * torch.sigmoid(b)  # (b, G, l)
        return h + self.residual(u), self.skip(u)

    def forward(
        self, h: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gated(h, self.conv(h), cond)  # (b, R, l), (b, S, l)


class WaveNet(nn.Module):
    """μ-law classes (B, L) -> per-sample output distributions (B, out_channels, L), output t
    predicting q_t from q_<t (see the module docstring). Keyword-only; tiny settings
    (2-4 channels, 2 layers) build in milliseconds for tests.

    `num_classes` > 0: conditioned on a class (the digit); `num_speakers` > 0: also on a
    speaker; `local_channels` > 0: on local features (B, local_channels, frames) with
    `local_hop` samples per frame (vocoder mode). `receptive_field` is the number of past
    samples an output sees.
    """

    def __init__(
        self,
        *,
        classes: int = 256,
        residual_channels: int = 32,
        gate_channels: int = 32,
        skip_channels: int = 64,
        kernel_size: int = 2,
        layers_per_stack: int = 8,
        stacks: int = 2,
        num_classes: int = 0,
        num_speakers: int = 0,
        global_dim: int = 16,
        local_channels: int = 0,
        local_hop: int = 64,
        local_dim: int = 32,
        output: str = "softmax",
        mixture_components: int = 10,
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise GenlabError(f"model.net.output={output!r}: use one of {', '.join(OUTPUTS)}.")
        if kernel_size < 2 or layers_per_stack < 1 or stacks < 1:
            raise GenlabError(
                f"model.net: kernel_size={kernel_size} must be >= 2, layers_per_stack="
                f"{layers_per_stack} and stacks={stacks} >= 1."
            )
        if classes != 256 and output == "logistic_mixture":
            raise GenlabError("model.net.output=logistic_mixture is defined for 256 classes.")
        self.classes, self.output, self.mixture_components = classes, output, mixture_components
        self.num_classes, self.num_speakers = num_classes, num_speakers
        self.local_channels, self.local_hop = local_channels, local_hop
        self.kernel_size = kernel_size
        self.dilations = [2**i for i in range(layers_per_stack)] * stacks
        self.embed = nn.Embedding(classes, residual_channels)
        # the class's companded value as a number too: "the next sample is near this one" is
        # then linear in the input, learned in a few steps (an embedding alone learns it one
        # class at a time)
        self.value_in = nn.Linear(1, residual_channels, bias=False)
        self.start = CausalConv1d(residual_channels, residual_channels, 2)
        gdim = global_dim if (num_classes or num_speakers) else 0
        self.class_embed = nn.Embedding(num_classes, global_dim) if num_classes else None
        self.speaker_embed = nn.Embedding(num_speakers, global_dim) if num_speakers else None
        ldim = local_dim if local_channels else 0
        self.local_in = (
            nn.Conv1d(local_channels, local_dim, 3, padding=1) if local_channels else None
        )
        self.layers = nn.ModuleList(
            ResidualLayer(
                residual_channels=residual_channels,
                gate_channels=gate_channels,
                skip_channels=skip_channels,
                kernel_size=kernel_size,
                dilation=d,
                global_dim=gdim,
                local_dim=ldim,
            )
            for d in self.dilations
        )
        out_channels = classes if output == "softmax" else 3 * mixture_components
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(skip_channels, skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(skip_channels, out_channels, 1),
        )

    @property
    def receptive_field(self) -> int:
        """Past samples that output t depends on: q_{t-RF} ... q_{t-1}. The start
        convolution (kernel 2) and each layer ((k-1)·d) widen it; the shift adds none."""
        return 2 + (self.kernel_size - 1) * sum(self.dilations)

    # --- conditioning -----------------------------------------------------------------------
    def global_condition(
        self, n: int, y: torch.Tensor | None, speaker: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The sum of the class and speaker embeddings (n, global_dim), or None."""
        g = None
        for table, ids, what in (
            (self.class_embed, y, "y (class indices)"),
            (self.speaker_embed, speaker, "speaker (speaker indices)"),
        ):
            if table is None:
                continue
            if ids is None:
                raise GenlabError(
                    f"this WaveNet is conditioned on {what} ({table.num_embeddings} of them) "
                    "and got none: pass them."
                )
            ids = torch.as_tensor(ids, device=table.weight.device).long().reshape(-1)
            # the range is read outside training only: reading it waits for the device, and
            # the model checks the data's classes once before training
            bad_range = not self.training and (
                int(ids.min()) < 0 or int(ids.max()) >= table.num_embeddings
            )
            if len(ids) != n or bad_range:
                raise GenlabError(
                    f"{what}: {len(ids)} values in [{int(ids.min())}, {int(ids.max())}] for "
                    f"{n} clips and {table.num_embeddings} embeddings: give one index in "
                    f"0..{table.num_embeddings - 1} per clip."
                )
            e = table(ids)
            g = e if g is None else g + e
        return g

    def local_condition(self, local: torch.Tensor | None, length: int) -> torch.Tensor | None:
        """Local features (b, local_channels, frames) -> (b, local_dim, length): frame f is
        centred on sample f·hop (as `genlab.nets.spectrogram` frames are), so sample t takes
        the nearest frame."""
        if self.local_in is None:
            return None
        if local is None:
            raise GenlabError(
                f"this WaveNet is locally conditioned (vocoder mode, {self.local_channels} "
                "feature channels): pass the features (e.g. the log-mel spectrogram of a clip)."
            )
        c = self.local_in(local.to(self.local_in.weight.dtype))  # (b, local_dim, frames)
        idx = (torch.arange(length, device=c.device) + self.local_hop // 2) // self.local_hop
        return c[:, :, idx.clamp(max=c.shape[-1] - 1)]

    # --- the network --------------------------------------------------------------------------
    def shifted(self, q: torch.Tensor) -> torch.Tensor:
        """The inputs: GO, q_0, ..., q_{L-2} (b, L)."""
        go = torch.full_like(q[:, :1], GO_CLASS)
        return torch.cat([go, q[:, :-1]], dim=1)

    def input_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Classes (b, l) -> (b, R, l): the class's embedding plus its companded value
        (2q/(classes-1) - 1) times a learned vector."""
        value = inputs.to(self.value_in.weight.dtype)[..., None] * (2.0 / (self.classes - 1)) - 1
        return (self.embed(inputs) + self.value_in(value)).transpose(1, 2)

    def run(
        self, inputs: torch.Tensor, g: torch.Tensor | None, c: torch.Tensor | None
    ) -> torch.Tensor:
        """Outputs (b, out_channels, l) for already shifted inputs (b, l) and conditioning."""
        h = self.start(self.input_features(inputs))  # (b, R, l)
        skips = 0
        for layer in self.layers:
            h, s = layer(h, layer.conditioning(g, c))
            skips = skips + s
        return self.head(skips)

    def forward(
        self,
        q: torch.Tensor,
        *,
        y: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
        local: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # (b, L) int64 classes -> (b, out_channels, L)
        g = self.global_condition(len(q), y, speaker)
        return self.run(self.shifted(q), g, self.local_condition(local, q.shape[1]))

    # --- the output distribution --------------------------------------------------------------
    def log_prob(self, out: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """log p(q_t | q_<t) in nats for outputs (b, out_channels, L) and classes (b, L)."""
        if out.dtype not in (torch.float32, torch.float64):
            out = out.float()  # half precision: the likelihood in float32
        if self.output == "softmax":
            return -F.cross_entropy(out, q, reduction="none")
        return logistic_mixture_log_prob(out, q, self.classes)

    def sample_output(
        self, out: torch.Tensor, u: torch.Tensor, temperature: float = 1.0
    ) -> torch.Tensor:
        """Classes (b,) drawn from one step's outputs (b, out_channels) with uniforms (b, 2);
        `temperature` divides the logits (softmax) or the mixture weights' logits and
        multiplies the logistics' scales (mixture)."""
        if self.output == "softmax":
            return inverse_cdf(torch.softmax(out / temperature, dim=1), u[:, 0])
        if temperature != 1.0:
            k = self.mixture_components
            out = torch.cat(
                [
                    out[:, :k] / temperature,
                    out[:, k : 2 * k],
                    out[:, 2 * k :] + math.log(temperature),
                ],
                dim=1,
            )
        return logistic_mixture_sample(out, u, self.classes)

    # --- generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        n: int,
        length: int,
        *,
        y: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
        local: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        fast: bool = True,
    ) -> torch.Tensor:
        """n clips of `length` μ-law classes (n, length), sample by sample."""
        if not temperature > 0:
            raise GenlabError(f"temperature={temperature} must be positive.")
        device = self.embed.weight.device
        gen_device = generator.device if generator is not None else device
        u = torch.rand(n, length, 2, generator=generator, device=gen_device).to(device)
        u = u.to(self.embed.weight.dtype)
        g = self.global_condition(n, y, speaker)
        c = self.local_condition(local, length)
        if fast:
            return self._generate_fast(n, length, g, c, u, temperature)
        return self._generate_naive(n, length, g, c, u, temperature)

    def _generate_naive(
        self,
        n: int,
        length: int,
        g: torch.Tensor | None,
        c: torch.Tensor | None,
        u: torch.Tensor,
        temperature: float,
    ) -> torch.Tensor:
        rf = self.receptive_field
        inputs = torch.full((n, length + 1), GO_CLASS, dtype=torch.long, device=u.device)
        for t in range(length):
            lo = max(0, t - rf + 1)  # the receptive field of output t, recomputed every step
            window_c = c[:, :, lo : t + 1] if c is not None else None
            out = self.run(inputs[:, lo : t + 1], g, window_c)[:, :, -1]
            inputs[:, t + 1] = self.sample_output(out, u[:, t], temperature)
        return inputs[:, 1:]

    def _generate_fast(
        self,
        n: int,
        length: int,
        g: torch.Tensor | None,
        c: torch.Tensor | None,
        u: torch.Tensor,
        temperature: float,
    ) -> torch.Tensor:
        dtype, device = self.embed.weight.dtype, u.device
        conds = [layer.conditioning(g, c) for layer in self.layers]  # each (n, 2G, 1 or L)
        # queues: the start conv's previous input; each layer's last (k-1)·d inputs (a ring)
        prev = torch.zeros(n, self.embed.embedding_dim, 1, dtype=dtype, device=device)
        rings = [
            torch.zeros(
                n,
                self.embed.embedding_dim,
                (layer.kernel_size - 1) * layer.dilation,
                dtype=dtype,
                device=device,
            )
            for layer in self.layers
        ]
        q = torch.full((n,), GO_CLASS, dtype=torch.long, device=device)
        samples = torch.empty(n, length, dtype=torch.long, device=device)
        for t in range(length):
            e = self.input_features(q[:, None])  # (n, R, 1)
            h = self.start.step(torch.cat([prev, e], dim=2))
            prev = e
            skips = 0
            for layer, ring, cond in zip(self.layers, rings, conds, strict=True):
                d, size = layer.dilation, ring.shape[2]
                # taps t-(k-1)d, ..., t-d from the ring, oldest first, then h_t
                slots = [(t - j * d) % size for j in range(layer.kernel_size - 1, 0, -1)]
                taps = torch.cat([ring[:, :, slots], h], dim=2)
                ring[:, :, t % size] = h[:, :, 0]
                if cond is not None and cond.shape[2] > 1:
                    cond = cond[:, :, t : t + 1]
                h, s = layer.gated(h, layer.conv.step(taps), cond)
                skips = skips + s
            out = self.head(skips)[:, :, 0]
            q = self.sample_output(out, u[:, t], temperature)
            samples[:, t] = q
        return samples


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The class k with cdf(k-1) <= u·total < cdf(k) for probabilities (b, K), uniforms (b,)."""
    cdf = probs.cumsum(dim=1)
    k = (cdf < u[:, None] * cdf[:, -1:]).sum(dim=1)
    return k.clamp(max=probs.shape[1] - 1)


def _mixture_params(out: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    logit_w, means, log_scales = out.split(k, dim=1)
    return logit_w, means, log_scales.clamp(min=-7.0)


def logistic_mixture_log_prob(out: torch.Tensor, q: torch.Tensor, classes: int) -> torch.Tensor:
    """log P(q) (b, L) under a mixture of K logistics (out: (b, 3K, L): weights' logits, means,
    log-scales) discretised to `classes` levels of [-1, 1]: each level's probability is the
    mass of its bin, the end levels taking the tails (they sum to 1 over the levels)."""
    k = out.shape[1] // 3
    logit_w, means, log_scales = _mixture_params(out, k)
    half = 1.0 / (classes - 1)
    centre = (q.to(out.dtype) * (2.0 / (classes - 1)) - 1.0)[:, None]  # (b, 1, L)
    inv_s = torch.exp(-log_scales)
    plus = inv_s * (centre - means + half)
    minus = inv_s * (centre - means - half)
    log_cdf_plus = F.logsigmoid(plus)  # log σ(plus): the mass below the bin's top
    log_one_minus_cdf_minus = -F.softplus(minus)  # log(1 - σ(minus)): the mass above its bottom
    # a bin's mass σ(plus) - σ(minus); where it underflows (a sharp logistic far from the
    # bin), the density at the bin's centre times its width instead (PixelCNN++'s rule)
    diff = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * (centre - means)
    log_pdf_mid = mid - log_scales - 2.0 * F.softplus(mid) + math.log(2 * half)
    log_bin = torch.where(diff > 1e-5, torch.log(diff.clamp(min=1e-12)), log_pdf_mid)
    log_p = torch.where(
        centre < -1 + half,
        log_cdf_plus,
        torch.where(centre > 1 - half, log_one_minus_cdf_minus, log_bin),
    )
    return torch.logsumexp(log_p + F.log_softmax(logit_w, dim=1), dim=1)


def logistic_mixture_sample(out: torch.Tensor, u: torch.Tensor, classes: int) -> torch.Tensor:
    """Classes (b,) from one step's mixture parameters (b, 3K): the component by inverse CDF
    of its weights with u[:, 0], the value by the logistic's inverse CDF with u[:, 1]."""
    k = out.shape[1] // 3
    logit_w, means, log_scales = _mixture_params(out, k)
    comp = inverse_cdf(torch.softmax(logit_w, dim=1), u[:, 0])[:, None]
    mean, log_s = means.gather(1, comp)[:, 0], log_scales.gather(1, comp)[:, 0]
    v = u[:, 1].clamp(1e-5, 1 - 1e-5)
    x = (mean + torch.exp(log_s) * (torch.log(v) - torch.log1p(-v))).clamp(-1, 1)
    return torch.round((x + 1) * ((classes - 1) / 2)).long()
