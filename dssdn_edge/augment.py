"""Batch augmentation for 1-s feature windows: gain, masks, mixing. All randomness from one generator.

Applied to whole batches in the training loop (no DataLoader workers: on two cores a second process
only steals the training thread's time). Gain acts on the unnormalised log-mel, where a level change is
an additive constant; masks and mixing act on normalised features, where 0 is the training mean.
"""

from __future__ import annotations

import torch


def random_gain_(x: torch.Tensor, max_db: float, log_floor: float, gen: torch.Generator) -> None:
    """Add a uniform ±``max_db`` level change per window to the log10-power channel, in place.

    Frames at the log floor (digital silence) stay there: zero times any gain is still zero. The delta
    channel of a constant shift is unchanged, so it is left alone."""
    if max_db <= 0:
        return
    shift = (torch.rand(x.shape[0], 1, 1, generator=gen) * 2 - 1) * (max_db / 10.0)  # dB → log10 power
    mel = x[:, 0]
    at_floor = mel <= log_floor + 1e-6
    mel.add_(shift).clamp_(min=log_floor)
    mel.masked_fill_(at_floor, log_floor)


def mask_(x: torch.Tensor, n: int, max_width: int, dim: int, gen: torch.Generator) -> None:
    """SpecAugment masks in place on normalised features (0 = the training mean)."""
    size = x.shape[dim]
    if n <= 0 or max_width <= 0:
        return
    pos = torch.arange(size)
    for _ in range(n):
        widths = torch.randint(0, max_width + 1, (x.shape[0],), generator=gen)
        starts = (torch.rand(x.shape[0], generator=gen) * (size - widths + 1)).long()
        m = (pos[None] >= starts[:, None]) & (pos[None] < (starts + widths)[:, None])  # (B, size)
        shape = [x.shape[0], 1, 1, 1]
        shape[dim] = size
        x.masked_fill_(m.view(shape), 0.0)


def freq_mixstyle(x: torch.Tensor, alpha: float, gen: torch.Generator) -> torch.Tensor:
    """Freq-MixStyle (CP-JKU): mix per-band statistics between examples to simulate other devices."""
    mu = x.mean(dim=(1, 2), keepdim=True)
    sig = (x.var(dim=(1, 2), keepdim=True) + 1e-6).sqrt()
    normed = (x - mu) / sig
    lam = beta(alpha, (x.shape[0], 1, 1, 1), gen)
    perm = torch.randperm(x.shape[0], generator=gen)
    return normed * (lam * sig + (1 - lam) * sig[perm]) + lam * mu + (1 - lam) * mu[perm]


def beta(alpha: float, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Beta(α, α) samples from ``gen`` (torch's Beta distribution has no generator argument):
    the ratio of two Gamma(α) draws, each from Marsaglia–Tsang via uniform/normal draws of ``gen``."""
    g1, g2 = _gamma(alpha, shape, gen), _gamma(alpha, shape, gen)
    return g1 / (g1 + g2).clamp_min(1e-30)


def _gamma(alpha: float, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Gamma(α, 1) by Marsaglia–Tsang (with the α < 1 boost), vectorised with rejection rounds."""
    boost = alpha < 1
    a = alpha + 1 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    n = 1
    for s in shape:
        n *= s
    out = torch.empty(n)
    todo = torch.arange(n)
    while len(todo):
        z = torch.randn(len(todo), generator=gen)
        u = torch.rand(len(todo), generator=gen)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * z**2 + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if boost:
        out = out * torch.rand(n, generator=gen).clamp_min(1e-30) ** (1.0 / alpha)
    return out.view(shape)


def mix(x: torch.Tensor, alpha: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup on every batch: each window is mixed with a random partner, weight λ ~ Beta(α, α) per window.

    Returns the mixed batch, the partner permutation and λ (B,); targets are mixed with the same λ."""
    perm = torch.randperm(x.shape[0], generator=gen)
    lam = beta(alpha, (x.shape[0],), gen)
    lam = torch.maximum(lam, 1 - lam)  # the first window dominates: its label stays the larger share
    x = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[perm]
    return x, perm, lam


def filter_augment_(x: torch.Tensor, max_db: float, log_floor: float, gen: torch.Generator,
                    knots: tuple[int, int] = (3, 6)) -> None:
    """A random smooth equaliser per window on the log-power channel, in place (FilterAugment, Nam et al. 2022):
    gains uniform in ±``max_db`` at 3–6 evenly spaced knots along the mel axis, linear in between.

    It acts on the frequency axis the way a microphone or a room does, which gain and masks do not; constant
    in time, so the delta channel is unchanged. Frames at the log floor (digital silence) stay there."""
    if max_db <= 0:
        return
    n = int(torch.randint(knots[0], knots[1] + 1, (), generator=gen))
    gains = (torch.rand(x.shape[0], 1, n, generator=gen) * 2 - 1) * (max_db / 10.0)  # dB → log10 power
    curve = torch.nn.functional.interpolate(gains, size=x.shape[3], mode="linear", align_corners=True)
    mel = x[:, 0]
    at_floor = mel <= log_floor + 1e-6
    mel.add_(curve).clamp_(min=log_floor)
    mel.masked_fill_(at_floor, log_floor)
