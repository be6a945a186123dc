"""Every config file and preset loads, is locked and consistent; unknown keys are errors."""

import glob
import os
import textwrap

import jax
import jax.numpy as jnp
import pytest

from configs import common, ssegdepnet
from semdepth_jax.models import get_model
from semdepth_jax.train import config_utils, loop, optim

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SSEG = os.path.join(REPO, "configs", "ssegdepnet.py")


def _load(arg="", overrides=()):
  return config_utils.load_config(f"{SSEG}:{arg}" if arg else SSEG, list(overrides))


@pytest.mark.parametrize("size", common.SIZES)
@pytest.mark.parametrize("model", ssegdepnet.MODELS)
def test_every_preset_loads_and_builds(model, size):
  cfg = _load(f"model={model},size={size}")
  assert cfg.is_locked
  loop.check_consumers(cfg)
  assert tuple(cfg.image_size) == ssegdepnet.IMAGE_SIZES[size]
  for name in cfg.stage_order:
    assert cfg.stages[name].batch_size % 8 == 0 or size == "paper"
  with pytest.raises(AttributeError):
    cfg.not_a_key = 1


def test_every_config_file_loads():
  files = [
    f for f in glob.glob(os.path.join(REPO, "configs", "*.py")) if not f.endswith("__init__.py")
  ]
  files = [f for f in files if os.path.basename(f) != "common.py"]
  assert files
  for f in files:
    cfg = config_utils.load_config(f)
    loop.check_consumers(cfg)


def test_paper_hyperparameters():
  unet = _load("model=unet")
  st = unet.stages.train
  assert (st.optimizer.name, st.optimizer.learning_rate, st.optimizer.eps) == ("adam", 1e-3, 1e-7)
  assert (st.batch_size, st.num_epochs, st.num_steps) == (27, 3.0, 0)
  assert st.loss.seg.type == "bce_onehot"
  up = _load("model=cnn3d_up").stages.train
  assert (up.optimizer.name, up.optimizer.learning_rate, up.optimizer.momentum) == (
    "sgd",
    1e-3,
    0.0,
  )
  assert (up.batch_size, up.num_epochs) == (10, 50.0)
  assert up.loss.depth.type == "l2_sum" and not up.loss.depth.mask_invalid
  assert up.loss.depth.target == "inverted_normalised"
  assert _load("model=scrx_ohess").stages.train.batch_size == 17
  assert _load("model=scrx_rgb").model.use_ohess is False
  assert _load("model=cnn3d_up_do").model.dropout_rate == 0.5
  assert _load("model=cnn3d_s").model.widths == (64, 64, 128)


def test_ssegdepnet_two_stages():
  cfg = _load("model=ssegdepnet")
  assert cfg.stage_order == ("seg", "depth", "joint")
  seg, depth, joint = (cfg.stages[n] for n in cfg.stage_order)
  assert (seg.trainable, seg.model.stage, seg.optimizer.name) == ("^unet/", "seg", "adam")
  assert (depth.trainable, depth.model.ohess_source, depth.optimizer.name) == (
    "^depth_net/",
    "gt",
    "sgd",
  )
  assert joint.num_steps == 0 and joint.num_epochs == 0 and joint.trainable == ""
  assert joint.model.ohess_mode == "softmax"
  assert set(joint.loss.keys()) == {"seg", "depth"}
  # steps=N changes the active stages only.
  short = _load("model=ssegdepnet,steps=7")
  assert [short.stages[n].num_steps for n in short.stage_order] == [7, 7, 0]
  assert short.stages.seg.num_epochs == 0.0
  # The optional joint stage is enabled by an override.
  on = _load("model=ssegdepnet,steps=7", ["--config.stages.joint.num_steps=3"])
  assert on.stages.joint.num_steps == 3


def test_trainable_patterns_partition_the_ssegdepnet_parameters():
  cfg = _load("model=ssegdepnet,size=tiny")
  kw = loop.model_kwargs(cfg)
  model = get_model(kw.pop("name"), **kw)
  h, w = cfg.image_size
  variables = jax.eval_shape(
    lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, h, w, 3)), jnp.zeros((1, h, w), jnp.int32)
    )
  )
  params = variables["params"]
  seg = jax.tree.leaves(optim.path_mask(params, cfg.stages.seg.trainable))
  dep = jax.tree.leaves(optim.path_mask(params, cfg.stages.depth.trainable))
  assert any(seg) and any(dep)
  assert all(a != b for a, b in zip(seg, dep, strict=True))


def test_dataset_argument_sets_classes_and_depth_norm():
  cfg = _load("model=cnn3d_up,dataset=replica,size=paper,steps=300")
  assert cfg.dataset == "replica"
  assert loop.resolved_num_classes(cfg) == 101
  assert cfg.stages.train.loss.depth.depth_norm == 10.0
  assert cfg.model.depth_norm == 10.0  # the model declares the units its decode converts from
  assert loop.depth_norm_of(cfg) == 10.0
  assert cfg.stages.train.num_steps == 300
  # The fast recipe (small / tiny): log depth from the dataset's typical depth, masked L1 on log depth.
  tiny = _load("model=cnn3d_up,dataset=replica,size=tiny")
  assert (tiny.model.depth_output, tiny.model.final_activation) == ("log", "linear")
  assert tiny.model.depth_prior == pytest.approx((0.3 * 6.0) ** 0.5, abs=1e-3)  # replica vis range
  assert dict(tiny.stages.train.loss.depth) == {"type": "l1", "target": "log", "mask_invalid": True}
  assert tiny.stages.train.schedule.name == "cosine" and tiny.augment.flip
  assert loop.depth_norm_of(tiny) is None
  city = _load("model=cnn3d_up")
  assert loop.resolved_num_classes(city) == 14 and loop.depth_norm_of(city) == 80.0
  forced = _load("model=cnn3d_up", ["--config.num_classes=5"])
  assert loop.resolved_num_classes(forced) == 5


def test_overrides_are_typed():
  cfg = _load(
    "model=cnn3d_up,size=tiny",
    [
      "--config.stages.train.optimizer.learning_rate=0.01",
      "--config.model.ohess_classes=(1, 2, 3)",
      "--config.image_size=(64, 96)",
      "--config.augment.scale=(1.0, 1.2)",
      "--config.compute_dtype=bfloat16",
      "config.seed=4",
    ],
  )
  assert cfg.stages.train.optimizer.learning_rate == 0.01
  assert tuple(cfg.model.ohess_classes) == (1, 2, 3)
  assert tuple(cfg.image_size) == (64, 96)
  assert tuple(cfg.augment.scale) == (1.0, 1.2)
  assert cfg.compute_dtype == "bfloat16" and cfg.seed == 4


@pytest.mark.parametrize(
  "arg,overrides,match",
  [
    ("modle=unet", (), "unknown preset argument 'modle'"),
    ("size=huge", (), "size must be one of"),
    ("model=resnet", (), "model must be one of"),
    ("steps=many", (), "expected int"),
    ("", ("--config.optimizer.learning_rate=1",), r"unknown config key config\.optimizer"),
    ("", ("--config.stages.seg.learning_rate=1",), r"config\.stages\.seg has: batch_size"),
    ("", ("--config.seed=abc",), "bad override value"),
    ("", ("--seed=1",), "must have the form --config.key=value"),
    ("", ("--config.compute_dtype=float16",), "compute_dtype"),
    ("", ("--config.cpu_conv=mkl",), r"config.cpu_conv must be ynn or eigen, got .mkl."),
    (
      "",
      ("--config.pointwise_conv=gemm",),
      r"config.pointwise_conv must be conv or dot, got .gemm.",
    ),
    (
      "",
      ("--config.volume_conv=im2col",),
      r"config.volume_conv must be conv or planes, got .im2col.",
    ),
    ("", ("--config.stage_order=('seg',)",), "stage_order"),
  ],
)
def test_config_errors(arg, overrides, match):
  with pytest.raises(config_utils.ConfigError, match=match):
    _load(arg, overrides)


def test_missing_config_file():
  with pytest.raises(FileNotFoundError, match="nope.py"):
    config_utils.load_config("configs/nope.py")


def test_unknown_keys_written_in_a_config_file_are_rejected(tmp_path):
  path = tmp_path / "typo.py"
  path.write_text(
    textwrap.dedent(
      """
      from configs import common

      def get_config(arg=None):
        c = common.base_config()
        c.stages.train.optimzer = common.optimizer_config()
        return c
      """
    )
  )
  with pytest.raises(config_utils.ConfigError, match=r"config\.stages\.train\.optimzer"):
    config_utils.load_config(str(path))


def test_consumers_reject_unknown_model_and_loss_keys():
  cfg = _load("model=cnn3d_up,size=tiny", ["--config.stages.train.loss.depth.target=metre"])
  with pytest.raises(ValueError, match="config.stages.train"):
    loop.check_consumers(cfg)
  bad_model = common.base_config()
  bad_model.model.name = "unet"
  bad_model.model.base_widht = 4
  bad_model.stages.train.loss = {"seg": {"type": "bce_onehot"}}
  with pytest.raises(TypeError, match="base_widht"):
    loop.check_consumers(bad_model)


def test_json_round_trip_and_diff(tmp_path):
  cfg = _load("model=ssegdepnet,size=tiny")
  config_utils.save_json(cfg, tmp_path / "c.json")
  d = config_utils.load_json(tmp_path / "c.json")
  assert d["stages"]["depth"]["model"]["ohess_source"] == "gt"
  assert d["model"]["ohess_classes"] is None
  other = dict(d, seed=3)
  assert config_utils.diff(d, other) == ["config.seed"]


def test_parse_preset_args_types():
  got = config_utils.parse_preset_args(
    "a=3,b=0.5,c=true,d=x", {"a": 0, "b": 0.0, "c": False, "d": "", "e": 1}
  )
  assert got == {"a": 3, "b": 0.5, "c": True, "d": "x", "e": 1}


def test_unet_ignore_mode_follows_the_label_set():
  assert _load("model=unet").stages.train.loss.seg.ignore_mode == "plane0"
  assert _load("model=unet,dataset=replica").stages.train.loss.seg.ignore_mode == "mask"


def test_schema_has_no_paper_constants_and_evals_entries_are_checked():
  from semdepth_jax.train import schema

  base = schema.base_config()
  assert base.model.name == "" and base.image_size is None  # a config file must choose them
  c = schema.base_config()
  c.image_size = (8, 8)
  with pytest.raises(config_utils.ConfigError, match="config.model.name is empty"):
    config_utils.validate_config(c)
  c.model.name = "unet"
  c.evals["kitti"] = schema.eval_entry(split="test", dataset="kitti_depth")
  config_utils.validate_config(c)
  c.evals["bad"] = schema.eval_entry(split="test")
  c.evals.bad.protocl = "x"
  with pytest.raises(config_utils.ConfigError, match=r"config\.evals\.bad\.protocl"):
    config_utils.validate_config(c)


def test_library_validates_configs_without_importing_the_configs_folder():
  import subprocess
  import sys

  code = (
    "import sys\n"
    "from semdepth_jax.train import config_utils, schema\n"
    "c = schema.base_config(); c.model.name = 'unet'; c.image_size = (8, 8)\n"
    "config_utils.validate_config(c)\n"
    "assert 'configs' not in sys.modules and 'configs.common' not in sys.modules, sorted(sys.modules)\n"
  )
  subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def test_train_mixture_entries_are_validated():
  cfg = _load(
    "model=cnn3d_up,size=tiny",
    ["--config.train_mixture=(('replica', 1.0), ('synthetic_city', 3.0))"],
  )
  assert loop.train_mixture(cfg) == (("replica", 1.0), ("synthetic_city", 3.0))
  bad = _load("model=cnn3d_up,size=tiny", ["--config.train_mixture=(('replica', 0.0),)"])
  with pytest.raises(ValueError, match="weight of 'replica' must be > 0"):
    loop.train_mixture(bad)
