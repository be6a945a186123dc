"""Model registry: ``get_model(name, **overrides)`` returns a Flax linen module.

Every model follows one call convention (docs/conventions.md): ``model.init(rng, image, train=False)``
and ``model.apply(variables, image, labels=None, train=..., mutable=['batch_stats'],
rngs={'dropout': key})`` with ``image`` float32 (B, H, W, 3) in [0, 1] and ``labels`` (B, H, W) int32
training ids (255 = ignore), needed only by models that build OHESS planes from ground truth. Outputs are
dicts with ``depth`` (B, h, w, 1), ``seg_logits`` (B, h, w, C) when the model segments, and ``aux``.

Overrides are the module's attributes (widths, class count, switches); take ``num_classes`` from the
dataset meta info (:func:`semdepth_jax.data.meta.get_meta`). To add a model (papers 001-004), import its
class here and add one entry to :data:`MODELS`.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from semdepth_jax.models.cnn3d import CNN3DS, CNN3DUP
from semdepth_jax.models.deeplab import DeepLabRegression, DeepLabSID, DeepLabV2
from semdepth_jax.models.ds_sidenet import DSSIDENet
from semdepth_jax.models.hybridnet import DeepLabVGG, DepthNet, HybridNetA1, HybridNetA2
from semdepth_jax.models.scrx import SCRX
from semdepth_jax.models.semantic_md import SemanticMD
from semdepth_jax.models.ssegdepnet import SSegDepNet
from semdepth_jax.models.unet import UNet

MODELS: dict[str, type[nn.Module]] = {
  # Paper 000 (Valdez-Rodríguez et al. 2022), docs/model_spec.md §1.
  "unet": UNet,
  "scrx": SCRX,
  "cnn3d_s": CNN3DS,
  "cnn3d_up": CNN3DUP,
  "ssegdepnet": SSegDepNet,
  # Paper 001 (Lin et al. 2019), docs/model_spec.md §2.
  "deeplab_vgg": DeepLabVGG,
  "depthnet": DepthNet,
  "hybridnet_a1": HybridNetA1,
  "hybridnet_a2": HybridNetA2,
  # Paper 002 (Oluwafemi et al. 2019), model_spec §3: DeepLab-v2 ResNet-101, depth as SID classes.
  "deeplab_v2": DeepLabV2,
  "deeplab_sid": DeepLabSID,
  "deeplab_regression": DeepLabRegression,
  # Paper 004 (Ren et al.), docs/model_spec.md §5: low / high depth range by `variant`.
  "ds_sidenet": DSSIDENet,
  # Paper 003 (Charyyev et al., Semantic-MD), docs/model_spec.md §4.
  "semantic_md": SemanticMD,
}
"""Registered models: name -> linen Module class."""

_NOT_ATTRIBUTES = ("parent", "name")


def known_models() -> tuple[str, ...]:
  """Names accepted by :func:`get_model`, sorted."""
  return tuple(sorted(MODELS))


def model_attributes(name: str) -> tuple[str, ...]:
  """The override keys :func:`get_model` accepts for ``name`` (the module's configurable attributes).

  Raises:
    KeyError: unknown model name (the message lists the known ones).
  """
  cls = _lookup(name)
  return tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name not in _NOT_ATTRIBUTES)


def _lookup(name: str) -> type[nn.Module]:
  if name not in MODELS:
    raise KeyError(
      f"semdepth_jax.models: unknown model {name!r}; known models: {', '.join(known_models())}"
    )
  return MODELS[name]


def get_model(name: str, **overrides) -> nn.Module:
  """Builds a registered model with its defaults (the paper configuration) plus ``overrides``.

  Args:
    name: one of :func:`known_models`.
    **overrides: module attributes to change, e.g. ``num_classes=meta.num_classes``,
      ``base_width=4``, ``dropout_rate=0.5``.

  Returns:
    An unbound ``flax.linen.Module``.

  Raises:
    KeyError: unknown ``name`` (the message lists the known models).
    TypeError: an override that is not an attribute of the model (the message lists the valid ones).
  """
  cls = _lookup(name)
  if hasattr(cls, "upgrade_kwargs"):  # attributes renamed since earlier workdirs' configs
    overrides = cls.upgrade_kwargs(overrides)
  valid = model_attributes(name)
  unknown = sorted(set(overrides) - set(valid))
  if unknown:
    raise TypeError(
      f"semdepth_jax.models.get_model({name!r}): unknown override(s) {unknown}; valid attributes: "
      f"{', '.join(valid)}"
    )
  return cls(**overrides)


__all__ = ["MODELS", "get_model", "known_models", "model_attributes"]
