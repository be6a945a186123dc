"""ResNet-18/50/101 (torchvision), its Caffe/MSRA DeepLab-v2 form and the Places365 ResNet-18.

By default :class:`ResNet` is ``torchvision.models.resnet{18,50,101}`` exactly: stem conv 7x7/2 (pad 3, no
bias) + BN + ReLU + max pool 3x3/2 (pad 1), four stages of BasicBlocks (2 x 3x3) or Bottlenecks (1x1 reduce,
3x3, 1x1 expand x4) with the stride on the 3x3 convolution, a 1x1 conv + BN projection shortcut on the first
block of a stage whose stride or width changes, ReLU after the sum, global average pool and a linear
classifier (11,689,512 / 25,557,032 / 44,549,160 parameters at 1000 classes). Switches:

* ``stride_in_1x1``: the stride sits on the bottleneck's first 1x1 convolution (Caffe / MSRA ResNet, used by
  DeepLab-v2; docs/model_spec.md §3.1).
* ``ceil_mode``: the stem max pool rounds up (Caffe; DeepLab-v2's stem, §3.1).
* ``output_stride`` 32 / 16 / 8: the last one / two stages keep stride 1 and dilate their 3x3 convolutions
  instead (2 for a stage at nominal stride 16, 4 at 32; after stride 8 every step doubles the dilation).
  ``dilation_mode='torchvision'`` is ``replace_stride_with_dilation``: the first block of a dilated stage
  uses the previous stage's dilation and the later blocks the new one. ``dilation_mode='deeplab_v2'`` is
  model_spec §3.1 (DeepLab-v2 ResNet-101: "layer3 ... stride 1, dilation 2; layer4 ... stride 1, dilation
  4"): every block of the stage, the first included, uses the stage's dilation, as in the reference
  implementations the spec reads (KZ ``_ResLayer``, IS ``_make_layer``).
* ``bn``: :class:`~semdepth_jax.models.layers.BatchNormSpec`; ``TORCH_BN`` (default) or ``FROZEN_BN``
  (DeepLab-v2: statistics and affine parameters fixed, §3.1).
* ``stem_pool=False`` and ``pool_window=14``: the Places365 ResNet-18 of CSAILVision ``wideresnet.py``
  (paper 004's scene router, model_spec §5.4): no stem max pool (the line is commented out in
  ``ResNet.__init__`` and ``forward``), ``nn.AvgPool2d(14)`` (window 14, stride 14, no padding) before the
  365-way ``fc``. At 224x224 its layer4 is 14x14 and the pool gives 1x1.

Features (backbone contract): ``stride2`` after the stem ReLU, ``stride4`` .. ``stride32`` after layer1 ..
layer4. The names are the levels of the standard ResNet; :meth:`ResNet.feature_info` gives the actual strides
(halved from layer1 on without the stem pool, capped at ``output_stride`` with dilation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semdepth_jax.models import layers
from semdepth_jax.weights.keymap import Rule

Array = jax.Array

BLOCKS = ("basic", "bottleneck")
DILATION_MODES = ("torchvision", "deeplab_v2")
FEATURE_NAMES = ("stride2", "stride4", "stride8", "stride16", "stride32")

DEPTHS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
"""Blocks per stage of the standard depths."""

# torchvision initialisation: kaiming normal (fan_out, ReLU gain) for convs; the linear layer's default
# U(+-1/sqrt(fan_in)) for weight and bias.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_fc_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _conv(features, kernel, stride=1, dilation=1, dtype=jnp.float32, name=None) -> layers.Conv:
  """PyTorch-style conv without bias: symmetric padding ``dilation * (kernel - 1) / 2``."""
  pad = dilation * (kernel - 1) // 2
  return layers.Conv(
    features,
    (kernel, kernel),
    strides=stride,
    padding=((pad, pad), (pad, pad)),
    kernel_dilation=dilation,
    use_bias=False,
    kernel_init=_conv_init,
    dtype=dtype,
    name=name,
  )


class BasicBlock(nn.Module):
  """Two 3x3 convolutions (torchvision ``BasicBlock``); submodules ``conv1, bn1, conv2, bn2[, downsample_*]``.

  torchvision refuses dilation in a BasicBlock; here a dilated block dilates both 3x3 convolutions
  (``conv1`` with ``first_dilation``).

  Attributes:
    planes: output channels.
    stride: stride of ``conv1`` and the shortcut.
    dilation: dilation of ``conv2``.
    first_dilation: dilation of ``conv1`` (the previous stage's in torchvision mode).
    downsample: project the shortcut (1x1 conv + BN).
    stride_in_1x1: unused (bottleneck switch), accepted for a uniform interface.
    bn: BatchNorm behaviour.
    dtype: computation dtype.
  """

  planes: int
  stride: int = 1
  dilation: int = 1
  first_dilation: int = 1
  downsample: bool = False
  stride_in_1x1: bool = False
  bn: layers.BatchNormSpec = layers.TORCH_BN
  dtype: Any = jnp.float32

  expansion = 1

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, C_in) -> (B, H', W', planes)."""

    def bn(name):
      return layers.batch_norm(train, self.bn, dtype=self.dtype, name=name)

    y = _conv(self.planes, 3, self.stride, self.first_dilation, self.dtype, "conv1")(x)
    y = nn.relu(bn("bn1")(y))
    y = bn("bn2")(_conv(self.planes, 3, 1, self.dilation, self.dtype, "conv2")(y))
    if self.downsample:
      x = bn("downsample_bn")(
        _conv(self.planes, 1, self.stride, 1, self.dtype, "downsample_conv")(x)
      )
    return nn.relu(y + x)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3, 1x1 expand (x4) with BN; submodules ``conv1..3, bn1..3[, downsample_conv/_bn]``.

  Attributes:
    planes: width of the 1x1 reduce / 3x3 convolutions; output ``4 * planes``.
    stride: on ``conv2`` (torchvision) or ``conv1`` (``stride_in_1x1``, Caffe / MSRA); always on the
      shortcut.
    dilation: unused (the single 3x3 uses ``first_dilation``), accepted for a uniform interface.
    first_dilation: dilation (= padding) of the 3x3 convolution.
    downsample: project the shortcut (1x1 conv + BN).
    stride_in_1x1: see ``stride``.
    bn: BatchNorm behaviour.
    dtype: computation dtype.
  """

  planes: int
  stride: int = 1
  dilation: int = 1
  first_dilation: int = 1
  downsample: bool = False
  stride_in_1x1: bool = False
  bn: layers.BatchNormSpec = layers.TORCH_BN
  dtype: Any = jnp.float32

  expansion = 4

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, C_in) -> (B, H', W', 4 * planes)."""

    def bn(name):
      return layers.batch_norm(train, self.bn, dtype=self.dtype, name=name)

    s1, s3 = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
    y = nn.relu(bn("bn1")(_conv(self.planes, 1, s1, 1, self.dtype, "conv1")(x)))
    y = nn.relu(bn("bn2")(_conv(self.planes, 3, s3, self.first_dilation, self.dtype, "conv2")(y)))
    y = bn("bn3")(_conv(self.planes * 4, 1, 1, 1, self.dtype, "conv3")(y))
    if self.downsample:
      out = self.planes * 4
      x = bn("downsample_bn")(_conv(out, 1, self.stride, 1, self.dtype, "downsample_conv")(x))
    return nn.relu(y + x)


_BLOCK_CLASSES = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResStage(nn.Module):
  """One stage (torchvision ``layerN``): blocks ``block0`` .. ``block{n-1}``.

  Attributes:
    plan: per block ``(stride, first_dilation, dilation, downsample)`` from :meth:`ResNet.stage_plan`.
    block: ``'basic'`` or ``'bottleneck'``.
    planes: block width.
    stride_in_1x1: bottleneck stride placement.
    bn: BatchNorm behaviour.
    dtype: computation dtype.
  """

  plan: Sequence[tuple[int, int, int, bool]]
  block: str
  planes: int
  stride_in_1x1: bool = False
  bn: layers.BatchNormSpec = layers.TORCH_BN
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, C_in) -> (B, H', W', planes * expansion)."""
    cls = _BLOCK_CLASSES[self.block]
    for j, (stride, first_dilation, dilation, downsample) in enumerate(self.plan):
      x = cls(
        self.planes,
        stride=stride,
        dilation=dilation,
        first_dilation=first_dilation,
        downsample=downsample,
        stride_in_1x1=self.stride_in_1x1,
        bn=self.bn,
        dtype=self.dtype,
        name=f"block{j}",
      )(x, train)
    return x


class ResNet(nn.Module):
  """ResNet with the switches of the module docstring.

  Submodules: ``conv1``, ``bn1``, ``layer1`` .. ``layer4`` (:class:`ResStage`), ``fc`` (with a classifier).

  Attributes:
    block: ``'basic'`` (ResNet-18/34) or ``'bottleneck'`` (ResNet-50/101/152).
    depths: blocks per stage ((2, 2, 2, 2) ResNet-18, (3, 4, 6, 3) ResNet-50, (3, 4, 23, 3) ResNet-101).
    widths: block width (``planes``) per stage; a stage outputs ``width * expansion`` channels.
    stem_width: channels of the stem convolution.
    num_classes: classifier outputs; 0 = no ``fc`` (``logits`` absent).
    stride_in_1x1: Caffe / MSRA bottleneck stride placement.
    stem_pool: the stem max pool (False: Places365 ``wideresnet.py``).
    ceil_mode: the stem max pool rounds its output size up (Caffe).
    output_stride: 32, 16 or 8 (dilation replaces the later strides).
    dilation_mode: ``'torchvision'`` or ``'deeplab_v2'`` (see the module docstring).
    pool_window: ``None`` = global average pool (torchvision); an int = ``nn.AvgPool2d(pool_window)``
      (Places365: 14), which must leave a 1x1 map.
    bn: BatchNorm behaviour (``TORCH_BN`` / ``FROZEN_BN``).
    dtype: computation dtype (parameters and BN statistics stay float32).
  """

  block: str = "bottleneck"
  depths: Sequence[int] = DEPTHS[50]
  widths: Sequence[int] = (64, 128, 256, 512)
  stem_width: int = 64
  num_classes: int = 1000
  stride_in_1x1: bool = False
  stem_pool: bool = True
  ceil_mode: bool = False
  output_stride: int = 32
  dilation_mode: str = "torchvision"
  pool_window: int | None = None
  bn: layers.BatchNormSpec = layers.TORCH_BN
  dtype: Any = jnp.float32

  @property
  def expansion(self) -> int:
    """Output channels per unit of ``planes`` (1 basic, 4 bottleneck)."""
    return _BLOCK_CLASSES[self.block].expansion

  def _check(self) -> None:
    if self.block not in BLOCKS:
      raise ValueError(f"ResNet: block must be one of {BLOCKS}, got {self.block!r}")
    if self.output_stride not in (8, 16, 32):
      raise ValueError(f"ResNet: output_stride must be 8, 16 or 32, got {self.output_stride}")
    if self.dilation_mode not in DILATION_MODES:
      raise ValueError(
        f"ResNet: dilation_mode must be one of {DILATION_MODES}, got {self.dilation_mode!r}"
      )
    if len(self.depths) != 4 or len(self.widths) != 4:
      raise ValueError(f"ResNet: depths and widths need 4 stages, got {self.depths}, {self.widths}")

  def stage_plan(self) -> list[list[tuple[int, int, int, bool]]]:
    """Per stage, per block ``(stride, first_dilation, dilation, downsample)`` (no computation).

    ``first_dilation`` is the dilation of a block's first 3x3 convolution (the only one in a bottleneck).
    Stage ``i`` (0-based) has nominal stride 2 except stage 0; a stage whose nominal input stride is already
    ``output_stride`` keeps stride 1 and multiplies the dilation by 2 instead.
    """
    self._check()
    plans, stride_so_far, dilation = [], 4, 1
    in_ch = self.stem_width
    for i, (depth, planes) in enumerate(zip(self.depths, self.widths, strict=True)):
      stride = 1 if i == 0 else 2
      previous = dilation
      if stride > 1 and stride_so_far >= self.output_stride:
        dilation *= stride
        stride = 1
      else:
        stride_so_far *= stride
      first = previous if self.dilation_mode == "torchvision" else dilation
      out_ch = planes * self.expansion
      plan = [(stride, first, dilation, stride != 1 or in_ch != out_ch)]
      plan += [(1, dilation, dilation, False)] * (int(depth) - 1)
      plans.append(plan)
      in_ch = out_ch
    return plans

  def feature_info(self) -> list[tuple[str, int, int, int]]:
    """``(name, nominal stride, actual stride, channels)`` per feature level (no computation)."""
    plans = self.stage_plan()
    info = [("stride2", 2, 2, self.stem_width)]
    stride = 4 if self.stem_pool else 2
    for i, plan in enumerate(plans):
      stride *= plan[0][0]
      info.append((FEATURE_NAMES[i + 1], 4 * 2**i, stride, self.widths[i] * self.expansion))
    return info

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> dict[str, Any]:
    """Runs the network.

    Args:
      x: (B, H, W, 3) float32, normalised with the entry's preprocessing (backbone contract).
      train: BatchNorm uses batch statistics and updates the running ones (pass
        ``mutable=['batch_stats']``); frozen BN ignores it.

    Returns:
      ``{'features': {'stride2': (B, ceil(H/2), ceil(W/2), stem_width), ..., 'stride32': ...}, 'logits':
      (B, num_classes) float32}`` (``logits`` only with a classifier). Sizes follow PyTorch's conv /
      pool arithmetic (floor; ceil for the stem pool with ``ceil_mode``).

    Raises:
      ValueError: bad attributes, or a ``pool_window`` pool that does not reduce layer4 to 1x1.
    """
    plans = self.stage_plan()
    feats = {}
    x = _conv(self.stem_width, 7, 2, 1, self.dtype, "conv1")(x.astype(self.dtype))
    x = nn.relu(layers.batch_norm(train, self.bn, dtype=self.dtype, name="bn1")(x))
    feats["stride2"] = x
    if self.stem_pool:
      x = layers.torch_max_pool(x, 3, 2, 1, ceil_mode=self.ceil_mode)
    for i, plan in enumerate(plans):
      x = ResStage(
        tuple(plan),
        self.block,
        int(self.widths[i]),
        stride_in_1x1=self.stride_in_1x1,
        bn=self.bn,
        dtype=self.dtype,
        name=f"layer{i + 1}",
      )(x, train)
      feats[FEATURE_NAMES[i + 1]] = x
    out: dict[str, Any] = {"features": feats}
    if self.num_classes:
      y = x.astype(jnp.float32)
      if self.pool_window is None:
        y = jnp.mean(y, axis=(1, 2))
      else:
        w = int(self.pool_window)
        hw = tuple(y.shape[1:3])
        if not all(w <= n < 2 * w for n in hw):
          raise ValueError(
            f"ResNet: pool_window={w} (AvgPool2d({w})) needs a layer4 map of {w}..{2 * w - 1} pixels "
            f"per side to give the 1x1 the fc expects; got {hw} (input {hw[0]} x {hw[1]} at stride "
            f"{self.feature_info()[-1][2]})"
          )
        y = jnp.mean(y[:, :w, :w], axis=(1, 2))
      y = nn.Dense(
        self.num_classes,
        kernel_init=_fc_init,
        bias_init=_fc_bias_init(y.shape[-1]),
        dtype=self.dtype,
        name="fc",
      )(y.astype(self.dtype))
      out["logits"] = y.astype(jnp.float32)
    return out


def _fc_bias_init(fan_in: int):
  """PyTorch ``nn.Linear`` bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = float(fan_in) ** -0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def key_table(**attributes: Any) -> list[Rule]:
  """Key table from the torchvision ResNet state dict (also the Places365 ``wideresnet.py`` layout).

  torchvision names: ``conv1``, ``bn1``, ``layer{s}.{j}.conv{k}`` / ``.bn{k}``, ``layer{s}.{j}.downsample.0``
  (conv) / ``.1`` (BN), ``fc``. ``wideresnet.py`` uses the same names (its checkpoint adds ``module.``,
  stripped by :func:`~semdepth_jax.weights.keymap.normalise_state_dict`). Without a classifier
  (``num_classes=0``) ``fc.*`` is dropped.

  Args:
    **attributes: :class:`ResNet` attributes.
  """
  model = ResNet(**attributes)
  table = [Rule("conv1.weight", "conv1/kernel", "conv"), Rule("bn1", "bn1", "bn")]
  n_convs = 3 if model.block == "bottleneck" else 2
  for s, plan in enumerate(model.stage_plan()):
    for j, (_, _, _, downsample) in enumerate(plan):
      src, dst = f"layer{s + 1}.{j}", f"layer{s + 1}/block{j}"
      for k in range(1, n_convs + 1):
        table += [Rule(f"{src}.conv{k}.weight", f"{dst}/conv{k}/kernel", "conv")]
        table += [Rule(f"{src}.bn{k}", f"{dst}/bn{k}", "bn")]
      if downsample:
        table += [Rule(f"{src}.downsample.0.weight", f"{dst}/downsample_conv/kernel", "conv")]
        table += [Rule(f"{src}.downsample.1", f"{dst}/downsample_bn", "bn")]
  if model.num_classes:
    table += [Rule("fc.weight", "fc/kernel", "linear"), Rule("fc.bias", "fc/bias", "copy")]
  else:
    table += [Rule("fc.weight", "", "drop"), Rule("fc.bias", "", "drop")]
  return table
