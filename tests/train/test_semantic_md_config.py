"""configs/semantic_md.py: one preset per row of paper 003's Tables 1 and 2, the paper recipe, the switches."""

import math
import os

import jax
import jax.numpy as jnp
import pytest

from configs import semantic_md
from semdepth_jax.models import semantic_md as smd
from semdepth_jax.train import config_utils, loop, optim

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATH = os.path.join(REPO, "configs", "semantic_md.py")


def _load(arg="", overrides=()):
  return config_utils.load_config(f"{PATH}:{arg}" if arg else PATH, list(overrides))


@pytest.mark.parametrize("size", ["paper", "small", "tiny"])
def test_every_row_of_tables_1_and_2_loads_and_builds(size):
  assert len(semantic_md.TABLE1) == 10 and len(semantic_md.TABLE2) == 12
  for model in semantic_md.MODELS:
    for dataset in ("hypersim", "replica/nyu40"):
      cfg = _load(f"model={model},size={size},dataset={dataset}")
      assert cfg.is_locked and tuple(cfg.image_size) == semantic_md.IMAGE_SIZES[size]
      loop.check_consumers(cfg)


def test_paper_recipe():
  cfg = _load("model=3head")
  st = cfg.stages.train
  assert (st.optimizer.name, st.optimizer.learning_rate, st.optimizer.weight_decay) == (
    "adam",
    1e-3,
    0,
  )
  assert (st.batch_size, st.num_epochs, st.num_steps) == (32, 15.0, 0)
  assert (cfg.augment.resize, cfg.augment.crop, cfg.augment.flip) == ("cover", "center", False)
  assert not cfg.augment.jitter and cfg.augment.scale is None
  assert tuple(cfg.image_size) == (256, 256)
  # Cosine 1e-3 -> 1e-6 stepped once per epoch of ceil(19399 / 32) = 607 batches (R3, model_spec §4.6).
  sched = optim.make_schedule(st.schedule, 1e-3, 15 * 607)
  for epoch in (0, 1, 7, 14):
    want = 1e-6 + (1e-3 - 1e-6) * (1 + math.cos(math.pi * epoch / 15)) / 2
    for t in (epoch * 607, epoch * 607 + 606):
      assert float(sched(t)) == pytest.approx(want, rel=1e-5)
  loss = st.loss.to_dict()
  assert loss["depth"]["type"] == "l1" and loss["depth"]["target"] == "normalised"
  assert loss["depth"]["depth_norm"] == 15.0 and loss["depth"]["max_depth"] == math.inf
  assert loss["seg"] == {"type": "softmax_ce", "weight": 0.07, "normalization": "all"}
  assert loss["contour"] == {"type": "contour_ce", "weight": 0.1}
  m = cfg.model
  assert m.tasks == ("depth", "semantic", "contour") and m.depth_activation == "linear"
  assert m.encoder.name == "efficientnet_b4" and tuple(m.decoder_channels) == (256, 128, 64, 32, 16)
  assert _load("model=baseline_berhu").stages.train.loss.depth.type == "berhu"
  assert _load("model=2head_sobel").stages.train.loss.sobel.weight == 1.0
  assert _load("model=2head_ftl_ce").stages.train.loss.seg.type == "ftl_ce"
  assert _load("model=deeplab").model.head_kernel == 1
  assert _load("model=enc_resnet50").model.encoder.name == "resnet50"
  one_hot = _load("model=1hot20").model
  assert tuple(one_hot.onehot_classes) == smd.top_classes(20)
  assert one_hot.semantic_source.source == "gt" and one_hot.depth_activation == "sigmoid"
  # Other datasets than HyperSim: the schedule decays per batch (the epoch length is not known).
  assert _load("dataset=replica/nyu40").stages.train.schedule.decay_every == 0


def test_semantic_source_switch():
  cfg = _load("model=1hot40,semantics=predicted,seg_workdir=runs/seg")
  assert cfg.model.semantic_source.source == "predicted"
  assert cfg.model.semantic_source.workdir == "runs/seg"
  cfg = _load("model=semconv", ["--config.model.semantic_source.source=predicted"])
  assert cfg.model.semantic_source.source == "predicted"
  with pytest.raises(config_utils.ConfigError, match="needs seg_workdir"):
    _load("model=1hot40,semantics=predicted")
  with pytest.raises(config_utils.ConfigError, match="reads no semantic input"):
    _load("model=2head,semantics=predicted,seg_workdir=x")
  with pytest.raises(config_utils.ConfigError, match="has 14 classes"):
    _load("model=1hot3,dataset=synthetic_city")
  with pytest.raises(config_utils.ConfigError, match="model must be one of"):
    _load("model=4head")


@pytest.mark.parametrize("model", ["1hot3", "semconv", "3head", "deeplab_2head", "enc_resnet50"])
def test_tiny_presets_initialise(model):
  cfg = _load(f"model={model},size=tiny,dataset=replica/nyu40")
  shapes = loop.abstract_variables(cfg)
  assert shapes["params"] and shapes["batch_stats"]
  m = loop.build_model(cfg)
  h, w = cfg.image_size
  out = jax.eval_shape(
    lambda v, x, lab: m.apply(v, x, lab),
    shapes,
    jax.ShapeDtypeStruct((2, h, w, 3), jnp.float32),
    jax.ShapeDtypeStruct((2, h, w), jnp.int32),
  )
  assert out["depth"].shape == (2, h, w, 1)


def test_model_init_loads_the_encoder_and_keeps_the_extended_stem_bit_exact(tmp_path):
  """config.model_init (prefix 'encoder') fills the pretrained slices; the new stem slices stay fresh.

  Runs the loop's own merge (``loop.load_model_init`` -> ``convert.merge_pretrained``) on the fresh
  variables of the tiny 1hot-3 preset.
  """
  import numpy as np

  from semdepth_jax.models.backbones import efficientnet
  from semdepth_jax.weights import convert

  args = "model=1hot3,size=tiny,dataset=replica/nyu40,steps=1"
  # Fresh variables of the preset's shapes (values from a host RNG: only the merge is under test).
  rng = np.random.default_rng(0)
  fresh = jax.tree.map(
    lambda a: rng.standard_normal(a.shape).astype(a.dtype), loop.abstract_variables(_load(args))
  )
  enc = efficientnet.EfficientNet(
    variant="b0", width_multiplier=0.25, depth_multiplier=0.25, num_classes=0
  )
  pretrained = enc.init(jax.random.key(123), jnp.zeros((1, 32, 32, 3)))
  pretrained = jax.tree.map(lambda a: np.asarray(a) + 0.25, dict(pretrained))  # unlike any init
  convert.save_variables(pretrained, tmp_path / "b0", architecture="efficientnet_b0")
  cfg = _load(
    args, [f"--config.model_init.path={tmp_path / 'b0'}", "--config.model_init.prefix=encoder"]
  )
  got = loop.load_model_init(cfg.model_init, fresh)
  for collection in ("params", "batch_stats"):
    for (path, want), (_, have) in zip(
      jax.tree_util.tree_leaves_with_path(pretrained[collection]),
      jax.tree_util.tree_leaves_with_path(got[collection]["encoder"]),
      strict=True,
    ):
      np.testing.assert_array_equal(np.asarray(have), want, err_msg=jax.tree_util.keystr(path))
  np.testing.assert_array_equal(
    got["params"]["encoder"]["conv_stem"]["kernel"], pretrained["params"]["conv_stem"]["kernel"]
  )
  for name in ("stem_extra", "decoder_depth", "head_depth"):
    jax.tree.map(np.testing.assert_array_equal, got["params"][name], fresh["params"][name])
