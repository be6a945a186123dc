"""DeepLab-v2 (ResNet-101, ASPP, output stride 8) for segmentation and depth as classification.

Paper 002 (Oluwafemi et al. 2019) treats monocular depth as semantic segmentation: a DeepLab-v2 network whose
classes are the K = 71 spacing-increasing (SID) depth bins (docs/model_spec.md §3.1-§3.2). One module,
:class:`DeepLabV2`, holds the network with up to three heads on the same backbone:

=============== ======================= ======================================================================
head            submodule               output
=============== ======================= ======================================================================
``depth_bins``  ``aspp_bins``           ``depth_logits`` (B, H, W, K) over the bins of ``depth_bins`` (002)
``depth``       ``aspp_depth``          ``depth`` (B, H, W, 1) in ``depth_output`` units (plain regression)
``seg``         ``aspp_seg``            ``seg_logits`` (B, H, W, C) (DeepLab-v2 proper)
=============== ======================= ======================================================================

Network (§3.1): the ``backbone`` (default ``resnet101_deeplab`` of :data:`semdepth_jax.models.backbones.
BACKBONES`: Caffe / MSRA bottlenecks with the stride on the first 1x1, ceil-mode stem pool, layer3 dilation 2
and layer4 dilation 4 = output stride 8, frozen BatchNorm) -> per head an ASPP of four parallel 3x3
convolutions at rates 6 / 12 / 18 / 24 (dilation = padding, bias, weights N(0, 0.01), bias 0), **summed**
(no BN, no ReLU, no image pooling; KZ ``_ASPP``, IS ``Classifier_Module``) -> bilinear upsampling of the
stride-8 logits to the input size (half-pixel centres, ``layers.resize_bilinear``; the paper: "interpolated
for upsampling to original image resolution"). No CRF (§3.1: UNSPECIFIED, not used).

Input: float32 (B, H, W, 3) RGB in [0, 1], normalised here with the backbone's preprocessing (Caffe BGR mean
subtraction for ``resnet101_deeplab``; ``preprocessing='imagenet'`` for converted torchvision weights,
§3.3: UNSPECIFIED).

Depth units (model-family contract, ``semdepth_jax.models.contract``): with a ``depth_bins`` head the model
declares ``depth_output='bins'`` and ``decode`` turns ``depth_logits`` into metres by ``bin_decode``:
``'argmax'`` + ``bin_value_mode='midpoint'`` (default, §3.2 option (b): DORN's mid-point ``(t_c + t_{c+1})
/ 2``, which is the ``dorn`` kind's default class value; with alpha = 1 m the ``dorn`` and ``sid`` edges are
the same), ``bin_value_mode='log_centre'`` (§3.2 option (a)), or ``bin_decode='expectation'`` (soft). The
plain-regression variant (``heads=('depth',)``) declares ``'metres'`` (or ``'log'``) and its ``depth`` is
used as is.

Registered names (:data:`semdepth_jax.models.MODELS`): ``deeplab_v2`` (segmentation, ``heads=('seg',)``),
``deeplab_sid`` (paper 002, ``heads=('depth_bins',)``) and ``deeplab_regression`` (``heads=('depth',)``,
metres); the joint depth-bins + segmentation model is ``deeplab_sid`` with ``heads=('depth_bins', 'seg')``.

Parameters: at the defaults with K = 71 the network has the torchvision ResNet-101 count without its fc
(44,549,160 - 2,049,000) plus four 3x3x2048x71 convolutions with bias (5,234,972) = 47,735,132, of which the
105,344 frozen BatchNorm scales and biases live in ``batch_stats`` (never trained; ``layers.FrozenBatchNorm``)
and 47,629,788 in ``params``.

Parameter paths: ``backbone/...`` (the backbone's own tree, so ``config.model_init = {path, prefix:
'backbone'}`` loads converted ImageNet weights), ``aspp_bins/conv{0..3}``, ``aspp_depth/...``,
``aspp_seg/...``; the DeepLab 10x head learning rate is ``optimizer.lr_multipliers=(('^aspp', 10.0),)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from semdepth_jax.models import backbones, layers
from semdepth_jax.models.contract import DepthSegModel, check_depth_output

Array = jax.Array

HEADS = ("depth_bins", "depth", "seg")
"""Heads a :class:`DeepLabV2` may have (see the module docstring)."""

ASPP_RATES = (6, 12, 18, 24)
"""DeepLab-v2 ASPP-L dilation rates (docs/model_spec.md §3.1)."""

PREPROCESSINGS = {"imagenet": backbones.IMAGENET, "caffe_bgr": backbones.CAFFE_BGR}
"""Values of :attr:`DeepLabV2.preprocessing` ('' = the backbone entry's own)."""

SID_BINS = ("sid", 1.0, 80.0, 71)
"""Paper 002's bins: SID, alpha = 1 m, beta = 80 m, K = 71 (docs/model_spec.md §3.2 recommendation)."""

DEFAULT_BACKBONE = FrozenDict({"name": "resnet101_deeplab"})
"""DeepLab-v2's ResNet-101 (Caffe strides, ceil pool, OS 8, frozen BN; docs/model_spec.md §3.1)."""


class ASPPv2(nn.Module):
  """DeepLab-v2 ASPP on ResNet: the sum of parallel 3x3 atrous convolutions (docs/model_spec.md §3.1).

  Submodules ``conv0`` .. ``conv{n-1}``, each ``layers.Conv`` with kernel (3, 3, C_in, features), bias,
  dilation = padding = rate, so every branch keeps the spatial size.

  Attributes:
    features: output channels (classes).
    rates: dilation rate per branch ((6, 12, 18, 24) in DeepLab-v2).
    init_std: standard deviation of the normal kernel initialisation (0.01; KZ / IS).
    bias_init: initial value of every branch's bias (0; a regression head may start at a prior).
    dtype: computation dtype.
  """

  features: int
  rates: Sequence[int] = ASPP_RATES
  init_std: float = 0.01
  bias_init: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """(B, h, w, C_in) -> (B, h, w, features) float32."""
    if not self.rates:
      raise ValueError("ASPPv2: rates must name at least one dilation rate")
    out = None
    for i, rate in enumerate(self.rates):
      r = int(rate)
      if r < 1:
        raise ValueError(f"ASPPv2: rates must be >= 1, got {tuple(self.rates)}")
      y = layers.Conv(
        self.features,
        (3, 3),
        padding=((r, r), (r, r)),
        kernel_dilation=r,
        use_bias=True,
        kernel_init=nn.initializers.normal(self.init_std),
        bias_init=nn.initializers.constant(self.bias_init),
        dtype=self.dtype,
        name=f"conv{i}",
      )(x)
      out = y if out is None else out + y
    return out.astype(jnp.float32)


def backbone_module(config: Mapping[str, Any], name: str | None = None) -> tuple[nn.Module, Any]:
  """Builds a registered backbone from ``{'name': ..., **attribute overrides}``.

  Overrides are decoded like ``semdepth convert-weights --set`` (lists become tuples; ``bn`` may be
  ``'torch'`` / ``'frozen'`` / ``'keras'``), so a config file can change widths, depths or the BatchNorm
  behaviour of the backbone.

  Args:
    config: mapping with ``name`` (a key of ``backbones.BACKBONES``) and the module's attributes.
    name: linen name of the submodule.

  Returns:
    ``(module, Preprocessing)``.

  Raises:
    KeyError: no ``name`` or an unknown backbone (lists the known ones).
  """
  from semdepth_jax.weights import convert

  cfg = dict(config)
  if "name" not in cfg:
    raise KeyError(
      "DeepLabV2.backbone needs a 'name' (one of "
      f"{', '.join(backbones.known_backbones())}), got {sorted(cfg)}"
    )
  entry = backbones.get_backbone_entry(cfg.pop("name"))
  attrs = convert.decode_attributes(cfg)
  module = entry.build(**attrs, name=name) if name else entry.build(**attrs)
  return module, entry.preprocessing(**attrs)


class DeepLabV2(nn.Module, DepthSegModel):
  """DeepLab-v2 with depth-bin / depth / segmentation heads (see the module docstring).

  Call: ``model.apply(variables, image, train=False)`` with ``image`` float32 (B, H, W, 3) RGB in [0, 1].
  Frozen BatchNorm has nothing to update, but trainable backbones (``bn='torch'`` in ``backbone``) need
  ``mutable=['batch_stats']`` when ``train``.

  Attributes:
    num_classes: segmentation classes C (dataset meta info); used only with the ``seg`` head.
    heads: a non-empty subset of :data:`HEADS`.
    backbone: ``{'name': registered backbone, **attribute overrides}`` (see :func:`backbone_module`);
      default ``resnet101_deeplab`` (§3.1). Small presets override widths / depths here.
    aspp_rates: ASPP dilation rates ((6, 12, 18, 24)).
    aspp_init_std: normal init std of the ASPP kernels (0.01).
    preprocessing: ``''`` (the backbone's; Caffe BGR for ``resnet101_deeplab``), ``'imagenet'`` or
      ``'caffe_bgr'`` (match it to the weights ``model_init`` loads).
    upsample: bilinearly upsample the stride-8 outputs to the input size (paper); False returns them at the
      backbone's output stride (the losses resize targets nearest to the prediction).
    depth_output: ``'bins'`` (needs the ``depth_bins`` head), ``'metres'`` or ``'log'`` (need ``depth``).
    depth_bins: ``(kind, alpha, beta, num_bins)`` for ``semdepth_jax.depth_bins.make_bins``; K classes.
    bin_decode: ``'argmax'`` (default), ``'expectation'``, ``'regression'`` / ``'average'`` (with both
      depth heads).
    bin_value_mode: class value rule of ``depth_bins.class_values`` (``'midpoint'``: DORN, §3.2 (b)).
    depth_norm: unused (contract attribute; no inverted-normalised output here).
    depth_prior: metres; the regression head starts at this depth (a bias of ``prior / len(rates)`` per
      branch for ``'metres'``, ``log(prior)`` likewise for ``'log'``) instead of 0 m / 1 m. None = 0.
    dtype: computation dtype.
  """

  OUTPUTS = ("depth", "depth_logits", "seg_logits", "aux")

  num_classes: int = 21
  heads: Sequence[str] = ("seg",)
  backbone: Mapping[str, Any] = DEFAULT_BACKBONE
  aspp_rates: Sequence[int] = ASPP_RATES
  aspp_init_std: float = 0.01
  preprocessing: str = ""
  upsample: bool = True
  depth_output: str = "bins"
  depth_bins: Any = SID_BINS
  bin_decode: str = "argmax"
  bin_value_mode: str = "midpoint"
  depth_norm: float | None = None
  depth_prior: float | None = None
  dtype: Any = jnp.float32

  def _check(self) -> tuple[str, ...]:
    where = type(self).__name__
    heads = tuple(self.heads)
    unknown = [h for h in heads if h not in HEADS]
    if not heads or unknown or len(set(heads)) != len(heads):
      raise ValueError(f"{where}: heads must be a non-empty subset of {HEADS}, got {heads}")
    check_depth_output(self.depth_output, self.depth_norm, where, self.depth_bins, self.bin_decode)
    if self.depth_output == "inverted_normalised":
      raise ValueError(
        f"{where}: depth_output must be 'bins', 'metres' or 'log', got 'inverted_normalised'"
      )
    if self.depth_output == "bins" and "depth_bins" not in heads and "depth" in heads:
      raise ValueError(
        f"{where}: depth_output='bins' needs the 'depth_bins' head; heads={heads} (use "
        "depth_output='metres' or 'log' for a regression-only model)"
      )
    if self.depth_output in ("metres", "log") and "depth_bins" in heads:
      raise ValueError(
        f"{where}: a 'depth_bins' head is decoded with depth_output='bins', got {self.depth_output!r}"
      )
    if self.depth_output in ("metres", "log") and "depth" not in heads:
      raise ValueError(f"{where}: depth_output={self.depth_output!r} needs the 'depth' head")
    if self.bin_decode in ("regression", "average") and "depth" not in heads:
      raise ValueError(f"{where}: bin_decode={self.bin_decode!r} needs the 'depth' head too")
    if "seg" in heads and int(self.num_classes) < 1:
      raise ValueError(
        f"{where}: the 'seg' head needs num_classes >= 1 (the dataset's classes), got {self.num_classes}"
      )
    if self.preprocessing and self.preprocessing not in PREPROCESSINGS:
      raise ValueError(
        f"{where}: preprocessing must be '' or one of {tuple(PREPROCESSINGS)}, got {self.preprocessing!r}"
      )
    if self.depth_prior is not None and not self.depth_prior > 0:
      raise ValueError(f"{where}: depth_prior must be > 0 metres, got {self.depth_prior}")
    return heads

  @property
  def num_depth_classes(self) -> int:
    """K, the number of depth-bin classes of ``depth_bins``."""
    from semdepth_jax import depth_bins

    return depth_bins.make_bins(*self.depth_bins).num_classes

  @nn.compact
  def __call__(self, image: Array, train: bool = False) -> dict[str, Any]:
    """Runs the network.

    Args:
      image: (B, H, W, 3) float32 RGB in [0, 1]; any H, W.
      train: training mode (only trainable BatchNorm reacts to it).

    Returns:
      ``{'depth_logits': (B, H, W, K), 'depth': (B, H, W, 1), 'seg_logits': (B, H, W, C), 'aux': {}}``
      (heads present only; float32; (h, w) = the stride-8 size when ``upsample`` is False).

    Raises:
      ValueError: inconsistent heads / depth declaration (see the attributes).
    """
    heads = self._check()
    net, prep = backbone_module(self.backbone, name="backbone")
    if self.preprocessing:
      prep = PREPROCESSINGS[self.preprocessing]
    x = backbones.normalise(image, prep)
    feats = net(x, train=train)["features"]
    x = feats["stride32"]  # layer4; at output stride 8 with the DeepLab backbone
    size = tuple(image.shape[1:3]) if self.upsample else None
    rates = tuple(int(r) for r in self.aspp_rates)

    def head(features: int, name: str, bias: float = 0.0) -> Array:
      y = ASPPv2(
        features, rates, init_std=self.aspp_init_std, bias_init=bias, dtype=self.dtype, name=name
      )(x)
      return layers.resize_bilinear(y, size) if size else y

    out: dict[str, Any] = {"aux": {}}
    if "depth_bins" in heads:
      out["depth_logits"] = head(self.num_depth_classes, "aspp_bins")
    if "depth" in heads:
      units = self.depth_output if self.depth_output in ("metres", "log") else "metres"
      prior = 0.0
      if self.depth_prior:
        prior = self.depth_prior if units == "metres" else math.log(self.depth_prior)
      out["depth"] = head(1, "aspp_depth", prior / len(rates))
    if "seg" in heads:
      out["seg_logits"] = head(int(self.num_classes), "aspp_seg")
    return out


class DeepLabSID(DeepLabV2):
  """Paper 002: DeepLab-v2 ResNet-101 over the K = 71 SID bins (``heads=('depth_bins',)``).

  Same attributes as :class:`DeepLabV2`; add ``'seg'`` to ``heads`` for the joint model.
  """

  heads: Sequence[str] = ("depth_bins",)


class DeepLabRegression(DeepLabV2):
  """The same network regressing depth directly (``heads=('depth',)``, metres; the comparison baseline).

  Same attributes as :class:`DeepLabV2`; ``depth_output='log'`` regresses natural-log metres instead.
  """

  heads: Sequence[str] = ("depth",)
  depth_output: str = "metres"
