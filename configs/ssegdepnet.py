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

Paper hyper-parameters (model_spec §1, §7.1, §10; Table 5 where code and paper differ):

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
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from configs import common
from semdepth_jax.data.meta import get_meta

MODELS = ("unet", "scrx_rgb", "scrx_ohess", "cnn3d_s", "cnn3d_up", "cnn3d_up_do", "ssegdepnet")
"""Values of the ``model=`` preset argument."""

_DEFAULTS = {"model": "ssegdepnet", "dataset": "synthetic_city", "size": "paper", "steps": 0}

# Network widths per size preset (paper values from model_spec §1.1-1.4).
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
    "unet": 2,
    "scrx": ((4, 4, 2, 2), (4, 3)),
    "cnn3d_s": (2, 2, 4),
    "cnn3d_up": ((2, 2, 2), 2, (2, 2)),
  },
}
# (batch, epochs) per model at size=paper (Table 5 / code, model_spec §10).
_PAPER_SCHEDULE = {
  "unet": (27, 3.0),
  "scrx_rgb": (27, 50.0),
  "scrx_ohess": (17, 50.0),
  "cnn3d_s": (10, 50.0),
  "cnn3d_up": (10, 50.0),
  "cnn3d_up_do": (10, 50.0),
}
# Default lengths at the reduced sizes (batches); `steps=N` replaces them.
_SMALL_STEPS = {"small": 400, "tiny": 20}
_SMALL_BATCH = 8
# Precise-BN batches at each stage end: short runs with Keras' BN momentum 0.99 otherwise evaluate with
# running statistics that still remember their initial values (configs/common.py, stage_config).
_RECALIBRATE_BN = {"paper": 0, "small": 20, "tiny": 2}


def _max_depth(dataset: str) -> float:
  return float(get_meta(dataset).max_depth or 80.0)


def unet_loss(dataset: str) -> dict:
  """Paper 000 U-Net loss: Keras BCE on one-hot planes with Keras' clip (model_spec §1.1, §7.1).

  On the SSegDep-Net label set (class 0 = "Miscellaneous", e.g. ``synthetic_city``) ignored pixels become
  plane 0 as in R0 (losses preset ``000_unet``); on other datasets class 0 is a real class, so ignored
  pixels are masked out instead.
  """
  names = get_meta(dataset).class_names
  mode = "plane0" if names and names[0] == "Miscellaneous" else "mask"
  return {"seg": {"type": "bce_onehot", "ignore_mode": mode, "keras_clip": True}}


def depth_loss(depth_norm: float) -> dict:
  """Paper 000 depth loss (code): ``0.0005 * sum (yhat - y)^2`` on inverted normalised depth, unmasked."""
  return {
    "depth": {
      "type": "l2_sum",
      "target": "inverted_normalised",
      "depth_norm": float(depth_norm),
      "mask_invalid": False,
    }
  }


def adam_keras() -> dict:
  """Keras ``adam`` defaults: lr 1e-3, betas 0.9/0.999, eps 1e-7 (model_spec §1.1)."""
  return {"name": "adam", "learning_rate": 1e-3, "eps": 1e-7}


def sgd_plain() -> dict:
  """Keras ``SGD(lr=0.001)``: no momentum, no decay (model_spec §1.2-1.4)."""
  return {"name": "sgd", "learning_rate": 1e-3, "momentum": 0.0}


def _model_config(model: str, size: str) -> ml_collections.ConfigDict:
  w = _WIDTHS[size]
  ohess = config_dict.placeholder(tuple)
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
        "depth_output": "inverted_normalised",
      }
    )
  if model == "cnn3d_s":
    return ml_collections.ConfigDict(
      {
        "name": "cnn3d_s",
        "ohess_classes": ohess,
        "widths": w["cnn3d_s"],
        "final_activation": "sigmoid",
        "depth_output": "inverted_normalised",
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
        "final_activation": "relu",
        "depth_output": "inverted_normalised",
      }
    )
  return ml_collections.ConfigDict(
    {
      "name": "ssegdepnet",
      "ohess_classes": ohess,
      "ohess_source": "unet",
      "ohess_mode": "threshold",
      "unet_base_width": w["unet"],
      "unet_dropout_rate": 0.05,
      "depth_widths": widths,
      "depth_bottleneck_width": bottleneck,
      "depth_up_widths": up,
      "depth_dropout_rate": 0.0,
      "final_activation": "relu",
      "depth_output": "inverted_normalised",
    }
  )


def _length(model_key: str, size: str) -> dict:
  if size == "paper":
    batch, epochs = _PAPER_SCHEDULE[model_key]
    return {"batch_size": batch, "num_epochs": epochs}
  return {
    "batch_size": _SMALL_BATCH,
    "num_steps": _SMALL_STEPS[size],
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
  c.image_size = common.IMAGE_SIZES[size]
  c.model = _model_config(model, size)
  depth_norm = _max_depth(dataset)

  if model == "unet":
    stages = {
      "train": common.stage_config(
        **_length("unet", size), loss=unet_loss(dataset), optimizer=adam_keras()
      )
    }
  elif model != "ssegdepnet":
    stages = {
      "train": common.stage_config(
        **_length(model, size), loss=depth_loss(depth_norm), optimizer=sgd_plain()
      )
    }
  else:
    joint_loss = {**unet_loss(dataset), **depth_loss(depth_norm)}
    stages = {
      "seg": common.stage_config(
        **_length("unet", size),
        trainable=r"^unet/",
        loss=unet_loss(dataset),
        model={"stage": "seg"},
        optimizer=adam_keras(),
      ),
      "depth": common.stage_config(
        **_length("cnn3d_up", size),
        trainable=r"^depth_net/",
        loss=depth_loss(depth_norm),
        model={"ohess_source": "gt"},
        optimizer=sgd_plain(),
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
