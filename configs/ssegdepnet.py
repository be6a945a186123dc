r"""Paper 000 (Valdez-Rodríguez et al. 2022): U-Net, SCRX, 3D CNN-S, 3D CNN-UP and SSegDep-Net.

Usage::

  semdepth train --config configs/ssegdepnet.py:model=cnn3d_up,dataset=replica,size=tiny,steps=300 \
    --workdir runs/x [--config.stages.train.optimizer.learning_rate=0.01 ...]

Preset arguments (``get_config('k=v,...')``):

* ``model``: ``unet | scrx_rgb | scrx_ohess | cnn3d_s | cnn3d_up | cnn3d_up_do | ssegdepnet``.
* ``dataset``: TFDS builder name (default ``synthetic_city``); classes and depth range from its meta info.
* ``size``: ``paper`` (paper widths, 192x320), ``small`` (reduced widths, 64x96; minutes on 2 CPU cores),
  ``tiny`` (tests).
* ``steps``: if > 0, every stage trains this many batches instead of the paper's epochs.

Paper hyper-parameters (docs/model_spec.md §1, §7.1, §10; Table 5 where code and paper differ):

====================  =========================================  =====  ===========  ===================
model                 optimiser                                  batch  length       loss
====================  =========================================  =====  ===========  ===================
U-Net                 Adam 1e-3 (Keras: eps 1e-7)                27     3 epochs     Keras BCE, 14 planes
SCRX (RGB)            SGD 1e-3, no momentum                      27     50 epochs    0.0005 * sum sq. err.
SCRX (RGB+OHESS)      SGD 1e-3                                   17     50 epochs    same
3D CNN-S              SGD 1e-3                                   10     50 epochs    same
3D CNN-UP (^do)       SGD 1e-3                                   10     50 epochs    same
SSegDep-Net           stage ``seg`` = U-Net row (only ``unet/`` trainable, ``stage='seg'``), then stage
                      ``depth`` = 3D CNN-UP row on ground-truth OHESS (only ``depth_net/`` trainable,
                      ``ohess_source='gt'``); optional stage ``joint`` (0 steps by default): softmax OHESS,
                      everything trainable, BCE + depth loss.
====================  ===========================================================================
The depth nets regress paper 000's inverted normalised depth ``1 - min(d / depth_norm, 1)`` with no pixel
masking, as the reference code does (§1.0, §7.1); ``depth_norm`` is the dataset's ``max_depth`` (80 m for
``synthetic_city``; R0's SYNTHIA-AL decode corresponds to ~256 m). Evaluation converts back to metres.
Paper batch sizes are kept at ``size=paper``; ``small``/``tiny`` use batch 8 (divisible by 8 devices).

**The small and tiny sizes use a recipe that converges in minutes** (``size=paper`` keeps everything above).
The paper's recipe needs its 50 epochs, and over a few hundred steps its outcome flips with the last bit of
a floating-point sum (the same seed gave abs_rel 0.51 on one x86-64 machine and 0.99 on another): plain SGD
on ``0.0005 * sum`` of squared errors of the inverted normalised target weighs a 4 m error the same at 5 m
and at 70 m, its ReLU head can die, and unmasked sky/invalid pixels are targets. The fast recipe, per
depth net:

* target: natural log of metres with a linear head (``depth_output='log'``), masked L1 over valid pixels
  (``losses`` term ``l1`` with ``target='log'``), i.e. relative error, the quantity abs_rel / delta1 measure;
* optimiser: Adam 1e-3 (Keras eps), gradient clipping at global norm 1, cosine decay with a 5 % linear
  warm-up (``schedule.warmup_fraction``), so the last steps average out instead of jumping;
* horizontal-flip augmentation (``augment.flip``), which also makes flip TTA consistent;
* the U-Net trains with softmax cross-entropy (ignored pixels masked) instead of 14 independent Keras BCE
  planes, and SSegDep-Net's inference builds OHESS from its argmax (``ohess_mode='argmax'``);
* the log head starts at the dataset's typical depth (``depth_prior``), Adam's peak rate is 1e-3 at small
  and 3e-3 at tiny (the U-Net: 3e-3 at both);
* 3D CNN-UP upsamples by nearest neighbour + convolution (``conv_transpose_impl='resize_conv'``; Odena et
  al. 2016) instead of strided transposed convolutions, whose uneven overlap printed a checkerboard;
* precise-BN statistics at each stage end (``recalibrate_bn_batches``), as before.

Measured over seeds (``benchmarks/quickstart_seeds.py``, ``benchmarks/preset_seeds.py``; README).
"""

from __future__ import annotations

import math

import ml_collections
from ml_collections import config_dict

from configs import common
from semdepth_jax.data.meta import get_meta

MODELS = ("unet", "scrx_rgb", "scrx_ohess", "cnn3d_s", "cnn3d_up", "cnn3d_up_do", "ssegdepnet")
"""Values of the ``model=`` preset argument."""

IMAGE_SIZES = {"paper": (192, 320), "small": (64, 96), "tiny": (32, 48)}
"""Training resolution (H, W) per size preset (paper 000 resizes to 192x320, model_spec §1.0)."""

_DEFAULTS = {"model": "ssegdepnet", "dataset": "synthetic_city", "size": "paper", "steps": 0}

# Network widths per size preset (paper values from docs/model_spec.md §1.1-1.4).
_WIDTHS = {
  "paper": {
    "unet": 64,
    "scrx": ((128, 64, 32, 16), (128, 63)),
    "cnn3d_s": (64, 64, 128),
    "cnn3d_up": ((64, 64, 64), 64, (64, 64)),
  },
  "small": {
    "unet": 8,
    "scrx": ((16, 8, 8, 4), (16, 7)),
    "cnn3d_s": (8, 8, 16),
    "cnn3d_up": ((8, 8, 8), 8, (8, 8)),
  },
  "tiny": {
    "unet": 4,
    "scrx": ((8, 4, 4, 2), (8, 3)),
    "cnn3d_s": (4, 4, 8),
    "cnn3d_up": ((4, 4, 4), 4, (4, 4)),
  },
}
# (batch, epochs) per model at size=paper (Table 5 / code, docs/model_spec.md §10).
_PAPER_SCHEDULE = {
  "unet": (27, 3.0),
  "scrx_rgb": (27, 50.0),
  "scrx_ohess": (17, 50.0),
  "cnn3d_s": (10, 50.0),
  "cnn3d_up": (10, 50.0),
  "cnn3d_up_do": (10, 50.0),
}
# Default lengths at the reduced sizes (batches); `steps=N` replaces them. Each learns with the fast recipe
# (module docstring) within this length, measured over seeds.
_SMALL_STEPS = {"small": 400, "tiny": 150}
# The U-Net (preset `unet` and SSegDep-Net's `seg` stage) at tiny: 150 steps left seed 1 of 3 below the
# majority class's pixel accuracy on Replica (0.212 vs 0.392); 300 steps beat it on every seed of 5 with
# margin (pixel_acc 0.711-0.797, miou 0.084-0.129 vs 0.023; `python benchmarks/preset_seeds.py --models unet
# --sizes tiny --datasets replica --seeds 5`).
_SEG_STEPS = {"small": 400, "tiny": 300}
_SMALL_BATCH = 8
# Peak Adam learning rate of the fast recipe (tiny nets over 150 steps need a larger one). The U-Net's
# softmax cross-entropy takes 3e-3 at small too (chosen on a one-seed screen of 1e-3 vs 3e-3 with
# benchmarks/preset_seeds.py --models unet --sizes small); with it the quickstart reaches mIoU
# 0.354 +- 0.009 over 5 seeds (benchmarks/quickstart_seeds.py --seeds 5; README).
_FAST_LR = {"small": 1e-3, "tiny": 3e-3}
_FAST_SEG_LR = {"small": 3e-3, "tiny": 3e-3}
# Precise-BN batches at each stage end: short runs with Keras' BN momentum 0.99 otherwise evaluate with
# running statistics that still remember their initial values (configs/common.py, stage_config).
_RECALIBRATE_BN = {"paper": 0, "small": 20, "tiny": 2}


def _max_depth(dataset: str) -> float:
  return float(get_meta(dataset).max_depth or 80.0)


def unet_loss(dataset: str, size: str = "paper") -> dict:
  """Paper 000 U-Net loss: Keras BCE on one-hot planes with Keras' clip (model_spec §1.1, §7.1).

  Small / tiny (fast recipe): softmax cross-entropy with ignored pixels masked; 14 independent sigmoid
  planes learn the class competition far more slowly than a softmax.

  On the SSegDep-Net label set (class 0 = "Miscellaneous", e.g. ``synthetic_city``) ignored pixels become
  plane 0 as in R0 (losses preset ``000_unet``); on other datasets class 0 is a real class, so ignored
  pixels are masked out instead.
  """
  if size != "paper":
    return {"seg": {"type": "softmax_ce"}}
  names = get_meta(dataset).class_names
  mode = "plane0" if names and names[0] == "Miscellaneous" else "mask"
  return {"seg": {"type": "bce_onehot", "ignore_mode": mode, "keras_clip": True}}


def depth_loss(depth_norm: float, size: str = "paper") -> dict:
  """Paper 000 depth loss (code): ``0.0005 * sum (yhat - y)^2`` on inverted normalised depth, unmasked.

  ``size`` small / tiny: the fast recipe's masked L1 on log depth (module docstring).
  """
  if size != "paper":
    return {"depth": {"type": "l1", "target": "log", "mask_invalid": True}}
  return {
    "depth": {
      "type": "l2_sum",
      "target": "inverted_normalised",
      "depth_norm": float(depth_norm),
      "mask_invalid": False,
    }
  }


def adam_keras(size: str = "paper", fast_lr: dict[str, float] | None = None) -> dict:
  """Keras ``adam`` defaults: lr 1e-3, betas 0.9/0.999, eps 1e-7 (docs/model_spec.md §1.1).

  Small / tiny add gradient clipping at global norm 1 and take their peak rate from ``fast_lr`` (size ->
  rate; default the depth nets' ``_FAST_LR``) (fast recipe).
  """
  opt = {"name": "adam", "learning_rate": 1e-3, "eps": 1e-7}
  if size != "paper":
    opt["grad_clip_norm"] = 1.0
    opt["learning_rate"] = (fast_lr or _FAST_LR)[size]
  return opt


def seg_optimizer(size: str) -> dict:
  """The U-Net's optimiser: Keras Adam (paper), with the fast recipe's larger peak rate at small / tiny."""
  return adam_keras(size, _FAST_SEG_LR)


def sgd_plain() -> dict:
  """Keras ``SGD(lr=0.001)``: no momentum, no decay (docs/model_spec.md §1.2-1.4)."""
  return {"name": "sgd", "learning_rate": 1e-3, "momentum": 0.0}


def depth_optimizer(size: str) -> dict:
  """The depth nets' optimiser: the paper's plain SGD, or the fast recipe's Adam at small / tiny."""
  return sgd_plain() if size == "paper" else adam_keras(size)


def schedule(size: str) -> dict:
  """Constant (paper); cosine decay with a 5 % warm-up at small / tiny (fast recipe)."""
  if size == "paper":
    return {"name": "constant"}
  return {"name": "cosine", "warmup_fraction": 0.05}


def _depth_head(size: str, dataset: str, paper_activation: str) -> dict:
  """Depth-head attributes: paper 000's inverted normalised target (paper) or log depth (fast recipe).

  The log head starts at the dataset's typical depth (``depth_prior``: the geometric mean of its
  ``depth_vis_range``), not at 1 m, which a short run would spend its first hundred steps walking away from.
  """
  if size == "paper":
    return {
      "final_activation": paper_activation,
      "depth_output": "inverted_normalised",
      "depth_norm": _max_depth(dataset),
    }
  near, far = get_meta(dataset).depth_vis_range
  return {
    "final_activation": "linear",
    "depth_output": "log",
    "depth_prior": round(math.sqrt(near * far), 3),
  }


def _model_config(model: str, size: str, dataset: str) -> ml_collections.ConfigDict:
  w = _WIDTHS[size]
  ohess = config_dict.placeholder(tuple)
  # Fast recipe: nearest-neighbour upsampling + conv in 3D CNN-UP (no checkerboard); the paper's deconvs.
  up_impl = "depth_to_space" if size == "paper" else "resize_conv"
  if model == "unet":
    return ml_collections.ConfigDict(
      {"name": "unet", "base_width": w["unet"], "dropout_rate": 0.05}
    )
  if model in ("scrx_rgb", "scrx_ohess"):
    widths, refine = w["scrx"]
    return ml_collections.ConfigDict(
      {
        "name": "scrx",
        "use_ohess": model == "scrx_ohess",
        "ohess_classes": ohess,
        "widths": widths,
        "refine_widths": refine,
        **_depth_head(size, dataset, "sigmoid"),
      }
    )
  if model == "cnn3d_s":
    return ml_collections.ConfigDict(
      {
        "name": "cnn3d_s",
        "ohess_classes": ohess,
        "widths": w["cnn3d_s"],
        **_depth_head(size, dataset, "sigmoid"),
      }
    )
  widths, bottleneck, up = w["cnn3d_up"]
  if model in ("cnn3d_up", "cnn3d_up_do"):
    return ml_collections.ConfigDict(
      {
        "name": "cnn3d_up",
        "ohess_classes": ohess,
        "widths": widths,
        "bottleneck_width": bottleneck,
        "up_widths": up,
        "dropout_rate": 0.5 if model == "cnn3d_up_do" else 0.0,
        "conv_transpose_impl": up_impl,
        **_depth_head(size, dataset, "relu"),
      }
    )
  return ml_collections.ConfigDict(
    {
      "name": "ssegdepnet",
      "ohess_classes": ohess,
      "ohess_source": "unet",
      # Paper: per-class sigmoid > 0.5 (BCE-trained planes); fast recipe: one-hot of the softmax argmax.
      "ohess_mode": "threshold" if size == "paper" else "argmax",
      "unet": {"base_width": w["unet"], "dropout_rate": 0.05},
      "depth_net": {
        "widths": widths,
        "bottleneck_width": bottleneck,
        "up_widths": up,
        "dropout_rate": 0.0,
        "conv_transpose_impl": up_impl,
      },
      **_depth_head(size, dataset, "relu"),
    }
  )


def _length(model_key: str, size: str) -> dict:
  if size == "paper":
    batch, epochs = _PAPER_SCHEDULE[model_key]
    return {"batch_size": batch, "num_epochs": epochs}
  return {
    "batch_size": _SMALL_BATCH,
    "num_steps": (_SEG_STEPS if model_key == "unet" else _SMALL_STEPS)[size],
    "recalibrate_bn_batches": _RECALIBRATE_BN[size],
  }


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Builds the config of one paper-000 experiment (see the module docstring).

  Args:
    arg: ``'model=...,dataset=...,size=...,steps=N'`` (all optional).

  Raises:
    ConfigError: unknown preset argument or value.
  """
  args = common.parse_args(arg, _DEFAULTS, where="configs/ssegdepnet.py")
  model, size, dataset = args["model"], args["size"], args["dataset"]
  if model not in MODELS:
    raise common.ConfigError(
      f"configs/ssegdepnet.py: model must be one of {', '.join(MODELS)}, got {model!r}"
    )
  c = common.base_config()
  c.dataset = dataset
  c.image_size = IMAGE_SIZES[size]
  depth_norm = _max_depth(dataset)
  c.model = _model_config(model, size, dataset)
  if size != "paper":
    c.augment.flip = True  # fast recipe (module docstring)

  if model == "unet":
    stages = {
      "train": common.stage_config(
        **_length("unet", size),
        loss=unet_loss(dataset, size),
        optimizer=seg_optimizer(size),
        schedule=schedule(size),
      )
    }
  elif model != "ssegdepnet":
    stages = {
      "train": common.stage_config(
        **_length(model, size),
        loss=depth_loss(depth_norm, size),
        optimizer=depth_optimizer(size),
        schedule=schedule(size),
      )
    }
  else:
    joint_loss = {**unet_loss(dataset, size), **depth_loss(depth_norm, size)}
    stages = {
      "seg": common.stage_config(
        **_length("unet", size),
        trainable=r"^unet/",
        loss=unet_loss(dataset, size),
        model={"stage": "seg"},
        optimizer=seg_optimizer(size),
        schedule=schedule(size),
      ),
      "depth": common.stage_config(
        **_length("cnn3d_up", size),
        trainable=r"^depth_net/",
        loss=depth_loss(depth_norm, size),
        model={"ohess_source": "gt"},
        optimizer=depth_optimizer(size),
        schedule=schedule(size),
      ),
      # Optional end-to-end fine-tuning (not in the paper): enable with
      # --config.stages.joint.num_steps=N.
      "joint": common.stage_config(
        num_steps=0,
        batch_size=_length("cnn3d_up", size)["batch_size"],
        recalibrate_bn_batches=_RECALIBRATE_BN[size],
        loss=joint_loss,
        model={"ohess_source": "unet", "ohess_mode": "softmax"},
        optimizer={"name": "adam", "learning_rate": 1e-4, "eps": 1e-7},
      ),
    }
  c.stages = ml_collections.ConfigDict(stages)
  c.stage_order = tuple(stages)
  if size != "paper":
    c.eval.batch_size = 8
    c.checkpoint.every_steps = 100
    c.log_every_steps = 10
  if args["steps"] > 0:
    common.set_steps(c, args["steps"])
  return c
