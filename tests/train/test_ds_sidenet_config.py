"""Tests for configs/ds_sidenet.py (paper 004 presets; docs/model_spec.md §5.4, §7.5)."""

import os

import jax
import jax.numpy as jnp
import pytest

from configs import common, ds_sidenet
from semdepth_jax.losses import build_loss
from semdepth_jax.models import get_model
from semdepth_jax.train import config_utils, loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(REPO, "configs", "ds_sidenet.py")


def _load(arg=""):
  return config_utils.load_config(f"{CFG}:{arg}" if arg else CFG)


@pytest.mark.parametrize("size", common.SIZES)
@pytest.mark.parametrize("model", ds_sidenet.MODELS)
def test_every_preset_loads_and_validates(model, size):
  # Every loss= row is built and checked at tiny in test_table6_rows_build_a_model_and_loss_that_fit.
  cfg = _load(f"model={model},size={size}")
  assert cfg.is_locked
  loop.check_consumers(cfg)
  assert tuple(cfg.image_size) == ds_sidenet.IMAGE_SIZES[model][size]
  assert cfg.model.variant == ("high" if model == "high" else "low")
  assert (model == "coarse") == bool(cfg.train_mixture)


def test_paper_recipe_is_the_s2d_convention():
  cfg = _load("model=low,dataset=nyu_depth_v2_labeled")
  st = cfg.stages.train
  o = st.optimizer
  assert (o.name, o.learning_rate, o.momentum, o.weight_decay) == ("sgd", 0.01, 0.9, 1e-4)
  # 795 images / batch 8 = 100 steps per epoch: 15 epochs, x0.1 every 5.
  assert (st.num_steps, st.batch_size) == (1500, 8)
  assert (st.schedule.name, st.schedule.decay_every, st.schedule.decay_factor) == ("step", 500, 0.1)
  assert cfg.model.width_divisor == 1 and cfg.model.sam_k == 16
  assert tuple(_load("model=high").image_size) == (384, 1248)
  assert tuple(cfg.model.depth_bins) == ("log10", 0.7, 10.0, 68)
  assert tuple(_load("model=high").model.depth_bins) == ("log10", 1.0, 80.0, 71)


def test_fast_recipe_at_small_and_tiny():
  for size, lr in (("small", 1e-3), ("tiny", 3e-3)):
    cfg = _load(f"model=low,dataset=replica,size={size}")
    st = cfg.stages.train
    assert (st.optimizer.name, st.optimizer.learning_rate, st.optimizer.grad_clip_norm) == (
      "adam",
      lr,
      1.0,
    )
    assert st.schedule.name == "cosine" and cfg.augment.flip
    assert cfg.model.depth_prior > 0
    assert cfg.model.min_width == 1 and not cfg.augment.jitter
    coarse = _load(f"model=coarse,size={size}")
    assert coarse.model.min_width == 8 and coarse.augment.jitter
  paper = _load("model=coarse,size=paper")
  assert paper.model.min_width == 1 and not paper.augment.jitter


@pytest.mark.parametrize(
  "loss, outputs, decode",
  [
    ("soft_reg", {"depth", "depth_logits"}, "expectation"),
    ("soft", {"depth_logits"}, "expectation"),
    ("hard", {"depth_logits"}, "argmax"),
    ("reg", {"depth"}, None),
  ],
)
def test_table6_rows_build_a_model_and_loss_that_fit(loss, outputs, decode):
  cfg = _load(f"model=low,loss={loss},dataset=replica,size=tiny")
  kw = dict(cfg.model.to_dict())
  m = get_model(kw.pop("name"), **kw)
  x = jnp.full((1, 32, 32, 3), 0.5)
  out = m.apply(m.init(jax.random.key(0), x), x)
  assert set(out) - {"aux"} == outputs
  if decode:
    assert m.bin_decode == decode and m.depth_output == "bins"
  else:
    assert m.depth_output == "metres"
  loss_fn = build_loss(cfg.stages.train.loss.to_dict())
  total, aux = loss_fn(out, {"depth": jnp.full((1, 32, 32), 2.0)})
  assert jnp.isfinite(total)
  assert set(aux) == set(cfg.stages.train.loss) | {"total"}


@pytest.mark.parametrize(
  "arg, match",
  [
    ("model=mid", "model must be one of"),
    ("loss=ce", "loss must be one of"),
    ("size=huge", "size must be one of"),
    ("bins=3", "unknown preset argument"),
  ],
)
def test_config_errors(arg, match):
  with pytest.raises(common.ConfigError, match=match):
    ds_sidenet.get_config(arg)
