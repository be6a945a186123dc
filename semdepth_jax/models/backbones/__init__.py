"""Backbones: ImageNet-style encoders that the model families build on (docs/model_spec.md §2-§5, §6).

The backbone contract (every backbone module follows it):

* Call: ``backbone.apply(variables, x, train=False, mutable=..., rngs=...)`` with ``x`` float32 (B, H, W, 3)
  **already normalised** by :func:`normalise` with the backbone's :class:`Preprocessing` (the model that
  owns the backbone applies it to its [0, 1] RGB input; the data pipeline never does).
* Output: ``{'features': {name: (B, h, w, C)}, 'logits': (B, num_classes)}``. ``features`` is keyed by the
  *nominal* stride of the level in the undilated network, ``'stride1'`` ... ``'stride32'``; with dilation
  (``output_stride`` < 32) a level's actual stride is ``min(nominal, output_stride)``. ``logits`` is present
  only when the backbone has a classifier (``num_classes > 0``).
* ``feature_info()`` (a method usable on an unbound module) lists ``(name, nominal stride, actual stride,
  channels)`` per level, so decoders size themselves without running the network.
* Widths / depths / switches are module attributes, so tests run the real architecture at tiny widths.
* Each backbone module also exposes ``key_table(**attributes) -> list[semdepth_jax.weights.keymap.Rule]``
  mapping the reference PyTorch state dict (torchvision / timm / the original authors' file) onto its
  variables, and ``PREPROCESSING`` (or a function of the variant) declaring its input normalisation.

:data:`BACKBONES` maps a name (``vgg16``, ``resnet101``, ``efficientnet_b4``, ...) to a :class:`BackboneEntry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How an RGB image in [0, 1] becomes a backbone's input.

  ``x = ((image * input_scale)[..., order] - mean) / std`` with the channel order reversed for ``'BGR'``.

  Attributes:
    mean: per-channel mean in the *network's* channel order and value range (e.g. Caffe's BGR
      (104.008, 116.669, 122.675) at ``input_scale=255``; ImageNet (0.485, 0.456, 0.406) at 1).
    std: per-channel standard deviation (1 for Caffe models).
    input_scale: multiplier from [0, 1] to the network's range (1 or 255).
    channel_order: ``'RGB'`` or ``'BGR'``.
    source: where these constants come from (documentation).
  """

  mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
  std: tuple[float, float, float] = (0.229, 0.224, 0.225)
  input_scale: float = 1.0
  channel_order: str = "RGB"
  source: str = "ImageNet statistics (torchvision / timm)"

  def as_dict(self) -> dict[str, Any]:
    """JSON-ready dict (weight-checkpoint metadata)."""
    return dataclasses.asdict(self)


IMAGENET = Preprocessing()
"""torchvision / timm ImageNet normalisation of [0, 1] RGB."""

CAFFE_BGR = Preprocessing(
  mean=(104.008, 116.669, 122.675),
  std=(1.0, 1.0, 1.0),
  input_scale=255.0,
  channel_order="BGR",
  source="Caffe BGR mean of DeepLab-v2 / HybridNet (docs/model_spec.md §2.1, §3.1)",
)
"""Caffe models (DeepLab-v2 VGG16 / ResNet-101): BGR, 0-255, mean subtracted, no std."""


def normalise(image: jax.Array, prep: Preprocessing) -> jax.Array:
  """Applies ``prep`` to (B, H, W, 3) float RGB in [0, 1]; returns float32 in the network's convention.

  Raises:
    ValueError: the last axis is not 3 channels, or an unknown channel order.
  """
  if image.shape[-1] != 3:
    raise ValueError(f"normalise: expected (..., 3) RGB, got shape {image.shape}")
  if prep.channel_order not in ("RGB", "BGR"):
    raise ValueError(f"normalise: channel_order must be RGB or BGR, got {prep.channel_order!r}")
  x = image.astype(jnp.float32) * prep.input_scale
  if prep.channel_order == "BGR":
    x = x[..., ::-1]
  return (x - jnp.asarray(prep.mean, jnp.float32)) / jnp.asarray(prep.std, jnp.float32)


@dataclasses.dataclass(frozen=True)
class BackboneEntry:
  """A registered backbone.

  Attributes:
    build: ``**attributes -> linen Module`` (the architecture's defaults are the reference model's).
    key_table: ``**attributes -> list[Rule]`` from the reference state dict (``semdepth_jax.weights``).
    preprocessing: ``**attributes -> Preprocessing``.
    reference: the reference implementation the key table reads (e.g. ``torchvision.models.resnet101``).
  """

  build: Callable[..., Any]
  key_table: Callable[..., list]
  preprocessing: Callable[..., Preprocessing]
  reference: str


BACKBONES: dict[str, BackboneEntry] = {}
"""Registered backbones by name (filled by the backbone modules' entries below)."""


def known_backbones() -> tuple[str, ...]:
  """Names accepted by :func:`get_backbone`, sorted."""
  return tuple(sorted(BACKBONES))


def get_backbone_entry(name: str) -> BackboneEntry:
  """The :class:`BackboneEntry` of ``name``.

  Raises:
    KeyError: unknown name (the message lists the known backbones).
  """
  if name not in BACKBONES:
    raise KeyError(f"unknown backbone {name!r}; known backbones: {', '.join(known_backbones())}")
  return BACKBONES[name]


# ------------------------------------------------------------------------------------------------------
# VGG16 and ResNet entries (vgg.py, resnet.py). The modules import this package's names above, so they are
# imported here, after those names exist.
# ------------------------------------------------------------------------------------------------------
def _preset(fn: Callable[..., Any], **defaults: Any) -> Callable[..., Any]:
  """``fn`` with preset keyword defaults that callers may override."""

  def call(**attributes: Any) -> Any:
    return fn(**{**defaults, **attributes})

  return call


def _register_vgg_resnet() -> None:
  from semdepth_jax.models import layers
  from semdepth_jax.models.backbones import resnet, vgg

  def add(name, module, table, prep, reference, **defaults):
    BACKBONES[name] = BackboneEntry(
      build=_preset(module, **defaults),
      key_table=_preset(table, **defaults),
      preprocessing=lambda **_: prep,
      reference=reference,
    )

  add("vgg16", vgg.VGG, vgg.key_table, IMAGENET, "torchvision.models.vgg16")
  # docs/model_spec.md §2.1: Caffe BGR input; converted torchvision weights: --preprocessing imagenet.
  add(
    "vgg16_deeplab",
    vgg.VGG,
    vgg.key_table,
    CAFFE_BGR,
    "DeepLab-v2 VGG16 (docs/model_spec.md §2.1); conv keys of torchvision.models.vgg16",
    variant="deeplab_v2",
    num_classes=0,
  )
  for depth in (18, 50, 101):
    add(
      f"resnet{depth}",
      resnet.ResNet,
      resnet.key_table,
      IMAGENET,
      f"torchvision.models.resnet{depth}",
      block="basic" if depth == 18 else "bottleneck",
      depths=resnet.DEPTHS[depth],
    )
  add(
    "resnet101_deeplab",
    resnet.ResNet,
    resnet.key_table,
    CAFFE_BGR,
    "DeepLab-v2 ResNet-101 (docs/model_spec.md §3.1); keys of torchvision.models.resnet101",
    block="bottleneck",
    depths=resnet.DEPTHS[101],
    stride_in_1x1=True,
    ceil_mode=True,
    output_stride=8,
    dilation_mode="deeplab_v2",
    bn=layers.FROZEN_BN,
    num_classes=0,
  )
  add(
    "resnet18_places365",
    resnet.ResNet,
    resnet.key_table,
    IMAGENET,
    "CSAILVision/places365 wideresnet.resnet18(num_classes=365) (docs/model_spec.md §5.4)",
    block="basic",
    depths=resnet.DEPTHS[18],
    stem_pool=False,
    pool_window=14,
    num_classes=365,
  )


_register_vgg_resnet()


# ------------------------------------------------------------------------------------------------------
# EfficientNet-B0 ... B4 (efficientnet.py, timm ``efficientnet_bN``). Imported here, after the names above
# exist, because efficientnet.py imports them.
# ------------------------------------------------------------------------------------------------------
def _register_efficientnet() -> None:
  import functools

  from semdepth_jax.models.backbones import efficientnet

  for variant in efficientnet.VARIANTS:
    BACKBONES[f"efficientnet_{variant}"] = BackboneEntry(
      build=functools.partial(efficientnet.EfficientNet, variant=variant),
      key_table=functools.partial(efficientnet.key_table, variant=variant),
      preprocessing=functools.partial(efficientnet.preprocessing, variant=variant),
      reference=f"timm.create_model('efficientnet_{variant}')",
    )


_register_efficientnet()
