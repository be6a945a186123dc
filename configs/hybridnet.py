r"""Paper 001 (Lin et al. 2019): HybridNet A1 / A2 and the single-task DeepLab-ASPP and DepthNet baselines.

Usage::

  semdepth train --config configs/hybridnet.py:model=a2,dataset=cityscapes,size=paper --workdir runs/a2
  semdepth train --config configs/hybridnet.py:model=a1,dataset=replica,size=tiny --workdir runs/x
  semdepth evaluate --workdir runs/a2 --tile --tile_size 321,321 --tile_combine max \
      --protocol p1_hybridnet   # the paper's Cityscapes protocol (paper_eval_settings)

Preset arguments (``get_config('k=v,...')``):

* ``model``: ``a1 | a2 | deeplab_vgg | depthnet`` (registered ``hybridnet_a1``, ``hybridnet_a2``,
  ``deeplab_vgg``, ``depthnet``; ``semdepth_jax.models.hybridnet``).
* ``dataset``: ``cityscapes | sun_rgbd | nyu_depth_v2_labeled | replica | synthetic_city`` (any built TFDS
  name works; classes and depth range come from its meta info). Default ``synthetic_city``.
* ``size``: ``paper`` (the paper's widths and hyper-parameters), ``small`` / ``tiny`` (reduced widths and the
  fast recipe below, for CPUs and tests).
* ``steps``: if > 0, every stage trains this many batches.
* ``vgg_init``: a converted VGG16 directory (``semdepth convert-weights --arch vgg16_deeplab --src
  vgg16-397923af.pth --out DIR [--preprocessing imagenet]``) loaded into ``backbone`` through
  ``config.model_init``; the model's ``preprocessing`` follows the one recorded with the weights.
* ``eval_on``: further datasets to evaluate on, ``+``-separated (e.g. ``eval_on=sun_rgbd+nyu_depth_v2_labeled``):
  one ``config.evals`` entry each (named after the dataset; its ``validation`` split, else ``test``;
  ``p1_hybridnet`` for the paper's datasets at ``size=paper``). Depth metrics are comparable across
  datasets; segmentation metrics only where the label sets agree (the model keeps its training classes).

Paper hyper-parameters (``size=paper``; docs/model_spec.md §2.5, §7.3, §10):

* SGD, momentum 0.9, learning rate 2.5e-6 with DeepLab's "poly" decay (power 0.9), weight decay 0.005 as
  Caffe's L2 term, batch 7, 100 K iterations, random 320 x 320 crops of the stored images (no resizing;
  'cover' for datasets stored smaller than that), horizontal mirroring (``augment.vflip`` adds the
  ambiguous vertical flip, model_spec §2.5). Caffe learning-rate multipliers are unstated: DeepLab's are used
  (fc8 x10 / x20, other biases x2, no decay on biases).
* ``L_H = 1000 L_S + L_Dabs + L_Dmvn`` (losses preset ``001_hybrid``: softmax CE normalised over valid
  pixels, Caffe Euclidean and MVN-Euclidean losses on metres, invalid depth masked, per-task masking by
  ``has_depth`` / ``has_segmentation``). Depth in metres with a linear head; the random parts drawn from
  N(0, 0.1) (``init_std``, the paper's RNG read as a std).
* A1: one stage ``joint``. A2: stage ``global`` (pre-trains the global depth net on depth at its 41 x 41
  output, ``L_Dabs + L_Dmvn``, only ``global_net/`` trainable; it stands in for Li et al.'s released model,
  which the paper loads and which is not available), then ``joint`` (everything).
* DeepLab-ASPP alone: stage ``train`` with ``1000 L_S`` (the same effective rate as in L_H). DepthNet alone:
  stages ``global`` (Euclidean + MVN on the 41 x 41 global output), ``gradient`` (Euclidean on
  ``|dD/dx|, |dD/dy|`` at 41 x 41, loss term ``gradient``), ``refine`` (Euclidean + MVN at 81 x 81), each
  training only its part, as Li et al. train the three parts separately. Stage lengths other than the
  hybrids' 100 K are not given by the paper; 100 K each is used.
* Evaluation: Cityscapes ``validation`` (its test labels are not public), SUN RGB-D ``test``, protocol
  ``p1_hybridnet`` (Table 3 metrics) on those two. The paper's test protocol (§2.6) is
  :func:`paper_eval_settings`: Cityscapes full images tiled into 321 x 321 crops with minimum overlap
  (4 x 7 tiles), depth averaged and class scores combined by their maximum on overlaps; SUN RGB-D images
  downsampled to the input size. Run it with ``semdepth_jax.evaluate.Evaluation(model, config,
  paper_eval_settings(dataset), mesh=...)`` or the ``semdepth evaluate`` line above; the training-time
  evaluation resizes whole images.
* The global net's FC is the literal 41 x 41 x 256 -> 1024 (440.7 M weights); ``--config.model.global_net.
  fc_grid=(6,6)`` selects the reduced option (``semdepth_jax.models.hybridnet`` docstring).

**The small and tiny sizes use a fast recipe** (``size=paper`` keeps everything above): the paper's recipe
needs 100 K iterations from ImageNet / DeepLab / Li et al. initialisations that a CPU run does not have
(its rate 2.5e-6 on Euclidean sums of metres moves a randomly initialised network very little in a few
hundred steps). Small / tiny instead use

* depth as natural log of metres (``depth_output='log'``, head offset by the dataset's typical depth
  ``depth_prior``), ``L_Dabs`` as masked L1 on log depth and ``L_Dmvn`` on log depth scaled to a per-pixel
  mean (weight ``2 / (h * w)`` of the depth output grid), segmentation CE with weight 1;
* Adam (peak 1e-3 small, 2e-3 tiny), gradient clipping at global norm 1, cosine decay with a 5 % warm-up,
  horizontal flips, He initialisation, ImageNet input normalisation, ASPP dropout 0.1;
* input sizes of the form 8k + 1 (small 97 x 145, tiny 65 x 97) so the stride-8 / stride-4 grids line up
  exactly as 41 / 81 do at 321; ASPP rates scaled to the smaller grid (small 2/4/6/8, tiny 1/2/3/4);
* batch 8, lengths: small 400 joint steps, tiny 200 (A2's global pre-training and DepthNet's stages as
  given in ``_FAST_STEPS``).

Measured over seeds: ``benchmarks/hybridnet_compare.py`` (README).
"""

from __future__ import annotations

import json
import math
import os

import ml_collections
from ml_collections.config_dict import placeholder

from configs import common
from semdepth_jax.data.meta import get_meta

MODELS = ("a1", "a2", "deeplab_vgg", "depthnet")
"""Values of the ``model=`` preset argument."""

REGISTERED = {
  "a1": "hybridnet_a1",
  "a2": "hybridnet_a2",
  "deeplab_vgg": "deeplab_vgg",
  "depthnet": "depthnet",
}
"""``model=`` value -> registry name (``semdepth_jax.models.MODELS``)."""

PAPER_DATASETS = ("cityscapes", "sun_rgbd")
"""Datasets of the paper's tables (their evaluation uses the ``p1_hybridnet`` protocol)."""

_DEFAULTS = {
  "model": "a2",
  "dataset": "synthetic_city",
  "size": "paper",
  "steps": 0,
  "vgg_init": "",
  "eval_on": "",
}

IMAGE_SIZES = {"paper": (320, 320), "small": (97, 145), "tiny": (65, 97)}
"""Training crops (H, W) per size: the paper's 320 x 320 (-> 41 / 81 grids); 8k + 1 sizes otherwise."""

_VGG = {
  "paper": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
  "small": ((8, 8), (16, 16), (32, 32, 32), (64, 64, 64), (64, 64, 64)),
  "tiny": ((4, 4), (8, 8), (16, 16, 16), (32, 32, 32), (32, 32, 32)),
}
_ASPP = {  # width, rates, dropout
  "paper": (1024, (6, 12, 18, 24), 0.5),
  "small": (64, (2, 4, 6, 8), 0.1),
  "tiny": (32, (1, 2, 3, 4), 0.1),
}
_TRUNK = {  # global / gradient trunk widths, FC hidden
  "paper": ((96, 256, 384, 384, 256), 1024),
  "small": ((16, 32, 48, 48, 32), 128),
  "tiny": ((8, 16, 24, 24, 16), 64),
}
_REFINE = {  # conv1 width, conv2..4 widths
  "paper": (96, (64, 64, 64)),
  "small": (16, (16, 16, 16)),
  "tiny": (8, (8, 8, 8)),
}

PAPER_STEPS = 100_000
"""Iterations of every stage at ``size=paper`` (paper §4.3: 100 K for A1 / A2)."""

_FAST_STEPS = {
  # (joint / single-stage steps, global pre-training steps, DepthNet gradient-stage steps)
  "small": (400, 200, 200),
  "tiny": (200, 100, 100),
}
_FAST_LR = {"small": 1e-3, "tiny": 2e-3}
_FAST_BATCH = 8
PAPER_BATCH = 7

DEEPLAB_LR_MULTIPLIERS = (
  (r"^aspp/fc8_\d+/bias$", 20.0),
  (r"^aspp/fc8_\d+/kernel$", 10.0),
  (r"/bias$", 2.0),
)
"""DeepLab-v2 prototxt ``lr_mult`` (fc8 weights x10, biases x20; other biases x2), model_spec §2.5."""


def grid_sizes(image_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
  """Sizes of the stride-8 (segmentation / global depth) and stride-4 (refined depth) output grids.

  Caffe's 3x3 / 2 pad-1 ceil pools give ``ceil((n - 1) / 2) + 1`` per pool (three for VGG16, 321 or 320 ->
  41); the refining net's conv1 (stride 2, pad k // 2) and one pool give the stride-4 grid (-> 81).
  """

  def pool(n):
    return -(-(n - 1) // 2) + 1

  s8 = tuple(pool(pool(pool(int(n)))) for n in image_size)
  s4 = tuple(pool((int(n) - 1) // 2 + 1) for n in image_size)
  return s8, s4


PAPER_TILE = (321, 321)
"""Paper 001's Cityscapes test tiles (§2.6)."""


def paper_eval_settings(dataset: str, split: str | None = None, **overrides):
  """The paper's test protocol as ``semdepth_jax.evaluate.EvalSettings`` (model_spec §2.6, §8.3).

  Cityscapes: ``mode='tile'`` with 321 x 321 tiles placed by ``tiling.tile_grid`` (``ceil(1024 / 321) = 4``
  rows x ``ceil(2048 / 321) = 7`` columns, evenly spaced), depth averaged and class scores combined by their
  maximum on overlaps ("take the label with higher score"), split ``validation``. SUN RGB-D: the whole image
  downsampled to the network input (``mode='resize'``), split ``test``. Both with protocol
  ``p1_hybridnet``; other datasets: ``resize`` with their default protocol.

  Args:
    dataset: TFDS name.
    split: override the split.
    **overrides: further ``EvalSettings`` fields (``batch_size``, ``max_batches``, ...).
  """
  from semdepth_jax import evaluate

  base = dataset.split("/")[0]
  kw: dict = {"dataset": dataset}
  if base == "cityscapes":
    kw.update(split="validation", mode="tile", tile_size=PAPER_TILE, tile_combine="max")
  else:
    splits = get_meta(dataset).splits
    kw.update(split="validation" if "validation" in splits else "test", mode="resize")
  if base in PAPER_DATASETS:
    kw["protocol"] = "p1_hybridnet"
  if split:
    kw["split"] = split
  kw.update(overrides)
  return evaluate.EvalSettings(**kw)


def _depth_prior(dataset: str) -> float:
  near, far = get_meta(dataset).depth_vis_range
  return round(math.sqrt(near * far), 3)


def _model_config(model: str, size: str, dataset: str) -> ml_collections.ConfigDict:
  name = REGISTERED[model]
  trunk, hidden = _TRUNK[size]
  c1, rw = _REFINE[size]
  width, rates, dropout = _ASPP[size]
  cfg: dict = {"name": name}
  if model != "depthnet":
    cfg["backbone"] = {"widths": _VGG[size]}
    cfg["aspp"] = {"width": width, "rates": rates, "dropout_rate": dropout}
  if model in ("a2", "depthnet"):
    # fc_grid None = the literal 41 x 41 x 256 -> 1024 FC; (g, g) = the reduced option.
    cfg["global_net"] = {"widths": trunk, "fc_hidden": hidden, "fc_grid": placeholder(tuple)}
  if model == "depthnet":
    cfg["gradient_net"] = {"widths": trunk}
  if model != "deeplab_vgg":
    cfg["refine"] = {"conv1_width": c1, "widths": rw}
    if size == "paper":
      cfg.update(depth_output="metres", final_activation="linear")
    else:
      cfg.update(depth_output="log", final_activation="linear", depth_prior=_depth_prior(dataset))
  if model in ("a1", "a2", "depthnet"):
    cfg["init_std"] = 0.1 if size == "paper" else placeholder(float)
  cfg["preprocessing"] = "caffe_bgr" if size == "paper" else "imagenet"
  return ml_collections.ConfigDict(cfg)


def optimizer(size: str) -> dict:
  """Paper: SGD 0.9, 2.5e-6, Caffe L2 decay 0.005, DeepLab multipliers. Fast: Adam + clipping."""
  if size == "paper":
    return {
      "name": "sgd",
      "learning_rate": 2.5e-6,
      "momentum": 0.9,
      "weight_decay": 0.005,
      "weight_decay_mode": "l2",
      "weight_decay_exclude": r"/bias$",
      "lr_multipliers": DEEPLAB_LR_MULTIPLIERS,
    }
  return {"name": "adam", "learning_rate": _FAST_LR[size], "grad_clip_norm": 1.0}


def schedule(size: str) -> dict:
  """Paper: DeepLab poly (power 0.9). Fast: cosine with a 5 % warm-up."""
  if size == "paper":
    return {"name": "poly", "power": 0.9}
  return {"name": "cosine", "warmup_fraction": 0.05}


def depth_terms(size: str, grid: tuple[int, int], output: str = "depth") -> dict:
  """``L_Dabs + L_Dmvn`` on ``output``: Caffe Euclidean pair on metres (paper) or the fast recipe's.

  Fast recipe: masked L1 on log depth, and MVN-Euclidean on log depth weighted ``2 / (h * w)`` so it is the
  mean squared difference of the normalised maps (in [0, 4]) instead of a sum over ``grid`` pixels.
  """
  if size == "paper":
    return {
      "depth_abs": {"type": "euclidean", "output": output},
      "depth_mvn": {"type": "mvn_euclidean", "output": output},
    }
  return {
    "depth_abs": {"type": "l1", "target": "log", "output": output},
    "depth_mvn": {
      "type": "mvn_euclidean",
      "target": "log",
      "output": output,
      "weight": 2.0 / (grid[0] * grid[1]),
    },
  }


def seg_terms(size: str) -> dict:
  """``alpha L_S``: softmax CE over valid pixels, alpha = 1000 (paper) or 1 (fast recipe)."""
  return {"seg": {"type": "softmax_ce", "weight": 1000.0 if size == "paper" else 1.0}}


def gradient_terms(size: str) -> dict:
  """DepthNet's gradient net: Euclidean on metres (paper) or L1 on log depth (fast recipe)."""
  if size == "paper":
    return {"gradient": {"type": "gradient", "reduction": "euclidean"}}
  return {"gradient": {"type": "gradient", "reduction": "l1", "target": "log"}}


def _stage(size: str, steps: int, loss: dict, **kwargs) -> ml_collections.ConfigDict:
  return common.stage_config(
    num_steps=steps,
    batch_size=PAPER_BATCH if size == "paper" else _FAST_BATCH,
    loss=loss,
    optimizer=optimizer(size),
    schedule=schedule(size),
    **kwargs,
  )


def _stages(model: str, size: str, image_size: tuple[int, int]) -> dict:
  s8, s4 = grid_sizes(image_size)
  if size == "paper":
    joint = global_steps = grad_steps = PAPER_STEPS
  else:
    joint, global_steps, grad_steps = _FAST_STEPS[size]
  global_loss = depth_terms(size, s8, output="aux/global_depth")
  if model == "deeplab_vgg":
    return {"train": _stage(size, joint, seg_terms(size))}
  if model == "a1":
    return {"joint": _stage(size, joint, {**seg_terms(size), **depth_terms(size, s4)})}
  if model == "a2":
    return {
      "global": _stage(
        size, global_steps, global_loss, trainable=r"^global_net/", model={"stage": "global"}
      ),
      "joint": _stage(size, joint, {**seg_terms(size), **depth_terms(size, s4)}),
    }
  return {
    "global": _stage(
      size, global_steps, global_loss, trainable=r"^global_net/", model={"stage": "global"}
    ),
    "gradient": _stage(
      size,
      grad_steps,
      gradient_terms(size),
      trainable=r"^gradient_net/",
      model={"stage": "gradient"},
    ),
    "refine": _stage(
      size, joint, depth_terms(size, s4), trainable=r"^refine_net/", model={"stage": "refine"}
    ),
  }


def _augment(config: ml_collections.ConfigDict, dataset: str, size: str) -> None:
  config.augment.flip = True
  if size == "paper":
    native = get_meta(dataset).native_size
    crop = IMAGE_SIZES["paper"]
    # The paper crops the stored images; datasets stored smaller than a crop are resized to cover it.
    config.augment.resize = None if min(native) >= max(crop) else "cover"


def _vgg_init(config: ml_collections.ConfigDict, path: str, model: str) -> None:
  if model == "depthnet":
    raise common.ConfigError(
      "configs/hybridnet.py: vgg_init needs a model with a VGG16 (not depthnet)"
    )
  meta_file = os.path.join(path, "metadata.json")
  if not os.path.isfile(meta_file):
    raise common.ConfigError(
      f"configs/hybridnet.py: vgg_init={path!r} has no metadata.json; convert the weights with "
      "`semdepth convert-weights --arch vgg16_deeplab --src FILE --out DIR`"
    )
  with open(meta_file, encoding="utf-8") as f:
    prep = json.load(f).get("preprocessing") or {}
  config.model_init.path = path
  config.model_init.prefix = "backbone"
  config.model.preprocessing = "caffe_bgr" if prep.get("channel_order") == "BGR" else "imagenet"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Builds the config of one paper-001 experiment (see the module docstring).

  Args:
    arg: ``'model=...,dataset=...,size=...,steps=N,vgg_init=DIR'`` (all optional).

  Raises:
    ConfigError: unknown preset argument or value, or a ``vgg_init`` directory without metadata.
  """
  args = common.parse_args(arg, _DEFAULTS, where="configs/hybridnet.py")
  model, size, dataset = args["model"], args["size"], args["dataset"]
  if model not in MODELS:
    raise common.ConfigError(
      f"configs/hybridnet.py: model must be one of {', '.join(MODELS)}, got {model!r}"
    )
  c = common.base_config()
  c.dataset = dataset
  c.image_size = IMAGE_SIZES[size]
  c.model = _model_config(model, size, dataset)
  _augment(c, dataset, size)
  stages = _stages(model, size, c.image_size)
  c.stages = ml_collections.ConfigDict(stages)
  c.stage_order = tuple(stages)
  meta = get_meta(dataset)
  if "validation" not in meta.splits and "test" in meta.splits:
    c.eval.split = "test"  # SUN RGB-D: train / test only.
  if size == "paper":
    c.checkpoint.every_steps = 5000
    c.log_every_steps = 100
    if dataset.split("/")[0] in PAPER_DATASETS:
      c.eval.protocol = "p1_hybridnet"
  else:
    c.eval.batch_size = 8
    c.checkpoint.every_steps = 100
    c.log_every_steps = 10
  if args["vgg_init"]:
    _vgg_init(c, args["vgg_init"], model)
  for name in filter(None, str(args["eval_on"]).split("+")):
    _add_eval(c, name, size)
  if args["steps"] > 0:
    common.set_steps(c, args["steps"])
  return c


def _add_eval(config: ml_collections.ConfigDict, dataset: str, size: str) -> None:
  """One ``config.evals`` entry for ``dataset`` (``eval_on``)."""
  try:
    splits = get_meta(dataset).splits
  except (KeyError, ValueError) as e:
    raise common.ConfigError(
      f"configs/hybridnet.py: eval_on dataset {dataset!r}: {e.args[0] if e.args else e}"
    ) from e
  split = "validation" if "validation" in splits else "test"
  paper = size == "paper" and dataset.split("/")[0] in PAPER_DATASETS
  config.evals[dataset.replace("/", "_")] = common.eval_entry(
    split=split, dataset=dataset, protocol="p1_hybridnet" if paper else ""
  )
