"""VGG16: the torchvision ImageNet classifier and the DeepLab-v2 feature network (docs/model_spec.md §2.1).

``variant='torchvision'`` is ``torchvision.models.vgg16`` layer for layer: 13 3x3 convolutions (padding 1,
bias, ReLU) in five blocks of widths 64-128-256-512-512, a 2x2 / 2 max pool after each block, an adaptive
average pool to 7x7 (PyTorch's bins, any input size), and the classifier 25088-4096-4096-``num_classes``
with ReLU and dropout 0.5 after the two hidden layers (138,357,544 parameters at 1000 classes).

``variant='deeplab_v2'`` is DeepLab-v2's VGG16 (the official ASPP-L prototxt, model_spec §2.1): the same 13
convolutions, but Caffe 3x3 pools with padding 1 in ceil mode, stride 2 after blocks 1-3 and stride 1 after
blocks 4 and 5, and block 5 convolutions with dilation 2 (padding 2); no classifier, the network ends at
pool5 at stride 8 (321 -> 41). Its ASPP heads are built by the models that use it. The convolution weights
have the same names and shapes as torchvision's, so a converted ImageNet VGG16 (``semdepth convert-weights
--arch vgg16_deeplab``, the classifier is dropped) initialises it. The paper's own initialisation is
DeepLab's Caffe model, which expects Caffe BGR input (:data:`~semdepth_jax.models.backbones.CAFFE_BGR`,
§2.1); torchvision's ImageNet weights expect ImageNet RGB normalisation, so convert those with
``--preprocessing imagenet``.

Features (backbone contract, :mod:`semdepth_jax.models.backbones`), all after the block's last ReLU:
``stride1`` conv1_2, ``stride2`` conv2_2, ``stride4`` conv3_3, ``stride8`` conv4_3, ``stride16`` conv5_3,
``stride32`` pool5. In the DeepLab-v2 variant ``stride16`` and ``stride32`` are at actual stride 8.
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

VGG16_WIDTHS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
"""Output channels of the 13 convolutions of VGG16, by block."""

VARIANTS = ("torchvision", "deeplab_v2")

FEATURE_NAMES = ("stride1", "stride2", "stride4", "stride8", "stride16", "stride32")

# torchvision initialisation: kaiming normal (fan_out, ReLU gain) for convs, N(0, 0.01) for linears, zero bias.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_linear_init = nn.initializers.normal(0.01)


def _pool_args(variant: str, block: int) -> dict[str, Any]:
  """Max-pool window / stride / padding / ceil mode after ``block`` (0-based)."""
  if variant == "torchvision":
    return {"window": 2, "strides": 2, "padding": 0, "ceil_mode": False}
  return {"window": 3, "strides": 2 if block < 3 else 1, "padding": 1, "ceil_mode": True}


class VGG(nn.Module):
  """VGG16 (torchvision layout) or its DeepLab-v2 variant; see the module docstring.

  Submodules: ``conv{b}_{i}`` (b = 1..5, i = 1..len(block)) and, with a classifier, ``fc6``, ``fc7``,
  ``fc8``.

  Attributes:
    widths: output channels per convolution, grouped by block (five blocks; VGG16 by default).
    num_classes: classifier outputs; 0 = no classifier (``logits`` absent). Must be 0 for ``deeplab_v2``.
    hidden: width of the two hidden classifier layers (4096).
    dropout_rate: dropout after each hidden classifier layer in training (needs a ``'dropout'`` rng).
    variant: ``'torchvision'`` or ``'deeplab_v2'``.
    dtype: computation dtype (parameters stay float32).
  """

  widths: Sequence[Sequence[int]] = VGG16_WIDTHS
  num_classes: int = 1000
  hidden: int = 4096
  dropout_rate: float = 0.5
  variant: str = "torchvision"
  dtype: Any = jnp.float32

  def _check(self) -> None:
    if self.variant not in VARIANTS:
      raise ValueError(f"VGG: variant must be one of {VARIANTS}, got {self.variant!r}")
    if len(self.widths) != 5:
      raise ValueError(f"VGG: widths needs 5 blocks, got {len(self.widths)}")
    if self.variant == "deeplab_v2" and self.num_classes:
      raise ValueError(
        f"VGG: the deeplab_v2 variant has no classifier (it ends at pool5); got num_classes="
        f"{self.num_classes}, use 0"
      )

  def feature_info(self) -> list[tuple[str, int, int, int]]:
    """``(name, nominal stride, actual stride, channels)`` per feature level (no computation)."""
    self._check()
    nominal = (1, 2, 4, 8, 16, 32)
    cap = 32 if self.variant == "torchvision" else 8
    chans = [int(b[-1]) for b in self.widths] + [int(self.widths[-1][-1])]
    return [(n, s, min(s, cap), c) for n, s, c in zip(FEATURE_NAMES, nominal, chans, strict=True)]

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> dict[str, Any]:
    """Runs the network.

    Args:
      x: (B, H, W, 3) float32, normalised with the entry's preprocessing (backbone contract).
      train: dropout active in the classifier (the convolutions have no BatchNorm).

    Returns:
      ``{'features': {'stride1': (B, H, W, 64), ..., 'stride32': (B, h, w, 512)}, 'logits': (B,
      num_classes)}`` (``logits`` only with a classifier). torchvision: ``stride32`` is
      ``floor(H / 32)``; deeplab_v2: ``stride4/8/16/32`` are ``ceil`` sizes (321 -> 161, 81, 41, 41, 41).

    Raises:
      ValueError: bad attributes (unknown variant, a classifier on deeplab_v2, not five blocks).
    """
    self._check()
    feats = {}
    x = x.astype(self.dtype)
    for b, block in enumerate(self.widths):
      dilation = 2 if (self.variant == "deeplab_v2" and b == 4) else 1
      for i, width in enumerate(block):
        x = layers.Conv(
          int(width),
          (3, 3),
          padding=((dilation, dilation), (dilation, dilation)),
          kernel_dilation=dilation,
          kernel_init=_conv_init,
          dtype=self.dtype,
          name=f"conv{b + 1}_{i + 1}",
        )(x)
        x = nn.relu(x)
      feats[FEATURE_NAMES[b]] = x
      x = layers.torch_max_pool(x, **_pool_args(self.variant, b))
    feats["stride32"] = x
    out: dict[str, Any] = {"features": feats}
    if self.num_classes:
      y = layers.adaptive_avg_pool(x, 7)
      # torchvision flattens NCHW: channel-major order, so its first linear weight maps without a permute.
      y = jnp.transpose(y, (0, 3, 1, 2)).reshape(y.shape[0], -1)
      for name in ("fc6", "fc7"):
        y = nn.Dense(self.hidden, kernel_init=_linear_init, dtype=self.dtype, name=name)(y)
        y = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(y))
      y = nn.Dense(self.num_classes, kernel_init=_linear_init, dtype=self.dtype, name="fc8")(y)
      out["logits"] = y.astype(jnp.float32)
    return out


def key_table(**attributes: Any) -> list[Rule]:
  """Key table from torchvision's ``vgg16`` state dict (``features.N.*``, ``classifier.N.*``).

  torchvision numbers the ``features`` Sequential over convs, ReLUs and pools (conv1_1 = 0, conv1_2 = 2,
  pool1 = 4, conv2_1 = 5, ...) and the classifier as Linear 0, ReLU 1, Dropout 2, Linear 3, ReLU 4,
  Dropout 5, Linear 6. Without a classifier (``num_classes=0``, the DeepLab-v2 variant) the classifier
  keys are dropped (``drop`` rules).

  Args:
    **attributes: :class:`VGG` attributes (``widths``, ``num_classes``, ...).
  """
  model = VGG(**attributes)
  table, idx = [], 0
  for b, block in enumerate(model.widths):
    for i in range(len(block)):
      name = f"conv{b + 1}_{i + 1}"
      table += [Rule(f"features.{idx}.weight", f"{name}/kernel", "conv")]
      table += [Rule(f"features.{idx}.bias", f"{name}/bias", "copy")]
      idx += 2  # conv, ReLU
    idx += 1  # pool
  for name, j in (("fc6", 0), ("fc7", 3), ("fc8", 6)):
    if model.num_classes:
      table += [Rule(f"classifier.{j}.weight", f"{name}/kernel", "linear")]
      table += [Rule(f"classifier.{j}.bias", f"{name}/bias", "copy")]
    else:
      table += [Rule(f"classifier.{j}.{p}", "", "drop") for p in ("weight", "bias")]
  return table
