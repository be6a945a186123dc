r"""Paper 002 (Oluwafemi et al. 2019): DeepLab-v2 ResNet-101, depth as classification over 71 SID bins.

Usage::

  semdepth train --config configs/deeplab_sid.py:dataset=kitti_depth,size=paper --workdir runs/x \
    [--config.model_init.path=weights/resnet101_deeplab]
  semdepth train --config configs/deeplab_sid.py:model=regression,dataset=synthetic_city,size=tiny \
    --workdir runs/y

Preset arguments (``get_config('k=v,...')``):

* ``model``: ``sid`` (paper: ``deeplab_sid``, SID cross-entropy), ``regression`` (the same network with a
  one-channel head, L1 on metres: the classification-vs-regression baseline), ``log_regression`` (L1 on
  natural-log metres), ``seg`` (``deeplab_v2``, softmax cross-entropy), ``joint`` (depth bins + segmentation
  heads, the sum of both losses).
* ``dataset``: TFDS name; default ``kitti_depth`` (Eigen split) for the depth models and
  ``synthia_rand_cityscapes`` for ``seg`` / ``joint`` (KITTI's Eigen split has no labels).
* ``size``: ``paper`` (ResNet-101, 420x800 crops), ``small`` / ``tiny`` (reduced widths and depths of the
  same DeepLab-v2 structure on CPU; see below).
* ``steps``: if > 0, train this many batches instead of the preset's length.
* ``bins``: ``sid`` (default: SID over [1 m, 80 m], K = 71, DORN mid-point decoding), ``dorn_kitti`` /
  ``dorn_nyu`` (DORN's released decoders ``exp((l - 1 + 40) / 25)``, K = 71, and ``exp((l - 1) / 25 -
  0.36)``, K = 68: SID bins whose lower edge is that formula, decoded to the lower edge, with K + 1
  classes for the ordinal counts 0..K; ``semdepth_jax.depth_bins.dorn_released_bins``).

Paper hyper-parameters (``size=paper``; docs/model_spec.md §3.3, §7.2, §10):

* network: ResNet-101 with Caffe strides, ceil-mode stem pool, output stride 8, frozen BatchNorm, ASPP rates
  6/12/18/24 summed, logits bilinearly upsampled to the input (§3.1); K = 71 SID bins over [1 m, 80 m]
  (alpha UNSPECIFIED -> 1 m, §3.2), depth = DORN mid-point of the argmax bin (§3.2 (b)).
* loss: softmax cross-entropy over the bins, mean over valid pixels; no depth (0) and depth > 80 m ignored
  (§7.2; losses preset ``002_sid``).
* SGD momentum 0.9, lr 2.5e-4, poly decay power 0.9 per iteration, weight decay 5e-4 as an L2 term on the
  gradient (PyTorch ``SGD(weight_decay=...)``), 10x learning rate on the ASPP head
  (``optimizer.lr_multipliers``; KZ also uses 20x on the head's biases:
  ``--config.stages.train.optimizer.lr_multipliers="(('^aspp.*/bias$', 20.0), ('^aspp', 10.0))"``), batch 3,
  100K iterations.
* augmentation: Eigen et al. 2014 (§3.3): random scale s in [1, 1.5] with depth / s, in-plane rotation in
  [-5, 5] degrees (nearest labels / depth), random crop, horizontal flip, colour multiplier in [0.8, 1.2]^3.
* crop 420 x 800 ("images cropped to 420 x 800"). KITTI frames are about 375 x 1242, so a 420-row crop does
  not exist (§3.3: UNSPECIFIED). **Padding choice**: the stored frame is not resized (``augment.resize=None``;
  metric scale and the focal length stay those of the camera); after the random scale (rows 375 s >= 420
  for s >= 1.12) a frame still shorter than 420 rows is placed at a uniformly random vertical offset in the
  crop window and the rest is padded with black image, invalid depth (0) and ignored labels, so padding
  never enters the loss. SYNTHIA's 760 x 1280 frames always contain the crop. Alternative: DORN's 385 x 513
  crop (``--config.image_size="(385, 513)"``).
* ImageNet initialisation (``model_init``): ``semdepth convert-weights --arch resnet101_deeplab --src
  resnet101.pth --out W --preprocessing imagenet`` and ``--config.model_init.path=W`` (the prefix is
  ``backbone``; ``--config.model.preprocessing=imagenet`` for torchvision weights, whose BatchNorm
  statistics are then frozen as converted). Without it the network starts from random weights (offline).
* evaluation: the dataset's protocol (``kitti_garg`` for ``kitti_depth``: Garg crop, 1e-3 < y < 80 m,
  prediction clamped, per-image averages, §3.4 / §8.5) on the stored frames, one frame per batch on KITTI
  (frame sizes differ by recording date, and stored-size batches must share one). Caveat: the evaluation
  path resizes each frame to the model input (420 x 800) and back; a network trained on unresized crops is
  better evaluated at training scale with ``semdepth evaluate --tile`` (tiles of 375 x 800 pixels on a
  375-row frame, still stretched 12 % vertically to 420 rows).

**The small and tiny sizes use a fast recipe** that learns in minutes on a CPU (measured over seeds; README),
with the paper's target and loss (SID classes, cross-entropy) unchanged:

* the same DeepLab-v2 structure (Caffe bottlenecks, ceil pool, OS 8, ASPP summed, bilinear upsampling) at
  reduced widths / depths (``_BACKBONES``); ASPP rates scaled to the small feature maps (a 420 x 800 crop
  gives a 53 x 100 map at OS 8, a 48 x 80 one 6 x 10, where rates 12-24 would only see padding);
* BatchNorm trained (``bn='torch'``): the network starts from random weights, and a frozen BatchNorm with
  its initial statistics is the identity, i.e. no normalisation at all;
* Adam with a 5 % linear warm-up and cosine decay, gradient clipping at global norm 1, no head multiplier,
  no weight decay, batch 8; horizontal flips only.
"""

from __future__ import annotations

import math

import ml_collections

from configs import common
from semdepth_jax.data.meta import get_meta

MODELS = ("sid", "regression", "log_regression", "seg", "joint")
"""Values of the ``model=`` preset argument."""

_DEFAULTS = {"model": "sid", "dataset": "", "size": "paper", "steps": 0, "bins": "sid"}

SID_BINS = ("sid", 1.0, 80.0, 71)
"""Paper 002's bins (docs/model_spec.md §3.2): SID over [alpha, beta] = [1 m, 80 m], K = 71 classes."""

BIN_PRESETS = ("sid", "dorn_kitti", "dorn_nyu")
"""Values of the ``bins=`` preset argument."""


def bin_preset(name: str) -> tuple[tuple, str]:
  """``((kind, alpha, beta, num_bins), bin_value_mode)`` of a ``bins=`` preset (module docstring).

  Raises:
    ConfigError: unknown preset.
  """
  if name == "sid":
    return SID_BINS, "midpoint"
  if name not in BIN_PRESETS:
    raise common.ConfigError(
      f"configs/deeplab_sid.py: bins must be one of {', '.join(BIN_PRESETS)}, got {name!r}"
    )
  from semdepth_jax import depth_bins

  b = depth_bins.dorn_released_bins(name.split("_")[1])
  return (b.kind, b.alpha, b.beta, b.num_bins), "lower_edge"


IMAGE_SIZES = {"paper": (420, 800), "small": (96, 160), "tiny": (48, 80)}
"""Training crops (H, W): the paper's 420 x 800; CPU sizes with synthetic_city's aspect ratio."""

_BACKBONES = {
  "paper": {"name": "resnet101_deeplab"},
  "small": {
    "name": "resnet101_deeplab",
    "depths": (1, 2, 2, 1),
    "widths": (8, 16, 32, 32),
    "stem_width": 16,
    "bn": "torch",
  },
  "tiny": {
    "name": "resnet101_deeplab",
    "depths": (1, 1, 1, 1),
    "widths": (8, 8, 16, 16),
    "stem_width": 8,
    "bn": "torch",
  },
}
"""Backbone per size: ResNet-101 (paper) or the same Caffe / OS-8 structure at reduced widths and depths."""

_ASPP_RATES = {"paper": (6, 12, 18, 24), "small": (2, 4, 6, 8), "tiny": (1, 2, 3, 4)}
_STEPS = {"paper": 100_000, "small": 400, "tiny": 150}
_BATCH = {"paper": 3, "small": 8, "tiny": 8}
_FAST_LR = {"small": 1e-3, "tiny": 3e-3}


def default_dataset(model: str) -> str:
  """``kitti_depth`` for the depth models, ``synthia_rand_cityscapes`` for ``seg`` / ``joint``."""
  return "synthia_rand_cityscapes" if model in ("seg", "joint") else "kitti_depth"


def bins_kwargs(bins=SID_BINS) -> dict:
  """``(kind, alpha, beta, num_bins)`` as ``depth_bins.make_bins`` keyword arguments (loss terms)."""
  kind, alpha, beta, num_bins = bins
  return {"kind": kind, "alpha": float(alpha), "beta": float(beta), "num_bins": int(num_bins)}


def losses(model: str, bins=SID_BINS) -> dict:
  """Loss terms of ``model`` (``semdepth_jax.losses.build_loss``).

  ``sid``: SID cross-entropy over ``bins``, invalid depth and depth > min(beta, 80 m) ignored (preset
  ``002_sid``); ``regression`` / ``log_regression``: masked L1 on metres / natural-log metres over
  1e-3 < y < min(beta, 80 m);
  ``seg``: softmax cross-entropy (ignored labels masked); ``joint``: SID CE + softmax CE, weights 1.
  """
  beta = min(float(bins[2]), 80.0)  # paper 002 ignores depth beyond 80 m
  sid = {"type": "sid_ce", "bins": bins_kwargs(bins), "max_depth": beta}
  if model == "sid":
    return {"depth_cls": sid}
  if model in ("regression", "log_regression"):
    target = "metres" if model == "regression" else "log"
    return {"depth": {"type": "l1", "target": target, "mask_invalid": True, "max_depth": beta}}
  if model == "seg":
    return {"seg": {"type": "softmax_ce"}}
  return {"depth_cls": sid, "seg": {"type": "softmax_ce"}}


def model_config(
  model: str, size: str, dataset: str, bins: str = "sid"
) -> ml_collections.ConfigDict:
  """``config.model`` for ``model`` at ``size`` with the ``bins`` preset (see the module docstring)."""
  names = {
    "sid": "deeplab_sid",
    "regression": "deeplab_regression",
    "log_regression": "deeplab_regression",
    "seg": "deeplab_v2",
    "joint": "deeplab_sid",
  }
  cfg = {
    "name": names[model],
    "backbone": dict(_BACKBONES[size]),
    "aspp_rates": _ASPP_RATES[size],
    "preprocessing": "",
  }
  if model in ("sid", "joint"):
    edges, value_mode = bin_preset(bins)
    cfg.update(
      heads=("depth_bins", "seg") if model == "joint" else ("depth_bins",),
      depth_bins=edges,
      bin_decode="argmax",
      bin_value_mode=value_mode,
    )
  elif model in ("regression", "log_regression"):
    # The head starts at the data's typical depth (geometric mean of the visualisation range), not 0 m.
    near, far = get_meta(dataset).depth_vis_range
    cfg.update(
      depth_output="metres" if model == "regression" else "log",
      depth_prior=round(math.sqrt(near * far), 3),
    )
  return ml_collections.ConfigDict(cfg)


def optimizer(size: str) -> dict:
  """SGD of the paper (§3.3, §10) at ``paper``; the fast recipe's Adam at ``small`` / ``tiny``."""
  if size == "paper":
    return {
      "name": "sgd",
      "learning_rate": 2.5e-4,
      "momentum": 0.9,
      "weight_decay": 5e-4,
      "weight_decay_mode": "l2",
      "lr_multipliers": (("^aspp", 10.0),),
    }
  return {"name": "adam", "learning_rate": _FAST_LR[size], "grad_clip_norm": 1.0}


def schedule(size: str) -> dict:
  """DeepLab poly (power 0.9, every iteration) at ``paper``; cosine with a 5 % warm-up otherwise."""
  if size == "paper":
    return {"name": "poly", "power": 0.9}
  return {"name": "cosine", "warmup_fraction": 0.05}


def augment(size: str) -> dict:
  """Eigen et al. 2014 at ``paper`` (module docstring, padding choice); flips only at small / tiny."""
  if size == "paper":
    return {
      "resize": None,
      "scale": (1.0, 1.5),
      "rotate": 5.0,
      "flip": True,
      "jitter": {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "color": (0.8, 1.2)},
      "crop": "random",
    }
  return {"flip": True}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Builds the config of one paper-002 experiment (see the module docstring).

  Args:
    arg: ``'model=...,dataset=...,size=...,steps=N,bins=...'`` (all optional).

  Raises:
    ConfigError: unknown preset argument or value, or a ``seg`` / ``joint`` model on a dataset without
      segmentation labels.
  """
  args = common.parse_args(arg, _DEFAULTS, where="configs/deeplab_sid.py")
  model, size = args["model"], args["size"]
  if model not in MODELS:
    raise common.ConfigError(
      f"configs/deeplab_sid.py: model must be one of {', '.join(MODELS)}, got {model!r}"
    )
  dataset = args["dataset"] or default_dataset(model)
  meta = get_meta(dataset)
  if model in ("seg", "joint") and not meta.has_segmentation:
    raise common.ConfigError(
      f"configs/deeplab_sid.py: model={model} needs segmentation labels; dataset {dataset!r} has none "
      "(e.g. dataset=synthia_rand_cityscapes or synthetic_city)"
    )
  c = common.base_config()
  c.dataset = dataset
  c.image_size = IMAGE_SIZES[size]
  edges, _ = bin_preset(args["bins"])
  c.model = model_config(model, size, dataset, args["bins"])
  c.model_init.prefix = "backbone"
  c.augment = common.augment_config(**augment(size))
  fast = {} if size == "paper" else {"recalibrate_bn_batches": 0}
  c.stages = ml_collections.ConfigDict(
    {
      "train": common.stage_config(
        num_steps=_STEPS[size],
        batch_size=_BATCH[size],
        loss=losses(model, edges),
        optimizer=optimizer(size),
        schedule=schedule(size),
        **fast,
      )
    }
  )
  c.stage_order = ("train",)
  # KITTI's Eigen split and SYNTHIA have train / test only.
  c.eval.split = "validation" if "validation" in meta.splits else "test"
  if dataset.split("/")[0] == "kitti_depth":
    c.eval.batch_size = (
      1  # stored frame sizes differ by recording date (375 x 1242, 370 x 1226, ...)
    )
  if size == "paper":
    c.checkpoint.every_steps = 5000
    c.log_every_steps = 100
  else:
    c.eval.batch_size = 1 if dataset.split("/")[0] == "kitti_depth" else 8
    c.checkpoint.every_steps = 100
    c.log_every_steps = 10
  if args["steps"] > 0:
    common.set_steps(c, args["steps"])
  return c
