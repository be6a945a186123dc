"""Paper 001 (Lin et al. 2019): DeepLab-ASPP (VGG16), DepthNet and HybridNet A1 / A2 (docs/model_spec.md §2).

Registered models (all NHWC, image float32 (B, H, W, 3) RGB in [0, 1]; sizes below for H = W = 321):

============== ======================================================================= =====================
model          network                                                                 outputs
============== ======================================================================= =====================
``deeplab_vgg`` DeepLab-v2 VGG16 ``ASPP-L`` (§2.1): ``backbone`` (VGG16 ``deeplab_v2``,  ``seg_logits`` 41x41
               ceil pools, pool4/5 stride 1, conv5 dilation 2) -> ``aspp`` (four
               fc6/fc7/fc8 branches at rates 6/12/18/24, dropout 0.5, summed)
``depthnet``   DepthNet (Li et al., as §2.2 reconstructs it): ``global_net`` (AlexNet    ``depth`` 81x81,
               trunk + FC 1024 + FC to the 41x41 grid), ``gradient_net`` (same trunk,  ``aux`` global depth
               conv to |dD/dx|, |dD/dy| at 41x41), ``refine_net`` (conv1 on RGB + LRN +  41x41, gradients
               pool at 81x81, concat with the Interp x2 of both, four convs)           41x41x2
``hybridnet_a1`` §2.3: ``backbone`` shared -> ``aspp`` (segmentation) and ``refine_net``   ``seg_logits`` 41x41,
               (conv1 on RGB + Interp x2 of VGG pool5, four convs; depth)               ``depth`` 81x81
``hybridnet_a2`` §2.4: A1 plus DepthNet's ``global_net``; the refining net reads          as A1, ``aux``
               [conv1(RGB), Interp x2(global depth), Interp x2(VGG pool5)]              global depth 41x41
============== ======================================================================= =====================

Shared subtrees have the same names and shapes in every model, so checkpoints move between them with
``config.model_init`` (``prefix``): ``backbone`` and ``aspp`` of a trained ``deeplab_vgg`` initialise A1 / A2
(the paper starts both from DeepLab's model), ``global_net`` of a trained ``depthnet`` initialises A2's
(the paper starts it from Li et al.'s model), and ``backbone`` takes converted ImageNet VGG16 weights
(``semdepth convert-weights --arch vgg16_deeplab``; ``preprocessing='imagenet'`` for torchvision's).

Sub-networks are configured by nested mappings (``backbone``, ``aspp``, ``global_net``, ``gradient_net``,
``refine``) whose keys are the attributes of :class:`~semdepth_jax.models.backbones.vgg.VGG`,
:class:`ASPPVGG`, :class:`GlobalDepthNet`, :class:`GradientNet` and :class:`RefineNet`; unknown keys raise.

What the paper leaves open (docs/model_spec.md §2.2, §2.3, §12) and what is implemented:

* DepthNet layers: AlexNet widths 96-256-384-384-256, kernels 11/5/3/3/3, conv1 stride 2, LRN (5, 1e-4,
  0.75, 1) after every trunk conv, Caffe 3x3 / 2 pad-1 ceil pools after conv1 and conv5 (321 -> 161 -> 81
  -> 41); gradient net ends with a linear 3x3 conv to 2 maps; refining net conv1 9x9 / 2 with 96 channels
  (AlexNet's conv1 width), ReLU, LRN, pool (-> 81), then three 5x5 convs of 64 with ReLU and a 5x5 conv to
  depth. The same sizes hold for the paper's 320 x 320 training crops (320 -> 41 / 81 as well).
* Global FC: **the literal reading is the default**: ``fc_grid=None`` flattens the whole 41x41x256 trunk
  output into FC 1024, 440,665,088 parameters (2 GB of float32 weights; about 6 GB with gradients and SGD
  momentum, which fits the accelerators the paper-size preset targets). ``fc_grid=(g, g)`` is the reduced
  option: the trunk output is average-pooled to g x g (PyTorch adaptive bins) before the FC, like AlexNet's
  6x6 pool5 (``(6, 6)``: 9,438,208 FC parameters). Either way the FC's output is the trunk's grid (41x41 =
  1681 values at 321), so a trained global net runs at its training input size only.
* Coarse maps reach the refining net's grid by Caffe ``Interp`` with aligned corners
  (:func:`~semdepth_jax.resize.bilinear_align_corners`), to the size of the conv1 features
  (= zoom x2 at 8k + 1 inputs); A1 / A2 concatenate the 512-channel VGG pool5 as it is
  (``feature_projection=0``; a 1x1 projection to N channels is the alternative).
* Depth units: ``depth_output='metres'`` with a linear last layer (paper: Euclidean losses on metres), or
  ``'log'`` (natural log of metres, offset by ``depth_prior``; the fast small / tiny recipe). The global
  depth and the gradient maps are in the same units.
* Test-time resolution: with ``upsample_outputs=True`` (default) ``train=False`` outputs are resized to the
  input size by ``Interp`` (aligned corners), as DeepLab's and Caffe's deploy nets do; training outputs stay
  at 41x41 / 81x81 and the losses resize the targets to them (nearest, §2.5).
* Input normalisation: ``preprocessing='caffe_bgr'`` (BGR, 0-255, mean subtracted; DeepLab's Caffe model,
  §2.1) for every sub-network, or ``'imagenet'`` (torchvision weights).
* Random initialisation: ``init_std=None`` = He normal (fan in) for ReLU layers and N(0, 0.01) for output
  layers; ``init_std=0.1`` = the paper's "Gaussian, zero mean, 0.1" read as Caffe's std (§2.1), used by
  the paper-size preset. DeepLab's fc8 is N(0, 0.01) either way.

DepthNet's three parts are trained one after the other (§2.2): ``stage='global'`` runs only the global net
(``depth`` = its 41x41 output), ``stage='gradient'`` only the gradient net (``aux.gradients``),
``stage='refine'`` runs both as frozen, deterministic inputs (no dropout, gradients stopped) and trains the
refining net. ``stage='full'`` (default, evaluation) runs everything in the given mode. HybridNet A2 has
``stage='global'`` (pre-training its global net) and ``'full'``. ``init`` always creates every subtree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from semdepth_jax import resize
from semdepth_jax.models import backbones, layers
from semdepth_jax.models.backbones import vgg
from semdepth_jax.models.contract import DepthSegModel

Array = jax.Array

PREPROCESSINGS = {"caffe_bgr": backbones.CAFFE_BGR, "imagenet": backbones.IMAGENET}
"""``preprocessing=`` values: Caffe BGR mean (DeepLab, default) or ImageNet (torchvision weights)."""

CAFFE_LRN = (5, 1e-4, 0.75, 1.0)
"""Caffe / AlexNet LRN (local_size, alpha, beta, k), docs/model_spec.md §2.2."""

ALEXNET_WIDTHS = (96, 256, 384, 384, 256)
ALEXNET_KERNELS = (11, 5, 3, 3, 3)

DEPTHNET_STAGES = ("full", "global", "gradient", "refine")
HYBRID_STAGES = ("full", "global")
VARIANTS = ("a1", "a2")

# He normal (fan in) for ReLU layers; output layers N(0, 0.01) (DeepLab's fc8 filler).
_HE = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
_OUT = nn.initializers.normal(0.01)


def _init(std: float | None, default: Any = _HE) -> Any:
  return default if std is None else nn.initializers.normal(float(std))


def _freeze(value: Any) -> Any:
  """Nested mappings -> FrozenDict and lists -> tuples, so module attributes stay hashable."""
  if isinstance(value, Mapping):
    return FrozenDict({str(k): _freeze(v) for k, v in value.items()})
  if isinstance(value, list | tuple):
    return tuple(_freeze(v) for v in value)
  return value


def _sub_config(cls: type, cfg: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
  """``cfg`` as constructor kwargs of ``cls``; raises ValueError naming unknown keys."""
  cfg = dict(cfg or {})
  valid = {f.name for f in dataclasses.fields(cls) if f.init} - {"parent", "name"}
  unknown = sorted(set(cfg) - valid)
  if unknown:
    raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(sorted(valid))}")
  return cfg


def _check_choice(value: Any, choices: Sequence[Any], where: str, what: str) -> None:
  if value not in choices:
    raise ValueError(f"{where}: {what} must be one of {tuple(choices)}, got {value!r}")


def _check_image(image: Array, where: str) -> None:
  if image.ndim != 4 or image.shape[-1] != 3:
    raise ValueError(f"{where}: image must be (B, H, W, 3) RGB in [0, 1], got shape {image.shape}")


def _caffe_pool(x: Array) -> Array:
  """Caffe max pool 3x3 / 2, pad 1, ceil mode (docs/model_spec.md §2.1, §2.2)."""
  return layers.torch_max_pool(x, 3, 2, padding=1, ceil_mode=True)


def _lrn(x: Array, spec: Sequence[float] | None) -> Array:
  if spec is None:
    return x
  size, alpha, beta, k = spec
  return layers.LocalResponseNorm(int(size), float(alpha), float(beta), float(k))(x)


class _FrozenAttributes:
  """Mixin: turns mapping / list attributes into hashable values before linen's ``__post_init__``."""

  _MAPPING_FIELDS: tuple[str, ...] = ()

  def __post_init__(self):
    for f in self._MAPPING_FIELDS:
      object.__setattr__(self, f, _freeze(getattr(self, f) or {}))
    super().__post_init__()


# ------------------------------------------------------------------------------------------------------
# Building blocks.
# ------------------------------------------------------------------------------------------------------
class ASPPVGG(nn.Module):
  """DeepLab-v2 ``ASPP-L`` head on VGG16 (model_spec §2.1): four parallel branches, outputs summed.

  Branch ``i`` (rate ``r_i``): ``fc6_i`` 3x3 conv of ``width`` with dilation and padding ``r_i``, ReLU, dropout;
  ``fc7_i`` 1x1 conv of ``width``, ReLU, dropout; ``fc8_i`` 1x1 conv to ``num_classes`` (linear). Names follow
  the official prototxt. Parameters at 512 input channels, ``width=1024``: ``4 * (4,719,616 + 1,049,600 +
  1025 * num_classes)``.

  Attributes:
    num_classes: classes C.
    width: fc6 / fc7 channels (1024).
    rates: atrous rates, one branch each (6, 12, 18, 24).
    dropout_rate: after fc6 and fc7 in training (needs a ``'dropout'`` rng).
    init_std: fc6 / fc7 initialisation (None = He normal; a float = N(0, std)).
    fc8_init_std: fc8 initialisation std (DeepLab: 0.01).
    dtype: computation dtype.
  """

  num_classes: int = 21
  width: int = 1024
  rates: Sequence[int] = (6, 12, 18, 24)
  dropout_rate: float = 0.5
  init_std: float | None = None
  fc8_init_std: float = 0.01
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, h, w, C_in) features -> (B, h, w, num_classes) summed class scores."""
    total = None
    for i, r in enumerate(self.rates, start=1):
      r = int(r)
      y = layers.Conv(
        self.width,
        (3, 3),
        padding=((r, r), (r, r)),
        kernel_dilation=r,
        kernel_init=_init(self.init_std),
        dtype=self.dtype,
        name=f"fc6_{i}",
      )(x)
      y = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(y))
      y = layers.Conv(
        self.width, (1, 1), kernel_init=_init(self.init_std), dtype=self.dtype, name=f"fc7_{i}"
      )(y)
      y = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(y))
      y = layers.Conv(
        self.num_classes,
        (1, 1),
        kernel_init=nn.initializers.normal(self.fc8_init_std),
        dtype=self.dtype,
        name=f"fc8_{i}",
      )(y)
      total = y if total is None else total + y
    return total


def _alexnet_trunk(
  x: Array,
  *,
  widths: Sequence[int],
  kernels: Sequence[int],
  conv1_stride: int,
  lrn: Sequence[float] | None,
  init_std: float | None,
  dtype: Any,
) -> Array:
  """conv1..conv5 (ReLU + LRN each), Caffe pools after conv1 and conv5; creates ``conv1``..``conv5``.

  Called from a compact method, so the convolutions belong to the calling module. 321 -> 161 -> 81 -> 41.
  """
  if len(widths) != 5 or len(kernels) != 5:
    raise ValueError(
      f"DepthNet trunk: widths and kernels need 5 entries, got {tuple(widths)} / {tuple(kernels)}"
    )
  for i, (w, k) in enumerate(zip(widths, kernels, strict=True)):
    k = int(k)
    x = layers.Conv(
      int(w),
      (k, k),
      strides=int(conv1_stride) if i == 0 else 1,
      padding=((k // 2, k // 2), (k // 2, k // 2)),
      kernel_init=_init(init_std),
      dtype=dtype,
      name=f"conv{i + 1}",
    )(x)
    x = _lrn(nn.relu(x), lrn)
    if i in (0, 4):
      x = _caffe_pool(x)
  return x


class GlobalDepthNet(nn.Module):
  """DepthNet's global depth network (model_spec §2.2): AlexNet trunk, FC ``fc_hidden``, FC to the grid.

  ``fc6``: flattened trunk output (h x w x 256, or ``fc_grid`` cells x 256) -> ``fc_hidden``, ReLU, dropout;
  ``fc7``: -> h * w, linear, reshaped to the trunk's (h, w) grid (41 x 41 for 321 or 320 inputs).

  Attributes:
    widths: trunk conv widths (AlexNet 96-256-384-384-256).
    kernels: trunk kernel sizes (11, 5, 3, 3, 3); padding ``k // 2``.
    conv1_stride: stride of conv1 (2: the only strided conv, for an overall stride of 8).
    lrn: (local_size, alpha, beta, k) of the LRN after each conv; None = no LRN.
    fc_hidden: first FC width (1024).
    fc_grid: None = literal FC on the whole trunk output (440,665,088 weights at 321 x 321); (g_h, g_w) =
      reduced option, average-pool the trunk output to that grid first (module docstring).
    dropout_rate: after fc6 in training.
    init_std: random initialisation (None = He normal, fc7 N(0, 0.01); float = N(0, std) everywhere).
    dtype: computation dtype.
  """

  widths: Sequence[int] = ALEXNET_WIDTHS
  kernels: Sequence[int] = ALEXNET_KERNELS
  conv1_stride: int = 2
  lrn: Sequence[float] | None = CAFFE_LRN
  fc_hidden: int = 1024
  fc_grid: Sequence[int] | None = None
  dropout_rate: float = 0.5
  init_std: float | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, 3) normalised image -> (B, h, w, 1) coarse depth (pre-activation, the model's units)."""
    x = _alexnet_trunk(
      x,
      widths=self.widths,
      kernels=self.kernels,
      conv1_stride=self.conv1_stride,
      lrn=self.lrn,
      init_std=self.init_std,
      dtype=self.dtype,
    )
    b, h, w = x.shape[:3]
    if self.fc_grid is not None:
      x = layers.adaptive_avg_pool(x, tuple(int(g) for g in self.fc_grid))
    y = x.reshape(b, -1)
    y = nn.Dense(self.fc_hidden, kernel_init=_init(self.init_std), dtype=self.dtype, name="fc6")(y)
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(y))
    y = nn.Dense(h * w, kernel_init=_init(self.init_std, _OUT), dtype=self.dtype, name="fc7")(y)
    return y.reshape(b, h, w, 1)


class GradientNet(nn.Module):
  """DepthNet's gradient network (model_spec §2.2): the global net's trunk, then a 3x3 conv to 2 maps.

  The two output maps estimate ``|dD/dx|`` and ``|dD/dy|`` of the depth (in the model's depth units per
  output cell) on the trunk's grid; the final linear conv ``out`` is the spec's reconstruction (the paper
  only says "without the fully connected layers").

  Attributes:
    widths, kernels, conv1_stride, lrn, init_std, dtype: as :class:`GlobalDepthNet`.
  """

  widths: Sequence[int] = ALEXNET_WIDTHS
  kernels: Sequence[int] = ALEXNET_KERNELS
  conv1_stride: int = 2
  lrn: Sequence[float] | None = CAFFE_LRN
  init_std: float | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, 3) normalised image -> (B, h, w, 2) gradient magnitudes (x, y)."""
    del train
    x = _alexnet_trunk(
      x,
      widths=self.widths,
      kernels=self.kernels,
      conv1_stride=self.conv1_stride,
      lrn=self.lrn,
      init_std=self.init_std,
      dtype=self.dtype,
    )
    return layers.Conv(
      2, (3, 3), kernel_init=_init(self.init_std, _OUT), dtype=self.dtype, name="out"
    )(x)


class RefineNet(nn.Module):
  """DepthNet's refining network (model_spec §2.2), also A1 / A2's depth decoder (§2.3, §2.4).

  ``conv1`` (``conv1_kernel`` / 2, pad ``k // 2``) on the image, ReLU, LRN, Caffe pool (321 -> 161 -> 81);
  every coarse map is brought to that grid by ``Interp`` (aligned corners) and concatenated after the conv1
  features; then ``conv2``..``conv4`` (``kernel``, ``widths``, ReLU) and ``conv5`` to one channel (the
  depth pre-activation).

  Attributes:
    conv1_width: channels of conv1 (96).
    conv1_kernel: conv1 kernel (9).
    widths: channels of conv2..conv4 (64, 64, 64).
    kernel: kernel of conv2..conv5 (5).
    lrn: LRN after conv1 (None = none).
    init_std: random initialisation (None = He normal and N(0, 0.01) for conv5; float = N(0, std)).
    dtype: computation dtype.
  """

  conv1_width: int = 96
  conv1_kernel: int = 9
  widths: Sequence[int] = (64, 64, 64)
  kernel: int = 5
  lrn: Sequence[float] | None = CAFFE_LRN
  init_std: float | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, coarse: Sequence[Array], train: bool = False) -> Array:
    """Refines depth.

    Args:
      x: (B, H, W, 3) normalised image.
      coarse: (B, h, w, C_i) maps on the stride-8 grid (global depth, gradients, VGG features).
      train: unused (no dropout / BatchNorm); part of the call convention.

    Returns:
      (B, h4, w4, 1) depth pre-activation on the stride-4 grid (81 x 81 for 321).
    """
    del train
    k1 = int(self.conv1_kernel)
    f = layers.Conv(
      self.conv1_width,
      (k1, k1),
      strides=2,
      padding=((k1 // 2, k1 // 2), (k1 // 2, k1 // 2)),
      kernel_init=_init(self.init_std),
      dtype=self.dtype,
      name="conv1",
    )(x)
    f = _caffe_pool(_lrn(nn.relu(f), self.lrn))
    size = f.shape[1:3]
    maps = [resize.bilinear_align_corners(c.astype(f.dtype), size) for c in coarse]
    y = jnp.concatenate([f, *maps], axis=-1)
    k = int(self.kernel)
    pad = ((k // 2, k // 2), (k // 2, k // 2))
    for i, w in enumerate(self.widths):
      y = layers.Conv(
        int(w), (k, k), padding=pad, kernel_init=_init(self.init_std), dtype=self.dtype,
        name=f"conv{i + 2}",
      )(y)  # fmt: skip
      y = nn.relu(y)
    return layers.Conv(
      1,
      (k, k),
      padding=pad,
      kernel_init=_init(self.init_std, _OUT),
      dtype=self.dtype,
      name=f"conv{len(self.widths) + 2}",
    )(y)


# ------------------------------------------------------------------------------------------------------
# Registered models.
# ------------------------------------------------------------------------------------------------------
class _Paper001(_FrozenAttributes):
  """Shared behaviour of the paper-001 models: input normalisation, depth head, test-time Interp."""

  def _normalise(self, image: Array) -> Array:
    _check_choice(self.preprocessing, tuple(PREPROCESSINGS), self._where, "preprocessing")
    return backbones.normalise(image, PREPROCESSINGS[self.preprocessing]).astype(self.dtype)

  def _depth(self, y: Array) -> Array:
    return layers.depth_head_output(
      y,
      final_activation=self.final_activation,
      depth_output=self.depth_output,
      max_depth=self.max_depth,
      depth_prior=self.depth_prior,
      out_size=None,
      where=self._where,
    )

  def _finish(self, out: dict[str, Any], image: Array, train: bool) -> dict[str, Any]:
    """Caffe deploy ``Interp`` of ``depth`` / ``seg_logits`` to the input size when not training."""
    if train or not self.upsample_outputs:
      return out
    size = image.shape[1:3]
    for key in ("depth", "seg_logits"):
      if key in out:
        out[key] = resize.bilinear_align_corners(out[key].astype(jnp.float32), size)
    return out

  def _vgg(self) -> nn.Module:
    cfg = _sub_config(vgg.VGG, self.backbone, f"{self._where}: backbone")
    bad = {k: cfg[k] for k in ("variant", "num_classes") if k in cfg}
    if bad:
      raise ValueError(f"{self._where}: backbone must not set {sorted(bad)} (fixed: deeplab_v2, 0)")
    return vgg.VGG(variant="deeplab_v2", num_classes=0, dtype=self.dtype, name="backbone", **cfg)

  def _aspp(self) -> nn.Module:
    cfg = _sub_config(ASPPVGG, self.aspp, f"{self._where}: aspp")
    return ASPPVGG(num_classes=self.num_classes, dtype=self.dtype, name="aspp", **cfg)

  def _global_net(self) -> nn.Module:
    cfg = _sub_config(GlobalDepthNet, self.global_net, f"{self._where}: global_net")
    cfg.setdefault("init_std", self.init_std)
    return GlobalDepthNet(dtype=self.dtype, name="global_net", **cfg)

  def _refine_net(self) -> nn.Module:
    cfg = _sub_config(RefineNet, self.refine, f"{self._where}: refine")
    cfg.setdefault("init_std", self.init_std)
    return RefineNet(dtype=self.dtype, name="refine_net", **cfg)


class DeepLabVGG(_Paper001, nn.Module, DepthSegModel):
  """DeepLab-v2 VGG16 ASPP-L (model_spec §2.1), paper 001's single-task segmentation baseline.

  Call: ``model.apply(variables, image, train=..., rngs={'dropout': key})``. Parameters at paper widths:
  14,714,688 (VGG16 convs) + ASPP ``4 * (5,769,216 + 1025 * C)``: 37,877,652 at C = 21, 37,869,452 at
  C = 19.

  Attributes:
    num_classes: classes C (dataset meta info; 19 Cityscapes, 37 SUN RGB-D, 21 VOC).
    backbone: :class:`~semdepth_jax.models.backbones.vgg.VGG` attributes (``widths``); always the
      ``deeplab_v2`` variant without classifier.
    aspp: :class:`ASPPVGG` attributes (``width``, ``rates``, ``dropout_rate``, ...).
    preprocessing: ``'caffe_bgr'`` or ``'imagenet'`` (:data:`PREPROCESSINGS`).
    upsample_outputs: ``train=False`` outputs resized to the input size (Caffe ``Interp``).
    dtype: computation dtype.
  """

  INPUTS = ("image",)
  OUTPUTS = ("seg_logits", "aux")
  _MAPPING_FIELDS = ("backbone", "aspp")
  _where = "deeplab_vgg"

  num_classes: int = 21
  backbone: Mapping[str, Any] = FrozenDict()
  aspp: Mapping[str, Any] = FrozenDict()
  preprocessing: str = "caffe_bgr"
  upsample_outputs: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: Array, *, train: bool = False) -> dict[str, Any]:
    """Segments ``image``.

    Args:
      image: (B, H, W, 3) float32 RGB in [0, 1] (321 x 321 tiles / 320 x 320 crops in the paper).
      train: dropout active.

    Returns:
      ``{'seg_logits': (B, h, w, C) float32, 'aux': {}}``; h = 41 for H = 321 (stride 8, ceil pools) in
      training, H with ``upsample_outputs`` otherwise.

    Raises:
      ValueError: bad image shape or attributes.
    """
    _check_image(image, self._where)
    feats = self._vgg()(self._normalise(image), train=train)["features"]
    logits = self._aspp()(feats["stride32"], train=train).astype(jnp.float32)
    return self._finish({"seg_logits": logits, "aux": {}}, image, train)


class DepthNet(_Paper001, nn.Module, DepthSegModel):
  """DepthNet (Li et al., as paper 001 describes it; model_spec §2.2): single-task depth baseline.

  Call: ``model.apply(variables, image, train=..., rngs={'dropout': key})``. Stages: module docstring.
  Parameters at the defaults (literal FC): global net 446,135,313 (trunk 3,747,200 + fc6 440,665,088 +
  fc7 1,723,025), gradient net 3,751,810, refining net 388,417; total 450,275,540.

  Attributes:
    stage: ``'full'``, ``'global'``, ``'gradient'`` or ``'refine'`` (:data:`DEPTHNET_STAGES`).
    global_net: :class:`GlobalDepthNet` attributes (e.g. ``fc_grid``, ``widths``).
    gradient_net: :class:`GradientNet` attributes.
    refine: :class:`RefineNet` attributes.
    init_std: default ``init_std`` of the three parts (None = He; 0.1 = the paper's RNG).
    preprocessing: ``'caffe_bgr'`` or ``'imagenet'``.
    depth_output: ``'metres'`` (paper) or ``'log'`` (fast recipe).
    final_activation: ``'linear'`` (default), ``'relu'`` or ``'sigmoid'`` (then ``max_depth``).
    max_depth: metres scale of a sigmoid head.
    depth_prior: metres; ``'log'`` outputs are offset by its log (``layers.depth_head_output``).
    upsample_outputs: ``train=False`` depth resized to the input size (Caffe ``Interp``).
    num_classes: unused (accepted because the training loop passes the dataset's class count).
    dtype: computation dtype.
  """

  INPUTS = ("image",)
  OUTPUTS = ("depth", "aux")
  _MAPPING_FIELDS = ("global_net", "gradient_net", "refine")
  _where = "depthnet"

  stage: str = "full"
  global_net: Mapping[str, Any] = FrozenDict()
  gradient_net: Mapping[str, Any] = FrozenDict()
  refine: Mapping[str, Any] = FrozenDict()
  init_std: float | None = None
  preprocessing: str = "caffe_bgr"
  depth_output: str = "metres"
  final_activation: str = "linear"
  max_depth: float | None = None
  depth_prior: float | None = None
  upsample_outputs: bool = True
  num_classes: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: Array, *, train: bool = False) -> dict[str, Any]:
    """Predicts depth (stage-dependent, see the module docstring).

    Args:
      image: (B, H, W, 3) float32 RGB in [0, 1].
      train: dropout in the global FC.

    Returns:
      ``'full'`` / ``'refine'``: ``{'depth': (B, h4, w4, 1), 'aux': {'global_depth': (B, h8, w8, 1),
      'gradients': (B, h8, w8, 2)}}`` (h4 = 81, h8 = 41 at 321; ``depth`` at H x W when not training
      with ``upsample_outputs``). ``'global'``: ``depth`` = the global depth. ``'gradient'``: ``aux`` only.
      Units per ``depth_output``.

    Raises:
      ValueError: bad image shape or attributes.
    """
    _check_image(image, self._where)
    _check_choice(self.stage, DEPTHNET_STAGES, self._where, "stage")
    x = self._normalise(image)
    g_cfg = _sub_config(GradientNet, self.gradient_net, f"{self._where}: gradient_net")
    g_cfg.setdefault("init_std", self.init_std)
    global_net = self._global_net()
    gradient_net = GradientNet(dtype=self.dtype, name="gradient_net", **g_cfg)
    refine_net = self._refine_net()
    init = self.is_initializing()
    stage = self.stage

    if stage == "global" and not init:
      g = self._depth(global_net(x, train=train))
      return self._finish({"depth": g, "aux": {"global_depth": g}}, image, train)
    if stage == "gradient" and not init:
      return {"aux": {"gradients": gradient_net(x, train=train).astype(jnp.float32)}}

    frozen = stage == "refine"
    g = self._depth(global_net(x, train=train and not frozen))
    grads = gradient_net(x, train=train and not frozen).astype(jnp.float32)
    if frozen:
      g, grads = jax.lax.stop_gradient(g), jax.lax.stop_gradient(grads)
    d = self._depth(refine_net(x, [g, grads], train=train))
    return self._finish({"depth": d, "aux": {"global_depth": g, "gradients": grads}}, image, train)


class HybridNet(_Paper001, nn.Module, DepthSegModel):
  """HybridNet A1 / A2 (paper 001 §3; docs/model_spec.md §2.3, §2.4): joint segmentation and depth.

  A1: shared VGG16 (DeepLab-v2) -> ASPP (segmentation) and refining net on [conv1(RGB), Interp(pool5)].
  A2: A1 plus DepthNet's global net, the refining net reading [conv1(RGB), Interp(global depth),
  Interp(pool5)] (the gradient net replaced by the shared VGG features). Registered as ``hybridnet_a1``
  (:class:`HybridNetA1`) and ``hybridnet_a2`` (:class:`HybridNetA2`).

  Parameters at paper widths (C = 19, literal FC): A1 39,072,269 (VGG 14,714,688 + ASPP 23,154,764 +
  refining net 1,202,817 = conv1 23,424 + conv2 972,864 + 2 * 102,464 + conv5 1,601); A2 485,209,182 (+
  global net 446,135,313; refining conv2 sees one more channel: + 1,600).

  Attributes:
    variant: ``'a1'`` or ``'a2'``.
    num_classes: classes C.
    stage: ``'full'`` or (A2) ``'global'``: only the global net runs (pre-training it), ``depth`` = its
      output.
    backbone, aspp, global_net, refine: sub-network attributes (module docstring).
    feature_projection: 0 = concatenate the 512-channel pool5 as it is (spec recommendation); N > 0 = a
      1x1 conv (``project``, ReLU) to N channels first.
    init_std: default ``init_std`` of the random parts (refining net, global net, ASPP fc6/fc7 keep their
      own keys); None = He, 0.1 = the paper's RNG.
    preprocessing, depth_output, final_activation, max_depth, depth_prior, upsample_outputs, dtype: as
      :class:`DepthNet`.
  """

  INPUTS = ("image",)
  OUTPUTS = ("depth", "seg_logits", "aux")
  _MAPPING_FIELDS = ("backbone", "aspp", "global_net", "refine")

  variant: str = "a1"
  num_classes: int = 19
  stage: str = "full"
  backbone: Mapping[str, Any] = FrozenDict()
  aspp: Mapping[str, Any] = FrozenDict()
  global_net: Mapping[str, Any] = FrozenDict()
  refine: Mapping[str, Any] = FrozenDict()
  feature_projection: int = 0
  init_std: float | None = None
  preprocessing: str = "caffe_bgr"
  depth_output: str = "metres"
  final_activation: str = "linear"
  max_depth: float | None = None
  depth_prior: float | None = None
  upsample_outputs: bool = True
  dtype: Any = jnp.float32

  @property
  def _where(self) -> str:
    return f"hybridnet_{self.variant}"

  @nn.compact
  def __call__(self, image: Array, *, train: bool = False) -> dict[str, Any]:
    """Segments and predicts depth.

    Args:
      image: (B, H, W, 3) float32 RGB in [0, 1].
      train: dropout (ASPP, global FC).

    Returns:
      ``{'seg_logits': (B, h8, w8, C), 'depth': (B, h4, w4, 1), 'aux': {...}}`` with h8 = 41, h4 = 81 at
      321 (both H x W when not training, with ``upsample_outputs``); A2's ``aux['global_depth']`` is
      (B, h8, w8, 1). Depth units per ``depth_output``. A2 ``stage='global'``: ``{'depth': global depth,
      'aux': {'global_depth'}}``.

    Raises:
      ValueError: bad image shape or attributes (unknown variant / stage, ``'global'`` on A1).
    """
    _check_image(image, self._where)
    _check_choice(self.variant, VARIANTS, "hybridnet", "variant")
    _check_choice(self.stage, HYBRID_STAGES, self._where, "stage")
    if self.variant == "a1" and self.stage != "full":
      raise ValueError("hybridnet_a1: has no global net; stage must be 'full'")
    x = self._normalise(image)
    init = self.is_initializing()
    global_net = self._global_net() if self.variant == "a2" else None
    if global_net is not None and self.stage == "global" and not init:
      g = self._depth(global_net(x, train=train))
      return self._finish({"depth": g, "aux": {"global_depth": g}}, image, train)

    feats = self._vgg()(x, train=train)["features"]["stride32"]
    logits = self._aspp()(feats, train=train).astype(jnp.float32)
    coarse, aux = [], {}
    if global_net is not None:
      g = self._depth(global_net(x, train=train))
      coarse.append(g)
      aux["global_depth"] = g
    if self.feature_projection:
      feats = nn.relu(
        layers.Conv(
          int(self.feature_projection),
          (1, 1),
          kernel_init=_init(self.init_std),
          dtype=self.dtype,
          name="project",
        )(feats)
      )
    coarse.append(feats)
    d = self._depth(self._refine_net()(x, coarse, train=train))
    return self._finish({"seg_logits": logits, "depth": d, "aux": aux}, image, train)


class HybridNetA1(HybridNet):
  """HybridNet A1 (docs/model_spec.md §2.3): :class:`HybridNet` with ``variant='a1'``."""

  variant: str = "a1"


class HybridNetA2(HybridNet):
  """HybridNet A2 (model_spec §2.4, the paper's best): :class:`HybridNet` with ``variant='a2'``."""

  variant: str = "a2"


__all__ = [
  "ASPPVGG",
  "DeepLabVGG",
  "DepthNet",
  "GlobalDepthNet",
  "GradientNet",
  "HybridNet",
  "HybridNetA1",
  "HybridNetA2",
  "RefineNet",
]
