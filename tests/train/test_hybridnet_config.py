"""configs/hybridnet.py: every preset loads and builds; paper hyper-parameters (model_spec §2.5, §7.3, §10)."""

import json
import os

import pytest

from configs import common, hybridnet
from semdepth_jax import losses
from semdepth_jax.train import config_utils, loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATH = os.path.join(REPO, "configs", "hybridnet.py")


def _load(arg="", overrides=()):
  return config_utils.load_config(f"{PATH}:{arg}" if arg else PATH, list(overrides))


@pytest.mark.parametrize("size", common.SIZES)
@pytest.mark.parametrize("model", hybridnet.MODELS)
def test_every_preset_loads_and_builds(model, size):
  for dataset in ("synthetic_city", "cityscapes", "sun_rgbd", "nyu_depth_v2_labeled", "replica"):
    cfg = _load(f"model={model},size={size},dataset={dataset}")
    assert cfg.is_locked
    loop.check_consumers(cfg)
    assert cfg.model.name == hybridnet.REGISTERED[model]
  assert cfg.eval.split == "validation"
  assert _load(f"model={model},size={size},dataset=sun_rgbd").eval.split == "test"


def test_paper_hyperparameters():
  """§2.5: SGD 0.9, lr 2.5e-6 poly 0.9, wd 0.005 (Caffe L2), batch 7, 100 K, 320 crops, mirroring."""
  cfg = _load("model=a1,size=paper,dataset=cityscapes")
  assert cfg.stage_order == ("joint",)
  st = cfg.stages.joint
  opt = st.optimizer
  assert (opt.name, opt.learning_rate, opt.momentum) == ("sgd", 2.5e-6, 0.9)
  assert (opt.weight_decay, opt.weight_decay_mode) == (0.005, "l2")
  assert (st.schedule.name, st.schedule.power) == ("poly", 0.9)
  assert (st.batch_size, st.num_steps) == (7, 100_000)
  assert tuple(cfg.image_size) == (320, 320)
  assert cfg.augment.flip and not cfg.augment.vflip and cfg.augment.resize is None
  # L_H = 1000 L_S + L_Dabs + L_Dmvn: the same terms as the losses preset 001_hybrid.
  preset = losses.PRESETS["001_hybrid"]
  loss = config_utils.to_dict(st.loss)
  assert {k: (v["type"], v.get("weight", 1.0)) for k, v in loss.items()} == {
    k: (v["type"], v.get("weight", 1.0)) for k, v in preset.items()
  }
  assert (cfg.model.depth_output, cfg.model.init_std, cfg.model.preprocessing) == (
    "metres",
    0.1,
    "caffe_bgr",
  )
  assert cfg.eval.protocol == "p1_hybridnet"
  # Datasets stored smaller than a 320 crop are resized to cover it (synthetic_city is 192 x 320).
  assert _load("model=a1,size=paper").augment.resize == "cover"


def test_a2_pretrains_its_global_net_then_trains_jointly():
  cfg = _load("model=a2,size=paper")
  assert cfg.stage_order == ("global", "joint")
  g = cfg.stages["global"]
  assert (g.trainable, g.model.stage, g.num_steps) == ("^global_net/", "global", 100_000)
  assert {t.output for t in g.loss.values()} == {"aux/global_depth"}
  assert cfg.stages.joint.trainable == "" and set(cfg.stages.joint.loss) == {
    "seg",
    "depth_abs",
    "depth_mvn",
  }


def test_depthnet_trains_its_three_parts_separately():
  cfg = _load("model=depthnet,size=paper")
  assert cfg.stage_order == ("global", "gradient", "refine")
  for name, part in zip(cfg.stage_order, ("global_net", "gradient_net", "refine_net"), strict=True):
    st = cfg.stages[name]
    assert st.trainable == f"^{part}/" and st.model.stage == name
  assert cfg.stages.gradient.loss.gradient.type == "gradient"
  assert "seg" not in cfg.stages.refine.loss
  seg_only = _load("model=deeplab_vgg,size=paper")
  assert (
    set(seg_only.stages.train.loss) == {"seg"} and seg_only.stages.train.loss.seg.weight == 1000
  )


def test_grid_sizes_by_hand():
  # 321 and 320: 161 -> 81 -> 41 (VGG pools); refine conv1 /2 -> 161 or 160, pool -> 81.
  assert hybridnet.grid_sizes((321, 320)) == ((41, 41), (81, 81))
  # 65: 33 -> 17 -> 9; refine 33 -> 17. 97: 49 -> 25 -> 13; refine 49 -> 25.
  assert hybridnet.grid_sizes((65, 97)) == ((9, 13), (17, 25))


def test_fast_recipe_mvn_weight_is_a_per_pixel_mean():
  cfg = _load("model=a1,size=tiny")
  _, (h, w) = hybridnet.grid_sizes(tuple(cfg.image_size))
  mvn = cfg.stages.joint.loss.depth_mvn
  assert mvn.weight == pytest.approx(2.0 / (h * w)) and mvn.target == "log"
  assert cfg.model.depth_output == "log" and cfg.model.depth_prior > 0
  assert cfg.stages.joint.optimizer.name == "adam"


def test_steps_argument_and_vgg_init(tmp_path):
  cfg = _load("model=a2,size=tiny,steps=7")
  assert [cfg.stages[n].num_steps for n in cfg.stage_order] == [7, 7]
  with pytest.raises(config_utils.ConfigError, match="has no metadata.json"):
    _load(f"model=a1,vgg_init={tmp_path}")
  (tmp_path / "metadata.json").write_text(
    json.dumps({"preprocessing": {"channel_order": "RGB", "mean": [0.485, 0.456, 0.406]}})
  )
  cfg = _load(f"model=a1,vgg_init={tmp_path}")
  assert (cfg.model_init.path, cfg.model_init.prefix) == (str(tmp_path), "backbone")
  assert cfg.model.preprocessing == "imagenet"
  with pytest.raises(config_utils.ConfigError, match="not depthnet"):
    _load(f"model=depthnet,vgg_init={tmp_path}")
  with pytest.raises(config_utils.ConfigError, match="model must be one of"):
    _load("model=a3")


def test_paper_eval_settings():
  """§2.6: Cityscapes tiled 321 x 321 (max score on overlaps), SUN RGB-D resized; p1_hybridnet."""
  city = hybridnet.paper_eval_settings("cityscapes")
  assert (city.split, city.mode, city.tile_size, city.tile_combine, city.protocol) == (
    "validation",
    "tile",
    (321, 321),
    "max",
    "p1_hybridnet",
  )
  sun = hybridnet.paper_eval_settings("sun_rgbd", batch_size=4)
  assert (sun.split, sun.mode, sun.protocol, sun.batch_size) == (
    "test",
    "resize",
    "p1_hybridnet",
    4,
  )
  other = hybridnet.paper_eval_settings("replica")
  assert (other.split, other.mode, other.protocol) == ("validation", "resize", None)
  assert city.folder("p1_hybridnet").endswith("tile321x321-max")


def test_eval_on_adds_named_evaluations():
  """Evaluation on datasets the model is not trained on: one config.evals entry per eval_on dataset."""
  cfg = _load("model=a1,dataset=replica,size=tiny,eval_on=sun_rgbd+nyu_depth_v2_labeled/13")
  assert sorted(cfg.evals) == ["nyu_depth_v2_labeled_13", "sun_rgbd"]
  assert (cfg.evals.sun_rgbd.dataset, cfg.evals.sun_rgbd.split) == ("sun_rgbd", "test")
  assert cfg.evals.nyu_depth_v2_labeled_13.dataset == "nyu_depth_v2_labeled/13"
  paper = _load("model=a2,dataset=cityscapes,size=paper,eval_on=sun_rgbd")
  assert paper.evals.sun_rgbd.protocol == "p1_hybridnet"
  assert not _load("model=a1").evals
  with pytest.raises(config_utils.ConfigError, match="eval_on dataset 'nope'"):
    _load("model=a1,eval_on=nope")
