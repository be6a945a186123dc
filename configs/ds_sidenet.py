r"""Paper 004 (Ren et al.): DS-SIDENet, low / high depth range, the coarse router, Table 6 loss ablations.

Usage::

  semdepth train --config configs/ds_sidenet.py:model=low,loss=soft_reg,dataset=replica,size=tiny \
    --workdir runs/x

Preset arguments (``get_config('k=v,...')``):

* ``model``: ``low`` (NYU / ScanNet network, default dataset ``scannet``), ``high`` (KITTI network, default
  ``kitti_depth``), ``coarse`` (the stage-1 router of docs/model_spec.md §5.4 (b): the low-range network
  trained on a mixture of indoor and outdoor sets, ``train_mixture``; at ``paper`` ScanNet + KITTI, at
  ``small`` / ``tiny`` replica + synthetic_city, with at least ``COARSE_MIN_WIDTH`` channels per layer and
  photometric jitter).
* ``loss`` (paper Table 6): ``soft_reg`` (default: Eq. 3, smooth-L1 soft classification + L1 regression,
  w1 = w2 = 1, test-time soft expectation of the classification branch), ``soft`` (soft-cls branch only),
  ``hard`` (cross-entropy on the bin index, classification branch only, argmax decoding), ``reg``
  (regression branch only, L1 in metres).
* ``dataset``: TFDS builder name (default per model, see above).
* ``size``: ``paper`` (paper widths and input: ScanNet 240x320, KITTI zero-padded 384x1248), ``small``
  (widths / 8, 96x128), ``tiny`` (widths / 16, 64x96; tests).
* ``epoch_size``: training examples per epoch at ``size=paper`` (0 = the value in ``_EPOCH_SIZE`` for the
  dataset); sets the paper schedule's length (15 epochs) and its decay step (every 5 epochs).
* ``steps``: if > 0, train this many batches instead.

Bins (docs/model_spec.md §5.3, §7.5; alpha / beta / K UNSPECIFIED -> DORN values): low range log10 bins over
0.7-10 m with K = 68 (69 classes); high range 1-80 m, K = 71; the coarse router 0.7-80 m, K = 80 (our choice:
it must cover both ranges).

**Paper optimiser** (``size=paper``): all UNSPECIFIED in the paper; we use the field convention of this
encoder-decoder family (sparse-to-dense ``utils.py``, docs/model_spec.md §5.4), flagged as such: SGD momentum
0.9, lr 0.01, weight decay 1e-4, lr x0.1 every 5 epochs, 15 epochs, batch 8.

**The small and tiny sizes use a fast recipe that converges in minutes on CPU** (``size=paper`` keeps the
above): Adam (peak 1e-3 at small, 3e-3 at tiny), gradient clipping at global norm 1, cosine decay with a 5 %
warm-up, horizontal flips, precise-BN statistics at the end, and the regression branch starts at the
dataset's typical depth (``depth_prior``, geometric mean of its ``depth_vis_range``). The losses and the
network are the paper's (at reduced widths).
"""

from __future__ import annotations

import math

import ml_collections

from configs import common
from semdepth_jax.data.meta import get_meta

MODELS = ("low", "high", "coarse")
"""Values of the ``model=`` preset argument."""

LOSSES = ("soft_reg", "soft", "hard", "reg")
"""Values of the ``loss=`` preset argument (paper Table 6)."""

IMAGE_SIZES = {
  "low": {"paper": (240, 320), "small": (96, 128), "tiny": (64, 96)},
  "high": {"paper": (384, 1248), "small": (96, 320), "tiny": (64, 160)},
}
"""Training resolution (H, W) per range and size (paper §5.4: ScanNet 320x240, KITTI padded 1248x384)."""
IMAGE_SIZES["coarse"] = IMAGE_SIZES["low"]

WIDTH_DIVISOR = {"paper": 1, "small": 8, "tiny": 16}
"""Every channel count of Tables 1-2 is divided by this."""

SAM_K = {"paper": 16, "small": 8, "tiny": 4}
"""Largest dilation of an AM module (UNSPECIFIED; 16 at 1/4 resolution, docs/model_spec.md §5.2)."""

BINS = {
  "low": ("log10", 0.7, 10.0, 68),
  "high": ("log10", 1.0, 80.0, 71),
  "coarse": ("log10", 0.7, 80.0, 80),
}
"""log10 bins ``(kind, alpha, beta, K)`` per model (module docstring)."""

DEFAULT_DATASET = {"low": "scannet", "high": "kitti_depth", "coarse": "scannet"}
MIXTURE = {
  "paper": (("scannet", 1.0), ("kitti_depth", 1.0)),
  "small": (("replica", 1.0), ("synthetic_city", 1.0)),
  "tiny": (("replica", 1.0), ("synthetic_city", 1.0)),
}
"""The coarse router's training mixture (indoor, outdoor) per size."""

COARSE_MIN_WIDTH = 8
"""Fewest channels per layer of the coarse router at ``small`` / ``tiny`` (``DSSIDENet.min_width``).

At width divisor 16 the decoder ends in 2- and 1-channel layers (a one-channel ReLU feeds the output);
trained as the router (600 steps, regression branch, without jitter, outdoor member synthetic_city/tiny),
1 of 3 seeds collapsed to a constant depth map (2.27 m everywhere: every image routed low). With the floor at
8 and photometric jitter no seed of 3 collapsed and every seed routed Replica, KITTI and CamVid correctly
(``python benchmarks/coarse_router_accuracy.py --size tiny --seeds 3 --steps 600 --loss reg``). The low /
high presets keep the plain divided widths (their Table 6 measurements were made with them)."""

_EPOCH_SIZE = {"nyu_depth_v2_labeled": 795}
_DEFAULT_EPOCH_SIZE = 1000  # placeholder when the dataset is not listed: pass epoch_size=N.
_PAPER_EPOCHS, _DECAY_EPOCHS, _PAPER_BATCH = 15, 5, 8
_FAST_STEPS = {"small": 400, "tiny": 150}
_FAST_LR = {"small": 1e-3, "tiny": 3e-3}
_RECALIBRATE_BN = {"paper": 0, "small": 20, "tiny": 4}
_SMALL_BATCH = 8

_DEFAULTS = {
  "model": "low",
  "loss": "soft_reg",
  "dataset": "",
  "size": "paper",
  "epoch_size": 0,
  "steps": 0,
}


def loss_config(loss: str, bins: tuple) -> dict:
  """The ``build_loss`` spec of a Table 6 row (docs/model_spec.md §7.5).

  Raises:
    ConfigError: unknown ``loss``.
  """
  b = {"kind": bins[0], "alpha": bins[1], "beta": bins[2], "num_bins": bins[3]}
  cls = {"depth_cls": {"type": "soft_cls", "bins": b}}
  reg = {"depth_reg": {"type": "l1"}}
  if loss == "soft_reg":
    return {**cls, **reg}
  if loss == "soft":
    return cls
  if loss == "hard":
    return {"depth_cls": {"type": "sid_ce", "bins": b}}
  if loss == "reg":
    return reg
  raise common.ConfigError(f"configs/ds_sidenet.py: loss must be one of {LOSSES}, got {loss!r}")


def model_config(model: str, loss: str, size: str, dataset: str) -> ml_collections.ConfigDict:
  """Model attributes of ``semdepth_jax.models.ds_sidenet.DSSIDENet`` for a preset."""
  branches = {"soft_reg": ("cls", "reg"), "soft": ("cls",), "hard": ("cls",), "reg": ("reg",)}[loss]
  near, far = get_meta(dataset).depth_vis_range
  return ml_collections.ConfigDict(
    {
      "name": "ds_sidenet",
      "variant": "high" if model == "high" else "low",
      "branches": branches,
      "width_divisor": WIDTH_DIVISOR[size],
      "min_width": COARSE_MIN_WIDTH if (model == "coarse" and size != "paper") else 1,
      "residual": False,
      "upproj_impl": "fast",
      "use_skip": True,
      "use_rgb": True,
      "sam_k": SAM_K[size],
      "depth_prior": 0.0 if size == "paper" else round(math.sqrt(near * far), 3),
      "depth_output": "metres" if loss == "reg" else "bins",
      "depth_bins": BINS[model],
      "bin_decode": "argmax" if loss == "hard" else "expectation",
    }
  )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Builds the config of one paper-004 experiment (see the module docstring).

  Raises:
    ConfigError: unknown preset argument or value.
  """
  where = "configs/ds_sidenet.py"
  args = common.parse_args(arg, _DEFAULTS, where=where)
  model, loss, size = args["model"], args["loss"], args["size"]
  if model not in MODELS:
    raise common.ConfigError(f"{where}: model must be one of {', '.join(MODELS)}, got {model!r}")
  if loss not in LOSSES:
    raise common.ConfigError(f"{where}: loss must be one of {', '.join(LOSSES)}, got {loss!r}")
  dataset = args["dataset"] or (
    MIXTURE[size][0][0] if model == "coarse" else DEFAULT_DATASET[model]
  )
  c = common.base_config()
  c.dataset = dataset
  c.image_size = IMAGE_SIZES[model][size]
  if model == "coarse":
    c.train_mixture = MIXTURE[size]
  c.model = model_config(model, loss, size, dataset)
  if size == "paper":
    n = args["epoch_size"] or _EPOCH_SIZE.get(dataset, _DEFAULT_EPOCH_SIZE)
    per_epoch = math.ceil(n / _PAPER_BATCH)
    train = common.stage_config(
      num_steps=_PAPER_EPOCHS * per_epoch,
      batch_size=_PAPER_BATCH,
      loss=loss_config(loss, BINS[model]),
      # S2D convention (UNSPECIFIED in the paper; module docstring).
      optimizer={
        "name": "sgd",
        "learning_rate": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "weight_decay_mode": "l2",
      },
      schedule={"name": "step", "decay_every": _DECAY_EPOCHS * per_epoch, "decay_factor": 0.1},
    )
  else:
    c.augment.flip = True
    c.augment.jitter = model == "coarse"
    train = common.stage_config(
      num_steps=_FAST_STEPS[size],
      batch_size=_SMALL_BATCH,
      recalibrate_bn_batches=_RECALIBRATE_BN[size],
      loss=loss_config(loss, BINS[model]),
      optimizer={"name": "adam", "learning_rate": _FAST_LR[size], "grad_clip_norm": 1.0},
      schedule={"name": "cosine", "warmup_fraction": 0.05},
    )
    c.eval.batch_size = 8
    c.checkpoint.every_steps = 100
    c.log_every_steps = 10
  c.stages = ml_collections.ConfigDict({"train": train})
  c.stage_order = ("train",)
  if args["steps"] > 0:
    common.set_steps(c, args["steps"])
  return c
