"""DS-SIDENet (paper 004, Ren et al.): depthwise-separable encoder, two ``upproj-con`` decoder branches.

docs/model_spec.md §5.1 (encoder, paper Table 1), §5.2 (decoder, paper Table 2), §5.3 / §7.5 (log10 bins and
losses). Two variants:

* ``variant='low'`` (NYU / ScanNet): encoder output 512 ch at 1/32; decoder blocks 1-4 are ``upproj-con``
  with t = 2, block 5 is ``upproj`` t = 2, then the output layer at full resolution.
* ``variant='high'`` (KITTI): blocks 3-5 of the encoder keep stride 1 (output 128 ch at 1/4); decoder blocks
  1-2 are ``upproj-con`` t = 1, block 3 is SAM (three stacked atrous modules), block 4 ``upproj-con`` t = 2,
  block 5 ``upproj`` t = 2.

Both decoder branches have the same layout: the classification branch ends in ``K + 1`` logits over the
log10 bins (``depth_logits``), the regression branch in one linear channel in metres (``depth``). The model
declares ``depth_output='bins'`` with ``bin_decode='expectation'`` (the paper's test-time soft decoding,
§7.5); ``'argmax'``, ``'regression'`` and ``'average'`` are switches of the contract
(``semdepth_jax.models.contract``). With ``branches=('reg',)`` (Table 6's "reg" baseline) the model is a
plain metres regressor (``depth_output='metres'``).

Reconstructions of what the paper leaves UNSPECIFIED (docs/model_spec.md §5, §12), each a switch:

* activation ReLU; every conv is bias-free and followed by BatchNorm (``convbn``), PyTorch BN constants
  (``bn``); the output layers are 3x3 convs with bias (FCRN's prediction layer).
* encoder repeats without residuals (``residual=False``; True adds identity shortcuts where shapes allow).
* ``upproj`` (Laina et al. / FCRN): unpool x2 (value at the top-left of each 2x2 cell) then 5x5 convs;
  ``upproj_impl='fast'`` computes each "unpool + 5x5 conv" as four small convs on the un-pooled input
  (3x3, 2x3, 3x2, 2x2 sub-kernels of the same 5x5 kernel) interleaved, ``'literal'`` unpools first; both
  use one 5x5 parameter, so they are interchangeable and equal (tests). For t = 1 there is no unpooling.
* ``upproj-con``: ``ReLU(BN(conv3x3([upproj_t(X), Y, Z])))`` with Y the encoder output at that resolution
  (``skip_blocks``) and Z the RGB input average-pooled to it; ``use_skip`` / ``use_rgb`` switch Y and Z off
  (Table 7); with both off the block is a plain ``upproj``.
* SAM (AMNet): ``sam_modules`` atrous modules, each 3x3 conv-BN-ReLU with dilations
  ``1, 2, 2, 4, 4, ..., k/2, k/2, k`` (:func:`am_dilations`), a 1x1 conv-BN-ReLU, a 1x1 conv-BN, and a
  residual add of the module input followed by ReLU.
* input normalisation: ImageNet mean / std (``backbones.IMAGENET``) of the [0, 1] RGB input.

Sizes that are not multiples of the total stride are handled as PyTorch would with padding 1: stride-2
convs round up, and every upsampled map is cropped (top-left) to the encoder map it meets, the last one to
the input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from semdepth_jax.models import backbones
from semdepth_jax.models.contract import DepthSegModel, check_depth_output
from semdepth_jax.models.layers import (
  TORCH_BN,
  BatchNormSpec,
  Conv,
  adaptive_avg_pool,
  batch_norm,
  conv_nd,
)

Array = jax.Array

VARIANTS = ("low", "high")
UPPROJ_IMPLS = ("fast", "literal")
BRANCHES = ("cls", "reg")

# Paper Table 1 (docs/model_spec.md §5.1): per block, a list of layers
# (kind, out_channels, kernel, stride, dilation); 'conv' = convbn, 'dw' = depthwise-separable convbn.
_ENCODER = {
  "low": (
    (("conv", 32, 3, 2, 1), ("conv", 64, 3, 1, 1)),
    (("dw", 64, 3, 1, 1),) * 3 + (("dw", 128, 3, 2, 1),),
    (("dw", 128, 3, 1, 1),) * 3 + (("dw", 256, 3, 2, 1),),
    (("dw", 32, 3, 1, 2),) * 12 + (("dw", 256, 3, 2, 1),),
    (("dw", 256, 3, 2, 1), ("conv", 512, 1, 1, 1)),
  ),
  "high": (
    (("conv", 32, 3, 2, 1), ("conv", 64, 3, 1, 1)),
    (("dw", 64, 3, 1, 1),) * 3 + (("dw", 128, 3, 2, 1),),
    (("dw", 128, 3, 1, 1),) * 3 + (("dw", 256, 3, 1, 1),),
    (("dw", 32, 3, 1, 2),) * 12 + (("dw", 256, 3, 1, 1),),
    (("dw", 256, 3, 1, 1), ("conv", 128, 1, 1, 1)),
  ),
}
"""Encoder layers of paper Table 1 (low / high depth range)."""

# Paper Table 2: the scale factor t of decoder blocks 1-5 ('sam' = SAM block, t = 1).
_DECODER = {"low": (2, 2, 2, 2, 2), "high": (1, 1, "sam", 2, 2)}
# Encoder block whose output is the skip Y of decoder blocks 1-4 (docs/model_spec.md §5.2 reconstruction;
# None = no skip, e.g. the SAM block).
DEFAULT_SKIPS = {"low": (4, 3, 2, 1), "high": (5, 4, None, 1)}


def encoder_layers(variant: str) -> tuple[tuple[tuple[str, int, int, int, int], ...], ...]:
  """Paper Table 1 layers per block: ``(kind, out_channels, kernel, stride, dilation)`` tuples.

  Raises:
    ValueError: unknown ``variant``.
  """
  if variant not in VARIANTS:
    raise ValueError(f"ds_sidenet: variant must be one of {VARIANTS}, got {variant!r}")
  return _ENCODER[variant]


def decoder_scales(variant: str) -> tuple[Any, ...]:
  """Paper Table 2: the scale ``t`` of decoder blocks 1-5 (``'sam'`` for the SAM block)."""
  if variant not in VARIANTS:
    raise ValueError(f"ds_sidenet: variant must be one of {VARIANTS}, got {variant!r}")
  return _DECODER[variant]


def am_dilations(k: int) -> tuple[int, ...]:
  """Dilations of one AM module: ``1, 2, 2, 4, 4, ..., k/2, k/2, k`` (docs/model_spec.md §5.2, AMNet).

  Args:
    k: largest dilation, a power of two >= 2.

  Raises:
    ValueError: ``k`` is not a power of two >= 2.
  """
  k = int(k)
  if k < 2 or k & (k - 1):
    raise ValueError(f"ds_sidenet: sam_k must be a power of two >= 2, got {k}")
  out = [1]
  d = 2
  while d < k:
    out += [d, d]
    d *= 2
  return (*out, k)


def _scaled(c: int, divisor: int, min_width: int = 1) -> int:
  return max(1, int(min_width), int(c) // int(divisor))


def unpool2x(x: Array) -> Array:
  """FCRN unpooling: (B, H, W, C) -> (B, 2H, 2W, C), ``x`` at the top-left of each 2x2 cell, zeros elsewhere."""
  b, h, w, c = x.shape
  return jnp.zeros((b, 2 * h, 2 * w, c), x.dtype).at[:, ::2, ::2].set(x)


def interleave2x(a: Array, b: Array, c: Array, d: Array) -> Array:
  """Interleaves four (B, H, W, C) maps into (B, 2H, 2W, C).

  ``out[2i, 2j] = a``, ``out[2i+1, 2j] = b``, ``out[2i, 2j+1] = c``, ``out[2i+1, 2j+1] = d`` (FCRN's
  ``unpool_as_conv`` layout, docs/model_spec.md §5.2).
  """
  bsz, h, w, ch = a.shape
  top = jnp.stack([a, c], axis=3).reshape(bsz, h, 2 * w, ch)
  bottom = jnp.stack([b, d], axis=3).reshape(bsz, h, 2 * w, ch)
  return jnp.stack([top, bottom], axis=2).reshape(bsz, 2 * h, 2 * w, ch)


def unpool_conv5(x: Array, kernel: Array, impl: str = "fast") -> Array:
  """Unpool x2 + 5x5 conv (padding 2) of ``x`` (B, H, W, C_in) with ``kernel`` (5, 5, C_in, C_out).

  ``'literal'`` unpools (:func:`unpool2x`) and convolves. ``'fast'`` never builds the zero-filled map:
  output rows 2i see input rows i-1, i, i+1 through kernel rows 0, 2, 4, output rows 2i+1 see rows i, i+1
  through kernel rows 1, 3 (the same for columns), so four convs with the 3x3, 2x3, 3x2 and 2x2 sub-kernels
  ``kernel[0::2, 0::2]``, ``[1::2, 0::2]``, ``[0::2, 1::2]``, ``[1::2, 1::2]`` (padding (1, 1) for the
  3-tap and (0, 1) for the 2-tap axes) are interleaved (:func:`interleave2x`). Note FCRN's own code pads its
  2-tap convs at the top/left instead, which matches an unpooling to the bottom-right corner.

  Returns:
    (B, 2H, 2W, C_out).

  Raises:
    ValueError: unknown ``impl`` or a kernel that is not 5x5.
  """
  if impl not in UPPROJ_IMPLS:
    raise ValueError(f"ds_sidenet: upproj_impl must be one of {UPPROJ_IMPLS}, got {impl!r}")
  if tuple(kernel.shape[:2]) != (5, 5):
    raise ValueError(f"ds_sidenet: unpool_conv5 needs a 5x5 kernel, got {kernel.shape}")
  if impl == "literal":
    return conv_nd(unpool2x(x), kernel, strides=(1, 1), padding=((2, 2), (2, 2)))
  three, two = (1, 1), (0, 1)

  def conv(k, ph, pw):
    return conv_nd(x, k, strides=(1, 1), padding=(ph, pw))

  return interleave2x(
    conv(kernel[0::2, 0::2], three, three),
    conv(kernel[1::2, 0::2], two, three),
    conv(kernel[0::2, 1::2], three, two),
    conv(kernel[1::2, 1::2], two, two),
  )


class ConvBN(nn.Module):
  """Bias-free conv -> BN -> optional ReLU (paper's ``convbn``); depthwise when ``depthwise``.

  Attributes:
    features: output channels (``depthwise``: must equal the input channels).
    kernel: square kernel size.
    stride: stride.
    dilation: dilation (padding = dilation * (kernel // 2), the "pad d" of docs/model_spec.md §5.1).
    depthwise: one filter per channel.
    relu: apply ReLU after BN.
    bn: BatchNorm constants.
    dtype: computation dtype.
  """

  features: int
  kernel: int = 3
  stride: int = 1
  dilation: int = 1
  depthwise: bool = False
  relu: bool = True
  bn: BatchNormSpec = TORCH_BN
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, C_in) -> (B, ceil(H / stride), ceil(W / stride), features)."""
    p = self.dilation * (self.kernel // 2)
    x = Conv(
      self.features,
      (self.kernel, self.kernel),
      strides=self.stride,
      padding=((p, p), (p, p)),
      kernel_dilation=self.dilation,
      feature_group_count=x.shape[-1] if self.depthwise else 1,
      use_bias=False,
      kernel_init=nn.initializers.he_normal(),
      dtype=self.dtype,
      name="conv",
    )(x)
    x = batch_norm(train, self.bn, dtype=self.dtype, name="bn")(x)
    return nn.relu(x) if self.relu else x


class DSConv(nn.Module):
  """Depthwise-separable conv (MobileNet-v1 layout, docs/model_spec.md §5.1).

  depthwise 3x3 (stride, dilation) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU; with ``residual`` and equal
  shapes the input is added before the last ReLU. Submodules ``dw``, ``pw``.
  """

  features: int
  kernel: int = 3
  stride: int = 1
  dilation: int = 1
  residual: bool = False
  bn: BatchNormSpec = TORCH_BN
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, C_in) -> (B, ceil(H / stride), ceil(W / stride), features)."""
    c_in = x.shape[-1]
    y = ConvBN(
      c_in,
      self.kernel,
      self.stride,
      self.dilation,
      depthwise=True,
      bn=self.bn,
      dtype=self.dtype,
      name="dw",
    )(x, train)
    add = self.residual and self.stride == 1 and c_in == self.features
    y = ConvBN(self.features, 1, relu=not add, bn=self.bn, dtype=self.dtype, name="pw")(y, train)
    return nn.relu(y + x) if add else y


class Encoder(nn.Module):
  """Paper Table 1 encoder; returns the five block outputs (block 1 first)."""

  variant: str = "low"
  width_divisor: int = 1
  residual: bool = False
  bn: BatchNormSpec = TORCH_BN
  dtype: Any = jnp.float32
  min_width: int = 1

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> list[Array]:
    """(B, H, W, 3) normalised RGB -> [block1 .. block5] feature maps (NHWC)."""
    feats = []
    for bi, block in enumerate(encoder_layers(self.variant)):
      for li, (kind, c, k, s, d) in enumerate(block):
        c = _scaled(c, self.width_divisor, self.min_width)
        name = f"block{bi + 1}_{li}"
        if kind == "conv":
          x = ConvBN(c, k, s, d, bn=self.bn, dtype=self.dtype, name=name)(x, train)
        else:
          x = DSConv(c, k, s, d, self.residual, self.bn, self.dtype, name=name)(x, train)
      feats.append(x)
    return feats


class UpConv5(nn.Module):
  """The 5x5 conv of an ``upproj`` branch, after a x2 unpooling when ``scale == 2`` (no bias).

  Parameter ``kernel`` (5, 5, C_in, features), shared by both ``impl`` choices (:func:`unpool_conv5`).
  """

  features: int
  scale: int = 2
  impl: str = "fast"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """(B, H, W, C_in) -> (B, scale * H, scale * W, features)."""
    kernel = self.param(
      "kernel", nn.initializers.he_normal(), (5, 5, x.shape[-1], self.features), jnp.float32
    ).astype(self.dtype)
    x = x.astype(self.dtype)
    if self.scale == 1:
      return conv_nd(x, kernel, strides=(1, 1), padding=((2, 2), (2, 2)))
    if self.scale != 2:
      raise ValueError(f"ds_sidenet: upproj scale t must be 1 or 2, got {self.scale}")
    return unpool_conv5(x, kernel, self.impl)


class UpProj(nn.Module):
  """FCRN ``upproj`` (paper Fig. 3b, docs/model_spec.md §5.2).

  ``ReLU(BN(conv3x3(ReLU(BN(up5_a(X))))) + BN(up5_b(X)))`` with ``up5`` = :class:`UpConv5`. Submodules
  ``conv_a``, ``bn_a``, ``conv_a2``, ``bn_a2``, ``conv_b``, ``bn_b``.
  """

  features: int
  scale: int = 2
  impl: str = "fast"
  bn: BatchNormSpec = TORCH_BN
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, C) -> (B, t H, t W, features)."""
    a = UpConv5(self.features, self.scale, self.impl, self.dtype, name="conv_a")(x)
    a = nn.relu(batch_norm(train, self.bn, dtype=self.dtype, name="bn_a")(a))
    a = Conv(
      self.features,
      (3, 3),
      padding=((1, 1), (1, 1)),
      use_bias=False,
      kernel_init=nn.initializers.he_normal(),
      dtype=self.dtype,
      name="conv_a2",
    )(a)
    a = batch_norm(train, self.bn, dtype=self.dtype, name="bn_a2")(a)
    b = UpConv5(self.features, self.scale, self.impl, self.dtype, name="conv_b")(x)
    b = batch_norm(train, self.bn, dtype=self.dtype, name="bn_b")(b)
    return nn.relu(a + b)


class UpProjCon(nn.Module):
  """Paper's ``upproj-con`` (Fig. 3c; docs/model_spec.md §5.2 reconstruction).

  ``ReLU(BN(conv3x3([U, Y, Z])))`` with ``U = upproj_t(X)`` cropped to ``out_hw``, ``Y`` the encoder skip
  and ``Z`` the RGB input average-pooled to ``out_hw``. Y / Z are left out when ``None``; with both left out
  the block returns ``U`` (plain ``upproj``, Table 7 row 2). Submodules ``upproj``, ``merge``.
  """

  features: int
  scale: int = 2
  impl: str = "fast"
  bn: BatchNormSpec = TORCH_BN
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self,
    x: Array,
    out_hw: Sequence[int],
    skip: Array | None = None,
    rgb: Array | None = None,
    train: bool = False,
  ) -> Array:
    """(B, H, W, C) -> (B, *out_hw, features)."""
    h, w = int(out_hw[0]), int(out_hw[1])
    u = UpProj(self.features, self.scale, self.impl, self.bn, self.dtype, name="upproj")(x, train)
    u = u[:, :h, :w]
    parts = [u]
    if skip is not None:
      parts.append(skip.astype(u.dtype))
    if rgb is not None:
      parts.append(adaptive_avg_pool(rgb, (h, w)).astype(u.dtype))
    if len(parts) == 1:
      return u
    return ConvBN(self.features, 3, bn=self.bn, dtype=self.dtype, name="merge")(
      jnp.concatenate(parts, axis=-1), train
    )


class AMModule(nn.Module):
  """One atrous multiscale module (2-D reading of AMNet; docs/model_spec.md §5.2), C -> C channels."""

  k: int = 16
  bn: BatchNormSpec = TORCH_BN
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, C) -> (B, H, W, C)."""
    c = x.shape[-1]
    y = x
    for i, d in enumerate(am_dilations(self.k)):
      y = ConvBN(c, 3, 1, d, bn=self.bn, dtype=self.dtype, name=f"atrous{i}")(y, train)
    y = ConvBN(c, 1, bn=self.bn, dtype=self.dtype, name="fuse0")(y, train)
    y = ConvBN(c, 1, relu=False, bn=self.bn, dtype=self.dtype, name="fuse1")(y, train)
    return nn.relu(y + x)


class SAM(nn.Module):
  """Stacked atrous multiscale block: ``num_modules`` :class:`AMModule` in sequence (paper Table 2)."""

  k: int = 16
  num_modules: int = 3
  bn: BatchNormSpec = TORCH_BN
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, C) -> (B, H, W, C)."""
    for i in range(self.num_modules):
      x = AMModule(self.k, self.bn, self.dtype, name=f"am{i}")(x, train)
    return x


class Decoder(nn.Module):
  """One decoder branch of paper Table 2 (blocks 1-5 and the output layer)."""

  variant: str = "low"
  out_channels: int = 1
  skip_blocks: tuple[Any, ...] = (4, 3, 2, 1)
  use_skip: bool = True
  use_rgb: bool = True
  upproj_impl: str = "fast"
  sam_k: int = 16
  sam_modules: int = 3
  bn: BatchNormSpec = TORCH_BN
  dtype: Any = jnp.float32
  min_width: int = 1

  @nn.compact
  def __call__(
    self, feats: Sequence[Array], rgb: Array, out_hw: Sequence[int], train: bool = False
  ) -> Array:
    """Encoder block outputs + normalised RGB -> (B, *out_hw, out_channels) float32."""
    x = feats[-1]
    c = x.shape[-1]
    scales = decoder_scales(self.variant)
    hw = tuple(x.shape[1:3])
    for i, t in enumerate(scales[:4]):
      if t == "sam":
        x = SAM(self.sam_k, self.sam_modules, self.bn, self.dtype, name=f"block{i + 1}")(x, train)
        continue
      src = self.skip_blocks[i]
      skip = feats[src - 1] if (self.use_skip and src is not None) else None
      # Without a skip: the size the encoder had at this scale (ceil-rounded strides).
      target = tuple(skip.shape[1:3]) if skip is not None else _target_hw(feats, hw, t)
      c = max(int(self.min_width), c // 2)
      x = UpProjCon(c, t, self.upproj_impl, self.bn, self.dtype, name=f"block{i + 1}")(
        x, target, skip, rgb if self.use_rgb else None, train
      )
      hw = target
    c = max(1, int(self.min_width), c // 2)
    x = UpProj(c, scales[4], self.upproj_impl, self.bn, self.dtype, name="block5")(x, train)
    x = x[:, : out_hw[0], : out_hw[1]]
    return Conv(
      self.out_channels,
      (3, 3),
      padding=((1, 1), (1, 1)),
      dtype=self.dtype,
      name="output",
    )(x).astype(jnp.float32)


def _target_hw(feats: Sequence[Array], hw: tuple[int, int], t: int) -> tuple[int, int]:
  """The encoder map size at ``t`` times ``hw`` (ceil-rounded strides make 2x not always exact)."""
  if t == 1:
    return hw
  for f in feats:
    fh, fw = f.shape[1:3]
    if -(-fh // 2) == hw[0] and -(-fw // 2) == hw[1]:
      return (fh, fw)
  return (t * hw[0], t * hw[1])


class DSSIDENet(nn.Module, DepthSegModel):
  """DS-SIDENet of paper 004 (Ren et al.; docs/model_spec.md §5.1-§5.3, §7.5, paper Tables 1-2).

  Input ``image`` float32 (B, H, W, 3) RGB in [0, 1] (normalised here with ImageNet mean / std). Outputs:
  ``depth_logits`` (B, H, W, K + 1) over the log10 bins (classification branch), ``depth`` (B, H, W, 1)
  metres (regression branch, linear plus ``depth_prior``), and ``aux`` (empty); a branch left out of
  ``branches`` is not built and its output is absent.

  Attributes:
    variant: ``'low'`` (NYU / ScanNet) or ``'high'`` (KITTI) depth range, paper Tables 1-2.
    branches: subset of ``('cls', 'reg')`` (Table 6 ablations: ``('cls',)`` for soft-/hard-cls only,
      ``('reg',)`` for regression only).
    width_divisor: divides every channel count (1 = paper widths; small / tiny presets use more).
    min_width: the fewest channels of any encoder or decoder layer after ``width_divisor`` (1 = no floor,
      the paper at divisor 1). At ``width_divisor=16`` the last decoder layers would otherwise have 2 and 1
      channels: a one-channel ReLU feeding the output layer, which can die and leave a constant depth map.
    residual: identity shortcuts in the encoder's DS convs (UNSPECIFIED, off).
    upproj_impl: ``'fast'`` (four-conv FCRN form) or ``'literal'`` (unpool + 5x5).
    skip_blocks: encoder block (1-5) feeding ``Y`` of decoder blocks 1-4 (None = none); None = the
      variant's default (:data:`DEFAULT_SKIPS`).
    use_skip: the encoder skip ``Y`` of ``upproj-con`` (Table 7).
    use_rgb: the RGB skip ``Z`` of ``upproj-con`` (Table 7).
    sam_k: largest dilation of an AM module (:func:`am_dilations`).
    sam_modules: AM modules in SAM (paper: 3).
    bn: BatchNorm constants.
    depth_prior: metres added to the regression output (a fresh head then starts near typical depth).
    depth_output: ``'bins'`` (with a classification branch) or ``'metres'`` (``branches=('reg',)``).
    depth_bins: ``(kind, alpha, beta, K)`` of ``semdepth_jax.depth_bins.make_bins``; the classification
      branch has ``K + 1`` channels for ``log10`` bins (§7.5) — default the DORN NYU range 0.7-10 m, K = 68.
    bin_decode: ``'expectation'`` (paper), ``'argmax'``, ``'regression'`` or ``'average'``.
    bin_value_mode: class values (``depth_bins.class_values``).
    num_classes: accepted for the common interface (the training loop passes the dataset's classes);
      DS-SIDENet has no segmentation head, so it is unused.
    dtype: computation dtype.
  """

  variant: str = "low"
  branches: tuple[str, ...] = ("cls", "reg")
  width_divisor: int = 1
  min_width: int = 1
  residual: bool = False
  upproj_impl: str = "fast"
  skip_blocks: tuple[Any, ...] | None = None
  use_skip: bool = True
  use_rgb: bool = True
  sam_k: int = 16
  sam_modules: int = 3
  bn: BatchNormSpec = TORCH_BN
  depth_prior: float | None = None
  depth_output: str = "bins"
  depth_bins: tuple[Any, ...] | None = ("log10", 0.7, 10.0, 68)
  bin_decode: str = "expectation"
  bin_value_mode: str = "default"
  num_classes: int | None = None
  dtype: Any = jnp.float32

  INPUTS: ClassVar[tuple[str, ...]] = ("image",)
  OUTPUTS: ClassVar[tuple[str, ...]] = ("depth", "depth_logits", "aux")

  def _check(self) -> None:
    where = "DSSIDENet"
    if self.variant not in VARIANTS:
      raise ValueError(f"{where}: variant must be one of {VARIANTS}, got {self.variant!r}")
    if not self.branches or set(self.branches) - set(BRANCHES):
      raise ValueError(
        f"{where}: branches must be a non-empty subset of {BRANCHES}, got {self.branches}"
      )
    if self.upproj_impl not in UPPROJ_IMPLS:
      raise ValueError(
        f"{where}: upproj_impl must be one of {UPPROJ_IMPLS}, got {self.upproj_impl!r}"
      )
    if int(self.width_divisor) < 1:
      raise ValueError(f"{where}: width_divisor must be >= 1, got {self.width_divisor}")
    if int(self.min_width) < 1:
      raise ValueError(f"{where}: min_width must be >= 1, got {self.min_width}")
    check_depth_output(
      self.depth_output, None, where, depth_bins=self.depth_bins, bin_decode=self.bin_decode
    )
    if self.depth_output == "bins" and "cls" not in self.branches:
      raise ValueError(f"{where}: depth_output='bins' needs the 'cls' branch, got {self.branches}")
    if self.depth_output == "metres" and "reg" not in self.branches:
      raise ValueError(
        f"{where}: depth_output='metres' needs the 'reg' branch, got {self.branches}"
      )
    if self.depth_output not in ("bins", "metres"):
      raise ValueError(
        f"{where}: depth_output must be 'bins' or 'metres', got {self.depth_output!r}"
      )
    needs_reg = self.depth_output == "bins" and self.bin_decode in ("regression", "average")
    if needs_reg and "reg" not in self.branches:
      raise ValueError(f"{where}: bin_decode={self.bin_decode!r} needs the 'reg' branch")

  def num_bin_classes(self) -> int:
    """Channels of the classification branch (``K + 1`` for log10 bins, ``K`` otherwise)."""
    from semdepth_jax import depth_bins as bins_lib

    return bins_lib.make_bins(*self.depth_bins).num_classes

  @nn.compact
  def __call__(self, image: Array, labels: Array | None = None, train: bool = False) -> dict:
    """See the class docstring. ``labels`` is accepted for the common call signature and ignored."""
    del labels
    self._check()
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(f"DSSIDENet: image must be (B, H, W, 3) RGB in [0, 1], got {image.shape}")
    rgb = backbones.normalise(image.astype(jnp.float32), backbones.IMAGENET).astype(self.dtype)
    feats = Encoder(
      self.variant,
      self.width_divisor,
      self.residual,
      self.bn,
      self.dtype,
      min_width=self.min_width,
      name="encoder",
    )(rgb, train)
    skips = self.skip_blocks if self.skip_blocks is not None else DEFAULT_SKIPS[self.variant]
    skips = tuple(None if s is None else int(s) for s in skips)
    out_hw = tuple(image.shape[1:3])
    out: dict[str, Any] = {"aux": {}}

    def branch(name: str, channels: int) -> Array:
      return Decoder(
        self.variant,
        channels,
        skips,
        self.use_skip,
        self.use_rgb,
        self.upproj_impl,
        self.sam_k,
        self.sam_modules,
        self.bn,
        self.dtype,
        min_width=self.min_width,
        name=name,
      )(feats, rgb, out_hw, train)

    if "cls" in self.branches:
      out["depth_logits"] = branch("cls", self.num_bin_classes())
    if "reg" in self.branches:
      reg = branch("reg", 1)
      if self.depth_prior:
        reg = reg + np.float32(self.depth_prior)
      out["depth"] = reg
    return out


__all__ = [
  "DSSIDENet",
  "DEFAULT_SKIPS",
  "am_dilations",
  "decoder_scales",
  "encoder_layers",
  "interleave2x",
  "unpool2x",
  "unpool_conv5",
]
