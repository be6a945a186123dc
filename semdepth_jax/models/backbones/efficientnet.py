"""EfficientNet-B0 ... B4, numerically equal to timm's ``efficientnet_b0`` ... ``efficientnet_b4``.

The encoder of paper 003 (Semantic-MD; docs/model_spec.md §4.1, §4.4: smp ``tu-efficientnet_b4``, i.e. timm
``efficientnet_b4`` with ``features_only``). The architecture is the EfficientNet of Tan & Le (2019,
arXiv 1905.11946, Table 1) as timm (>= 1.0) builds it, *not* the ``tf_efficientnet_*`` ports:

* Stem: conv 3x3 / 2 (``round_channels(32)`` channels, no bias) -> BN -> SiLU.
* Seven stages of MBConv blocks (base table :data:`STAGES`). Stage 0 holds depthwise-separable blocks (dw
  conv -> BN -> SiLU -> SE -> pw conv -> BN, no activation); the others inverted residuals (pw expansion x6
  -> BN -> SiLU -> dw conv -> BN -> SiLU -> SE -> pw projection -> BN, no activation). A block adds its input
  (after drop path) when it keeps stride 1 and its channel count. Only a stage's first block strides.
* Squeeze-and-excitation: global mean -> 1x1 conv (with bias) to ``round(0.25 * block input channels)`` ->
  SiLU -> 1x1 conv (with bias) back -> sigmoid gate multiplying the features.
* Head (classifier only): conv 1x1 to ``round_channels(1280)`` -> BN -> SiLU -> global average pool ->
  dropout (``drop_rate``) -> linear ``num_classes``.
* Widths: ``round_channels(c) = max(8, int(c * w + 4) // 8 * 8)``, plus 8 if that lost more than 10 %; repeats
  ``ceil(r * d)``; (w, d) per variant in :data:`VARIANTS`.
* Padding: PyTorch-style symmetric ``((stride - 1) + dilation * (k - 1)) // 2`` on every side (timm's
  default ``pad_type=''``), so a stride-2 layer maps n to ceil(n / 2) for odd kernels.
* BatchNorm: PyTorch defaults (eps 1e-5, momentum 0.1 = Flax 0.9), :data:`~semdepth_jax.models.layers.TORCH_BN`.
* Drop path (stochastic depth): block ``b`` of ``N`` (global 0-based index) drops its residual branch per
  example with probability ``drop_path_rate * b / N`` and scales kept ones by ``1 / (1 - p)``; only blocks
  with a residual connection, only in training.

Dilation (``output_stride`` 16 or 8) follows one of two rules (:data:`DILATION_RULES`):

* ``'timm'`` (default; what paper 003's DeepLabV3 runs, since smp passes ``output_stride`` of a ``tu-``
  encoder to ``timm.create_model``): walking the blocks in order, a stride-2 block that would push the
  output stride past ``output_stride`` gets stride 1 and keeps the *current* dilation; every later block
  uses the dilation multiplied by 2. With output stride 8: stage 3's first block dilation 1, the rest of
  stage 3 and stage 4 dilation 2, stage 5's first block 2, the rest of stage 5 and stage 6 dilation 4.
* ``'smp'`` (smp ``EncoderMixin.make_dilated`` on its own EfficientNet encoders): every block of the
  nominal stride-16 level (stages 3, 4) and of the stride-32 level (stages 5, 6) whose nominal stride
  exceeds ``output_stride`` gets stride 1 and dilation ``nominal stride // output_stride``, first block
  included, with padding ``(k // 2) * dilation``.

Random streams: drop path and classifier dropout draw from the ``'dropout'`` rng (``rngs={'dropout': key}``),
needed only with ``train=True`` and a non-zero rate.

Usage (also what ``benchmarks/backbones.py`` times against ``timm.create_model('efficientnet_b4')``)::

  model = EfficientNet(variant="b4", num_classes=1000)        # or num_classes=0: the encoder only
  x = normalise(rgb_01, preprocessing("b4"))                   # (B, H, W, 3), ImageNet mean/std
  variables = model.init(jax.random.key(0), x)
  out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"],
                             rngs={"dropout": key})            # rngs only with a drop rate > 0
  out["features"]["stride32"]                                  # (B, ceil(H/32), ceil(W/32), 448)

Variables are named after timm's modules (``conv_stem``, ``bn1``, ``stage{i}_block{j}/conv_dw``, ...,
``se/conv_reduce``, ``conv_head``, ``bn2``, ``classifier``); :func:`key_table` maps a timm state dict onto
them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semdepth_jax.models import layers
from semdepth_jax.models.backbones import IMAGENET, Preprocessing
from semdepth_jax.weights.keymap import Rule

Array = jax.Array

VARIANTS: dict[str, tuple[float, float]] = {
  "b0": (1.0, 1.0),
  "b1": (1.0, 1.1),
  "b2": (1.1, 1.2),
  "b3": (1.2, 1.4),
  "b4": (1.4, 1.8),
}
"""``variant -> (width multiplier, depth multiplier)`` (Tan & Le 2019; timm ``efficientnet_bN``)."""


@dataclasses.dataclass(frozen=True)
class StageDef:
  """One row of the base (B0) architecture table.

  Attributes:
    kind: ``'ds'`` (depthwise-separable) or ``'ir'`` (inverted residual / MBConv).
    repeats: blocks at depth multiplier 1.
    kernel: depthwise kernel size.
    stride: stride of the stage's first block.
    expansion: channel expansion of an inverted residual (1 for ``'ds'``).
    channels: output channels at width multiplier 1.
  """

  kind: str
  repeats: int
  kernel: int
  stride: int
  expansion: float
  channels: int


STAGES: tuple[StageDef, ...] = (
  StageDef("ds", 1, 3, 1, 1.0, 16),
  StageDef("ir", 2, 3, 2, 6.0, 24),
  StageDef("ir", 2, 5, 2, 6.0, 40),
  StageDef("ir", 3, 3, 2, 6.0, 80),
  StageDef("ir", 3, 5, 1, 6.0, 112),
  StageDef("ir", 4, 5, 2, 6.0, 192),
  StageDef("ir", 1, 3, 1, 6.0, 320),
)
"""EfficientNet-B0 stages (Tan & Le 2019, Table 1; timm ``_gen_efficientnet`` ``arch_def``)."""

STEM_CHANNELS = 32
"""Stem width at width multiplier 1."""

HEAD_CHANNELS = 1280
"""Head conv width at width multiplier 1."""

SE_RATIO = 0.25
"""Squeeze-and-excitation reduction, relative to the block's *input* channels."""

DILATION_RULES = ("timm", "smp")
"""How ``output_stride`` < 32 is realised (see the module docstring)."""

OUTPUT_STRIDES = (8, 16, 32)
"""Accepted ``output_stride`` values."""

HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")
"""timm state-dict prefixes of the head; pass them as ``allow_unused`` when loading a full timm checkpoint
into a model with ``num_classes=0``."""

WEIGHT_TAGS: dict[str, dict[str, str]] = {
  "b0": {"ra_in1k": "imagenet", "ra4_e3600_r224_in1k": "inception"},
  "b1": {"ra4_e3600_r240_in1k": "inception", "ft_in1k": "imagenet"},
  "b2": {"ra_in1k": "imagenet"},
  "b3": {"ra2_in1k": "imagenet"},
  "b4": {"ra2_in1k": "imagenet"},
}
"""timm (1.0) pretrained tags per variant and their normalisation (timm ``pretrained_cfg`` mean/std)."""

DEFAULT_TAGS: dict[str, str] = {
  "b0": "ra_in1k",
  "b1": "ra4_e3600_r240_in1k",
  "b2": "ra_in1k",
  "b3": "ra2_in1k",
  "b4": "ra2_in1k",
}
"""timm's default tag of ``efficientnet_bN`` (the weights ``timm.create_model(..., pretrained=True)`` loads)."""

INCEPTION = Preprocessing(
  mean=(0.5, 0.5, 0.5),
  std=(0.5, 0.5, 0.5),
  source="timm IMAGENET_INCEPTION_MEAN / _STD (EfficientNet ra4 weights)",
)
"""[0, 1] -> [-1, 1] normalisation of timm's ``ra4_*`` EfficientNet weights."""

PREPROCESSING = IMAGENET
"""Input normalisation of timm's ``efficientnet_b4`` (default tag ``ra2_in1k``: ImageNet mean/std)."""


def round_channels(channels: int, multiplier: float, divisor: int = 8) -> int:
  """Scaled channel count rounded to a multiple of ``divisor`` (never below it, never 10 % under).

  timm ``round_channels`` / ``make_divisible`` (``round_limit=0.9``); a multiplier of 0 keeps ``channels``.
  """
  if not multiplier:
    return channels
  v = channels * multiplier
  out = max(divisor, int(v + divisor / 2) // divisor * divisor)
  if out < 0.9 * v:
    out += divisor
  return out


def torch_padding(kernel: int, stride: int, dilation: int) -> int:
  """PyTorch-style symmetric padding per side: ``((stride - 1) + dilation * (kernel - 1)) // 2`` (timm)."""
  return ((stride - 1) + dilation * (kernel - 1)) // 2


@dataclasses.dataclass(frozen=True)
class BlockPlan:
  """Static description of one block (computed from the attributes; no arrays).

  Attributes:
    stage: stage index 0..6.
    index: block index within the stage.
    kind: ``'ds'`` or ``'ir'``.
    in_channels: block input channels.
    mid_channels: channels of the depthwise conv (``in_channels`` for ``'ds'``).
    se_channels: squeeze-and-excitation bottleneck channels.
    out_channels: block output channels.
    kernel: depthwise kernel size.
    stride: depthwise stride after dilation.
    dilation: depthwise dilation.
    drop_path: drop-path probability of the residual branch.
    residual: whether the block adds its input.
  """

  stage: int
  index: int
  kind: str
  in_channels: int
  mid_channels: int
  se_channels: int
  out_channels: int
  kernel: int
  stride: int
  dilation: int
  drop_path: float
  residual: bool

  @property
  def name(self) -> str:
    """Flax submodule name (``stage{i}_block{j}``)."""
    return f"stage{self.stage}_block{self.index}"

  @property
  def source(self) -> str:
    """Module path in the timm state dict (``blocks.{i}.{j}``)."""
    return f"blocks.{self.stage}.{self.index}"


def drop_path(x: Array, rate: float, *, train: bool, rng: jax.Array | None) -> Array:
  """Stochastic depth: zeroes each example's ``x`` with probability ``rate``, scales the rest by 1/(1-rate).

  Args:
    x: (B, ...) residual-branch output.
    rate: drop probability in [0, 1).
    train: identity when False.
    rng: PRNG key (required when ``train`` and ``rate > 0``).

  Returns:
    ``x`` in eval mode or with ``rate == 0``, otherwise ``x * mask / (1 - rate)`` with one Bernoulli
    (keep probability ``1 - rate``) per example.

  Raises:
    ValueError: ``rate`` outside [0, 1), or no ``rng`` when one is needed.
  """
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"efficientnet.drop_path: rate must be in [0, 1), got {rate}")
  if not train or rate == 0.0:
    return x
  if rng is None:
    raise ValueError("efficientnet.drop_path: training with rate > 0 needs an rng")
  keep = 1.0 - rate
  mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return x * (mask.astype(x.dtype) / jnp.asarray(keep, x.dtype))


def _conv_init(depthwise: bool = False) -> layers.Initializer:
  """Conv init of timm's EfficientNet: N(0, sqrt(2 / fan_out)), fan_out = k * k * out / groups."""
  # A depthwise kernel is (k, k, 1, C) and has groups = C: its fan-out is k * k, the size-1 axis.
  out_axis = -2 if depthwise else -1
  return nn.initializers.variance_scaling(
    2.0, "fan_out", "normal", in_axis=-2 if not depthwise else -1, out_axis=out_axis
  )


def _linear_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
  """Classifier init of timm: U(-1 / sqrt(out), 1 / sqrt(out)) for an (in, out) kernel."""
  limit = 1.0 / math.sqrt(shape[-1])
  return jax.random.uniform(key, shape, dtype, -limit, limit)


class SqueezeExcite(nn.Module):
  """Squeeze-and-excitation gate (timm ``SqueezeExcite`` with SiLU and sigmoid).

  Submodules ``conv_reduce`` (1x1, bias) and ``conv_expand`` (1x1, bias).

  Attributes:
    channels: the squeezed width.
    dtype: computation dtype.
  """

  channels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """(B, H, W, C) -> (B, H, W, C): ``x * sigmoid(expand(silu(reduce(mean_hw(x)))))``."""
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = layers.Conv(
      self.channels,
      (1, 1),
      padding="valid",
      kernel_init=_conv_init(),
      dtype=self.dtype,
      name="conv_reduce",
    )(s)
    s = nn.silu(s)
    s = layers.Conv(
      x.shape[-1],
      (1, 1),
      padding="valid",
      kernel_init=_conv_init(),
      dtype=self.dtype,
      name="conv_expand",
    )(s)
    return x * nn.sigmoid(s)


class MBConv(nn.Module):
  """One EfficientNet block, depthwise-separable (``'ds'``) or inverted residual (``'ir'``).

  Submodules follow timm: ``'ds'``: ``conv_dw, bn1, se, conv_pw, bn2``; ``'ir'``: ``conv_pw, bn1, conv_dw,
  bn2, se, conv_pwl, bn3``.

  Attributes:
    plan: the block's static description.
    bn: BatchNorm behaviour.
    dtype: computation dtype.
  """

  plan: BlockPlan
  bn: layers.BatchNormSpec = layers.TORCH_BN
  dtype: Any = jnp.float32

  def _bn(self, train: bool, name: str) -> nn.Module:
    return layers.batch_norm(train, self.bn, dtype=self.dtype, name=name)

  def _conv(self, features: int, name: str) -> layers.Conv:
    return layers.Conv(
      features,
      (1, 1),
      padding="valid",
      use_bias=False,
      kernel_init=_conv_init(),
      dtype=self.dtype,
      name=name,
    )

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, in_channels) -> (B, ceil(H / stride), ceil(W / stride), out_channels)."""
    p = self.plan
    shortcut = x
    if p.kind == "ir":
      x = nn.silu(self._bn(train, "bn1")(self._conv(p.mid_channels, "conv_pw")(x)))
    pad = torch_padding(p.kernel, p.stride, p.dilation)
    x = layers.depthwise_conv(
      p.mid_channels,
      (p.kernel, p.kernel),
      strides=p.stride,
      padding=((pad, pad), (pad, pad)),
      kernel_dilation=p.dilation,
      use_bias=False,
      kernel_init=_conv_init(depthwise=True),
      dtype=self.dtype,
      name="conv_dw",
    )(x)
    x = nn.silu(self._bn(train, "bn1" if p.kind == "ds" else "bn2")(x))
    x = SqueezeExcite(p.se_channels, dtype=self.dtype, name="se")(x)
    if p.kind == "ds":
      x = self._bn(train, "bn2")(self._conv(p.out_channels, "conv_pw")(x))
    else:
      x = self._bn(train, "bn3")(self._conv(p.out_channels, "conv_pwl")(x))
    if p.residual:
      rng = self.make_rng("dropout") if train and p.drop_path > 0 else None
      x = drop_path(x, p.drop_path, train=train, rng=rng) + shortcut
    return x


class EfficientNet(nn.Module):
  """EfficientNet-B0 ... B4 backbone equal to timm ``efficientnet_bN`` (see the module docstring).

  Output (backbone contract, ``semdepth_jax.models.backbones``): ``{'features': {'stride2', 'stride4',
  'stride8', 'stride16', 'stride32'}, 'logits'}``; the features are the outputs of stages 0, 1, 2, 4, 6 (timm
  ``features_only`` ``out_indices=(0, 1, 2, 3, 4)``: 24/32/56/160/448 channels for B4, 16/24/40/112/320 for
  B0 and B1, 16/24/48/120/352 for B2, 24/32/48/136/384 for B3).

  Attributes:
    variant: ``'b0'`` ... ``'b4'`` (:data:`VARIANTS`).
    width_multiplier: overrides the variant's width multiplier (tests use tiny values).
    depth_multiplier: overrides the variant's depth multiplier.
    num_classes: classifier size; 0 = no head at all (no ``conv_head``/``bn2``/pool/``classifier``), the
      same network as timm ``features_only=True`` and smp's ``tu-efficientnet_bN`` encoder. (timm's own
      ``num_classes=0`` keeps ``conv_head``/``bn2`` and returns pooled 1792-d B4 features; not offered.)
    drop_rate: dropout before the classifier (timm ``drop_rate``; default 0 like ``timm.create_model``).
    drop_path_rate: stochastic-depth rate of the last block (timm ``drop_path_rate``; default 0).
    output_stride: 32, 16 or 8 (dilation, see ``dilation_rule``).
    dilation_rule: ``'timm'`` or ``'smp'`` (:data:`DILATION_RULES`).
    bn: BatchNorm behaviour (PyTorch constants by default; frozen for small-batch fine-tuning).
    dtype: computation dtype (features in it; logits float32).
  """

  variant: str = "b4"
  width_multiplier: float | None = None
  depth_multiplier: float | None = None
  num_classes: int = 1000
  drop_rate: float = 0.0
  drop_path_rate: float = 0.0
  output_stride: int = 32
  dilation_rule: str = "timm"
  bn: layers.BatchNormSpec = layers.TORCH_BN
  dtype: Any = jnp.float32

  # ------------------------------------------------------------------------------------------------
  # Static structure (usable on an unbound module).
  # ------------------------------------------------------------------------------------------------
  def multipliers(self) -> tuple[float, float]:
    """``(width, depth)`` multipliers.

    Raises:
      ValueError: unknown ``variant`` (and no explicit multipliers).
    """
    if self.variant not in VARIANTS and (
      self.width_multiplier is None or self.depth_multiplier is None
    ):
      raise ValueError(
        f"EfficientNet: variant must be one of {tuple(VARIANTS)}, got {self.variant!r}"
      )
    w, d = VARIANTS.get(self.variant, (None, None))
    w = w if self.width_multiplier is None else self.width_multiplier
    d = d if self.depth_multiplier is None else self.depth_multiplier
    return float(w), float(d)

  def _check(self) -> None:
    if self.output_stride not in OUTPUT_STRIDES:
      raise ValueError(
        f"EfficientNet: output_stride must be one of {OUTPUT_STRIDES}, got {self.output_stride}"
      )
    if self.dilation_rule not in DILATION_RULES:
      raise ValueError(
        f"EfficientNet: dilation_rule must be one of {DILATION_RULES}, got {self.dilation_rule!r}"
      )
    if self.num_classes < 0:
      raise ValueError(f"EfficientNet: num_classes must be >= 0, got {self.num_classes}")
    if not 0.0 <= self.drop_path_rate < 1.0 or not 0.0 <= self.drop_rate < 1.0:
      raise ValueError(
        f"EfficientNet: drop_rate and drop_path_rate must be in [0, 1), got {self.drop_rate} and "
        f"{self.drop_path_rate}"
      )

  def stem_channels(self) -> int:
    """Stem conv output channels."""
    return round_channels(STEM_CHANNELS, self.multipliers()[0])

  def head_channels(self) -> int:
    """Head conv output channels (used only with a classifier)."""
    return round_channels(HEAD_CHANNELS, self.multipliers()[0])

  def stage_repeats(self) -> tuple[int, ...]:
    """Blocks per stage: ``ceil(repeats * depth multiplier)``."""
    d = self.multipliers()[1]
    return tuple(int(math.ceil(s.repeats * d)) for s in STAGES)

  def block_plans(self) -> list[BlockPlan]:
    """Every block's static description, in order (stride, dilation, channels, drop-path rate)."""
    self._check()
    w = self.multipliers()[0]
    repeats = self.stage_repeats()
    total = sum(repeats)
    plans = []
    in_ch = self.stem_channels()
    stride, dilation = 2, 1  # actual output stride and current dilation (timm rule)
    nominal = 2
    b = 0
    for i, (s, n) in enumerate(zip(STAGES, repeats, strict=True)):
      out_ch = round_channels(s.channels, w)
      nominal_out = nominal * s.stride  # this stage's nominal output stride
      for j in range(n):
        block_stride = s.stride if j == 0 else 1
        if self.dilation_rule == "smp":
          if nominal_out > self.output_stride:
            block_stride, block_dilation = 1, nominal_out // self.output_stride
          else:
            block_dilation = 1
            stride *= block_stride
        else:
          block_dilation = dilation
          if block_stride > 1:
            if stride * block_stride > self.output_stride:
              dilation *= block_stride
              block_stride = 1
            else:
              stride *= block_stride
        mid = in_ch if s.kind == "ds" else round_channels(in_ch, s.expansion, 8)
        # timm: SE width = round(mid * (ratio / expansion)), i.e. a quarter of the block input.
        se = round(mid * (SE_RATIO / s.expansion))
        plans.append(
          BlockPlan(
            stage=i,
            index=j,
            kind=s.kind,
            in_channels=in_ch,
            mid_channels=mid,
            se_channels=se,
            out_channels=out_ch,
            kernel=s.kernel,
            stride=block_stride,
            dilation=block_dilation,
            drop_path=self.drop_path_rate * b / total,
            residual=block_stride == 1 and in_ch == out_ch,
          )
        )
        in_ch = out_ch
        b += 1
      nominal = nominal_out
    return plans

  def _feature_stages(self) -> dict[int, int]:
    """``stage index -> nominal stride`` of the stages whose output is a feature level."""
    out, nominal = {}, 2
    for i, s in enumerate(STAGES):
      nominal *= s.stride
      last = i + 1 == len(STAGES)
      if last or STAGES[i + 1].stride > 1:
        out[i] = nominal
    return out

  def feature_info(self) -> list[tuple[str, int, int, int]]:
    """``(name, nominal stride, actual stride, channels)`` per feature level (no computation).

    Agrees with timm ``features_only`` ``feature_info.channels()`` / ``.reduction()`` (actual stride =
    ``min(nominal, output_stride)``).
    """
    self._check()
    w = self.multipliers()[0]
    return [
      (f"stride{s}", s, min(s, self.output_stride), round_channels(STAGES[i].channels, w))
      for i, s in self._feature_stages().items()
    ]

  # ------------------------------------------------------------------------------------------------
  @nn.compact
  def __call__(
    self, x: Array, train: bool = False, stem_extra: Array | None = None
  ) -> dict[str, Any]:
    """Runs the network.

    Args:
      x: (B, H, W, 3) float32, normalised with the variant's preprocessing (backbone contract).
      train: BatchNorm uses batch statistics and updates the running ones (pass ``mutable=['batch_stats']``;
        frozen BN ignores it); drop path and dropout are active (``rngs={'dropout': key}`` when a rate is
        non-zero).
      stem_extra: optional (B, ceil(H / 2), ceil(W / 2), stem channels) added to the stem convolution's
        output before ``bn1``. A model with extra input planes passes the convolution of those planes
        here: ``conv_stem(x) + conv_extra(planes)`` is the stem convolution over the concatenated input
        ``[x, planes]`` whose kernel is ``[conv_stem kernel, conv_extra kernel]`` along the input-channel
        axis, so the pretrained ``conv_stem`` stays a separate, strictly loadable parameter (paper 003's
        "extended first convolution", docs/model_spec.md §4.3).

    Returns:
      ``{'features': {'stride2': (B, h2, w2, C0), ..., 'stride32': (B, h32, w32, C4)}, 'logits': (B,
      num_classes) float32}`` with ``h_s = ceil(H / actual stride)`` applied stride by stride (PyTorch
      symmetric-padding arithmetic) and channels from :meth:`feature_info`; ``logits`` only when
      ``num_classes > 0``.

    Raises:
      ValueError: bad attributes, an input that is not (B, H, W, 3), or a ``stem_extra`` whose shape is
        not the stem output's.
    """
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"EfficientNet: expected input (B, H, W, 3), got shape {x.shape}")
    plans = self.block_plans()
    feature_stages = self._feature_stages()
    repeats = self.stage_repeats()
    bn = lambda name: layers.batch_norm(train, self.bn, dtype=self.dtype, name=name)  # noqa: E731

    pad = torch_padding(3, 2, 1)
    x = layers.Conv(
      self.stem_channels(),
      (3, 3),
      strides=2,
      padding=((pad, pad), (pad, pad)),
      use_bias=False,
      kernel_init=_conv_init(),
      dtype=self.dtype,
      name="conv_stem",
    )(x)
    if stem_extra is not None:
      if tuple(stem_extra.shape) != tuple(x.shape):
        raise ValueError(
          f"EfficientNet: stem_extra must have the stem output's shape {tuple(x.shape)}, got "
          f"{tuple(stem_extra.shape)}"
        )
      x = x + stem_extra.astype(x.dtype)
    x = nn.silu(bn("bn1")(x))
    features = {}
    for p in plans:
      x = MBConv(p, bn=self.bn, dtype=self.dtype, name=p.name)(x, train)
      if p.index + 1 == repeats[p.stage] and p.stage in feature_stages:
        features[f"stride{feature_stages[p.stage]}"] = x
    out: dict[str, Any] = {"features": features}
    if self.num_classes > 0:
      y = layers.Conv(
        self.head_channels(),
        (1, 1),
        padding="valid",
        use_bias=False,
        kernel_init=_conv_init(),
        dtype=self.dtype,
        name="conv_head",
      )(x)
      y = nn.silu(bn("bn2")(y))
      y = jnp.mean(y.astype(jnp.float32), axis=(1, 2))
      y = nn.Dropout(self.drop_rate, deterministic=not train)(y)
      out["logits"] = nn.Dense(
        self.num_classes, kernel_init=_linear_init, dtype=jnp.float32, name="classifier"
      )(y)
    return out


def key_table(**attributes: Any) -> list[Rule]:
  """Key table: timm ``efficientnet_bN`` state-dict names -> :class:`EfficientNet` variables.

  Args:
    **attributes: :class:`EfficientNet` attributes (``variant``, multipliers, ``num_classes``; the others
      do not change names). With ``num_classes=0`` the head is not in the table: load a full timm state
      dict with ``allow_unused=HEAD_PREFIXES``.

  Returns:
    Rules for ``conv_stem``, ``bn1``, every ``blocks.i.j.*`` (depthwise kernels (C, 1, k, k) -> (k, k, 1, C)
    by the ``conv`` kind), ``conv_head``, ``bn2`` and ``classifier`` (linear).

  Raises:
    TypeError: an unknown attribute. ValueError: a bad variant.
  """
  model = EfficientNet(**attributes)
  table = [Rule("conv_stem.weight", "conv_stem/kernel", "conv"), Rule("bn1", "bn1", "bn")]
  for p in model.block_plans():
    src, dst = p.source, p.name
    if p.kind == "ir":
      table += [
        Rule(f"{src}.conv_pw.weight", f"{dst}/conv_pw/kernel", "conv"),
        Rule(f"{src}.bn1", f"{dst}/bn1", "bn"),
      ]
    table += [
      Rule(f"{src}.conv_dw.weight", f"{dst}/conv_dw/kernel", "conv"),
      Rule(
        f"{src}.{'bn1' if p.kind == 'ds' else 'bn2'}",
        f"{dst}/{'bn1' if p.kind == 'ds' else 'bn2'}",
        "bn",
      ),
    ]
    for conv in ("conv_reduce", "conv_expand"):
      table += [
        Rule(f"{src}.se.{conv}.weight", f"{dst}/se/{conv}/kernel", "conv"),
        Rule(f"{src}.se.{conv}.bias", f"{dst}/se/{conv}/bias", "copy"),
      ]
    proj, proj_bn = ("conv_pw", "bn2") if p.kind == "ds" else ("conv_pwl", "bn3")
    table += [
      Rule(f"{src}.{proj}.weight", f"{dst}/{proj}/kernel", "conv"),
      Rule(f"{src}.{proj_bn}", f"{dst}/{proj_bn}", "bn"),
    ]
  if model.num_classes > 0:
    table += [
      Rule("conv_head.weight", "conv_head/kernel", "conv"),
      Rule("bn2", "bn2", "bn"),
      Rule("classifier.weight", "classifier/kernel", "linear"),
      Rule("classifier.bias", "classifier/bias", "copy"),
    ]
  return table


def preprocessing(variant: str = "b4", tag: str | None = None, **_attributes: Any) -> Preprocessing:
  """Input normalisation of timm's ``efficientnet_{variant}.{tag}`` weights.

  Args:
    variant: ``'b0'`` ... ``'b4'``.
    tag: timm pretrained tag (:data:`WEIGHT_TAGS`); None = timm's default tag (:data:`DEFAULT_TAGS`).
    **_attributes: other model attributes (ignored; the registry passes them all).

  Returns:
    :data:`~semdepth_jax.models.backbones.IMAGENET` or :data:`INCEPTION` (timm ``pretrained_cfg``).

  Raises:
    ValueError: unknown variant or tag.
  """
  if variant not in WEIGHT_TAGS:
    raise ValueError(
      f"efficientnet.preprocessing: variant must be one of {tuple(WEIGHT_TAGS)}, got {variant!r}"
    )
  tag = DEFAULT_TAGS[variant] if tag is None else tag
  if tag not in WEIGHT_TAGS[variant]:
    raise ValueError(
      f"efficientnet.preprocessing: efficientnet_{variant} has tags {tuple(WEIGHT_TAGS[variant])}, "
      f"got {tag!r}"
    )
  return INCEPTION if WEIGHT_TAGS[variant][tag] == "inception" else IMAGENET
