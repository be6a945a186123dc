"""Tests for the model registry (semdepth_jax.models)."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from semdepth_jax import models
from semdepth_jax.models.cnn3d import CNN3DS, CNN3DUP
from semdepth_jax.models.scrx import SCRX
from semdepth_jax.models.ssegdepnet import SSegDepNet
from semdepth_jax.models.unet import UNet

PAPER_000 = {
  "unet": UNet,
  "scrx": SCRX,
  "cnn3d_s": CNN3DS,
  "cnn3d_up": CNN3DUP,
  "ssegdepnet": SSegDepNet,
}


def test_paper_000_models_are_registered():
  assert set(PAPER_000) <= set(models.known_models())
  assert list(models.known_models()) == sorted(models.known_models())
  for name, cls in PAPER_000.items():
    assert type(models.get_model(name)) is cls


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_registered_model_resolves_and_traces(name):
  model = models.get_model(name)
  assert isinstance(model, nn.Module)
  image = jax.ShapeDtypeStruct((1, 192, 320, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), image)
  assert "params" in variables


def test_unknown_name_lists_known_models():
  with pytest.raises(KeyError) as err:
    models.get_model("resnet9000")
  for name in PAPER_000:
    assert name in str(err.value)


def test_overrides_are_applied_and_unknown_ones_rejected():
  m = models.get_model("cnn3d_up", num_classes=40, ohess_classes=(1, 2, 3), dropout_rate=0.5)
  assert (m.num_classes, m.ohess_classes, m.dropout_rate) == (40, (1, 2, 3), 0.5)
  with pytest.raises(TypeError, match="base_widht") as err:
    models.get_model("unet", base_widht=8)
  assert "base_width" in str(err.value)  # The valid attributes are listed.


def test_model_attributes_are_the_dataclass_fields():
  attrs = models.model_attributes("unet")
  assert "name" not in attrs and "parent" not in attrs
  assert set(attrs) == {f.name for f in dataclasses.fields(UNet)} - {"name", "parent"}
