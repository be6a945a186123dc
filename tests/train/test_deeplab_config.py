"""configs/deeplab_sid.py (paper 002): presets load, paper hyper-parameters, one set of bins, padding choice."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common, deeplab_sid
from semdepth_jax import losses
from semdepth_jax.data import transforms as tr
from semdepth_jax.train import config_utils, loop, optim

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(REPO, "configs", "deeplab_sid.py")


def _load(arg="", overrides=()):
  return config_utils.load_config(f"{CFG}:{arg}" if arg else CFG, list(overrides))


@pytest.mark.parametrize("size", common.SIZES)
@pytest.mark.parametrize("model", deeplab_sid.MODELS)
def test_every_preset_loads_and_builds(model, size):
  cfg = _load(f"model={model},size={size}")
  assert cfg.is_locked
  loop.check_consumers(cfg)
  assert tuple(cfg.image_size) == deeplab_sid.IMAGE_SIZES[size]
  assert cfg.eval.split in ("validation", "test")
  assert cfg.dataset == deeplab_sid.default_dataset(model)


def test_paper_hyperparameters():
  cfg = _load()
  assert (cfg.dataset, cfg.model.name, tuple(cfg.image_size)) == (
    "kitti_depth",
    "deeplab_sid",
    (420, 800),
  )
  st = cfg.stages.train
  opt = st.optimizer
  assert (opt.name, opt.learning_rate, opt.momentum, opt.weight_decay) == ("sgd", 2.5e-4, 0.9, 5e-4)
  assert opt.weight_decay_mode == "l2"
  assert tuple(tuple(r) for r in opt.lr_multipliers) == (("^aspp", 10.0),)
  assert (st.schedule.name, st.schedule.power, st.schedule.warmup_steps) == ("poly", 0.9, 0)
  assert (st.batch_size, st.num_steps) == (3, 100_000)
  assert st.loss.depth_cls.type == "sid_ce" and st.loss.depth_cls.max_depth == 80.0
  m = cfg.model
  assert tuple(m.aspp_rates) == (6, 12, 18, 24) and dict(m.backbone) == {
    "name": "resnet101_deeplab"
  }
  assert (m.bin_decode, m.bin_value_mode) == ("argmax", "midpoint")
  a = cfg.augment
  assert (a.resize, tuple(a.scale), a.rotate, a.flip, a.crop) == (
    None,
    (1.0, 1.5),
    5.0,
    True,
    "random",
  )
  assert tuple(a.jitter.color) == (0.8, 1.2) and a.jitter.brightness == 0.0
  assert cfg.model_init.prefix == "backbone"
  assert cfg.eval.split == "test"  # KITTI's Eigen split: train / test


@pytest.mark.parametrize("model", ["sid", "joint"])
def test_loss_and_model_use_the_same_bins(model):
  cfg = _load(f"model={model},size=tiny,dataset=synthetic_city")
  kind, alpha, beta, k = cfg.model.depth_bins
  assert dict(cfg.stages.train.loss.depth_cls.bins) == {
    "kind": kind,
    "alpha": alpha,
    "beta": beta,
    "num_bins": k,
  }
  # ... and they are the losses library's preset for paper 002.
  preset = losses.PRESETS["002_sid"]["depth_cls"]
  assert dict(cfg.stages.train.loss.depth_cls.bins) == preset["bins"]
  if model == "joint":
    assert tuple(cfg.model.heads) == ("depth_bins", "seg")
    assert cfg.stages.train.loss.seg.type == "softmax_ce"


def test_lr_multiplier_hits_exactly_the_aspp_heads():
  cfg = _load("model=joint,size=tiny,dataset=synthetic_city")
  model = loop.build_model(cfg)
  params = jax.eval_shape(
    lambda x: model.init(jax.random.key(0), x)["params"], jnp.zeros((1, 48, 80, 3))
  )
  mults = optim.leaf_multipliers(params, (("^aspp", 10.0),))
  flat = {"/".join(k.key for k in p): m for p, m in jax.tree_util.tree_leaves_with_path(mults)}
  assert {k.split("/")[0] for k, m in flat.items() if m == 10.0} == {"aspp_bins", "aspp_seg"}
  assert all(k.startswith("backbone/") for k, m in flat.items() if m == 1.0)


def test_seg_models_need_labels():
  with pytest.raises(config_utils.ConfigError, match="needs segmentation labels"):
    _load("model=joint,dataset=kitti_depth")
  with pytest.raises(config_utils.ConfigError, match="model must be one of"):
    _load("model=dorn")


def test_paper_padding_choice_on_a_kitti_sized_frame():
  # A 375 x 1242 frame (KITTI) through the paper's augmentation without scaling: the 420-row crop is padded
  # with black image, invalid depth and ignored labels; everything else stays aligned.
  rng = np.random.default_rng(0)
  ex = {
    "image": rng.integers(1, 255, (375, 1242, 3)).astype(np.uint8),
    "depth": rng.uniform(1, 80, (375, 1242)).astype(np.float32),
    "segmentation": rng.integers(0, 19, (375, 1242, 1)).astype(np.uint8),
  }
  aug = {**deeplab_sid.augment("paper"), "scale": None, "rotate": None, "jitter": False}
  out = tr.preprocess_train(ex, np.random.default_rng(1), image_size=(420, 800), augment=aug)
  assert out["image"].shape == (420, 800, 3)
  pad = out["segmentation"] == 255
  assert pad.sum() == 45 * 800  # 420 - 375 rows
  assert np.all(out["depth"][pad] == 0) and np.all(out["image"][pad] == 0)
  assert np.all(out["depth"][~pad] > 0)


@pytest.mark.parametrize(
  "preset,k,formula",
  [
    # K thresholds (2K output channels) -> ordinal counts 0..K = K + 1 classes.
    ("dorn_kitti", 72, lambda l: np.exp((l - 1 + 40) / 25)),  # DORN demo_kitti.py, K = 71
    ("dorn_nyu", 69, lambda l: np.exp((l - 1) / 25 - 0.36)),  # DORN demo_nyuv2.py, K = 68
  ],
)
def test_dorn_released_decoder_presets(preset, k, formula):
  cfg = _load(f"bins={preset},size=tiny,dataset=synthetic_city")
  model = loop.build_model(cfg)
  assert cfg.model.depth_bins[3] == k and cfg.stages.train.loss.depth_cls.bins.num_bins == k
  assert cfg.stages.train.loss.depth_cls.bins.alpha == cfg.model.depth_bins[1]
  logits = 50.0 * jax.nn.one_hot(jnp.arange(k), k)[:, None, None, :]
  got = np.asarray(model.decode({"depth_logits": logits})["depth"])[:, 0, 0]
  # The released decoders map the ordinal count l (thresholds passed, 0 .. K) to depth: class l.
  np.testing.assert_allclose(got, formula(np.arange(k, dtype=np.float64)), rtol=1e-5)
  with pytest.raises(config_utils.ConfigError, match="bins must be one of"):
    _load("bins=uniform")
