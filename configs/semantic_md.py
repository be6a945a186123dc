r"""Paper 003 (Charyyev et al., Semantic-MD): one preset per row of the paper's Tables 1 and 2.

Usage::

  semdepth train --config configs/semantic_md.py:model=1hot40,dataset=hypersim,size=paper --workdir runs/x \
    [--config.model_init.path=weights/efficientnet_b4]
  # predicted instead of ground-truth semantics (a trained run of model=seg, same label set):
  semdepth train --config configs/semantic_md.py:model=1hot40,semantics=predicted,seg_workdir=runs/seg ...

Preset arguments (``get_config('k=v,...')``):

* ``model``: a row of Table 1 (``baseline``, ``baseline_berhu``, ``concat``, ``1hot40``, ``1hot20``,
  ``1hot3``, ``semconv``, ``contour``, ``2head``, ``3head``) or Table 2 (``enc_resnet50``, ``enc_b2``,
  ``enc_b3``, ``enc_b4``, ``2head_dice``, ``2head_dice_ce``, ``2head_ftl_ce``, ``2head_sobel``,
  ``deeplab``, ``deeplab_1hot40``, ``deeplab_2head``, ``deeplab_2head_dice_ce``), or ``seg`` (R3's
  semantic-only U-Net: the segmentation model whose predictions feed ``semantics=predicted``).
* ``dataset``: a dataset with NYU-40 labels (``hypersim``, the paper's; ``replica/nyu40`` here); 1hot-N needs
  the 40 NYU-40 classes (top-N by HyperSim prevalence, docs/model_spec.md §4.3).
* ``size``: ``paper`` (EfficientNet-B4, decoder 256..16, 256x256), ``small`` / ``tiny`` (reduced
  EfficientNet-B0 and decoder for CPUs; see below).
* ``steps``: if > 0, train this many batches instead of the default length.
* ``semantics``: source of the multi-input models' semantic planes: ``gt`` (the paper) or ``predicted``
  (``seg_workdir``'s predictions; ``semdepth_jax.models.semantic_source``). Evaluation uses the same source;
  a model trained on ground truth can be evaluated on predictions by overriding only
  ``config.model.semantic_source`` (its parameters do not change).
* ``seg_workdir``: training workdir of the segmentation model for ``semantics=predicted``.

Paper recipe (``size=paper``; R3 code, model_spec §4.5, §4.6, §7.4): Adam 1e-3 (PyTorch eps 1e-8, no weight
decay), batch 32, 15 epochs, cosine from 1e-3 to 1e-6 stepped once per epoch (``schedule.decay_every`` = 607
batches per epoch of HyperSim's 19,399 R3 training images; other datasets decay per batch), input resized
to cover 256x256 (HyperSim 768x1024 -> 256x342) and centre-cropped, no augmentation; depth target
``clip(d, 0, 15) / 15`` (model ``depth_output='normalised'``) with masked L1 (or BerHu, code threshold) over
measured pixels; semantic terms CE (ignored pixels in the denominator, R3's ``nanmean``) x 0.07, contour CE
x 0.1 (code; the paper's 0.07 via ``--config.stages.train.loss.contour.weight=0.07``), Sobel-edge CE x 1;
Dice / Dice+CE / FTL+CE with the code's constants (FTL alpha 0.8, gamma 1.5). Encoders start from ImageNet
weights through ``config.model_init`` (``prefix='encoder'``; ``semdepth convert-weights --arch
efficientnet_b4 --set num_classes=0 --allow-unused conv_head. --allow-unused bn2. --allow-unused classifier.``);
without them they start from scratch. One difference: the pipeline resizes RGB bilinearly, R3 with nearest
neighbour (docs/model_spec.md §11 item 13).

**The small and tiny sizes use a fast recipe that learns within their default steps** (``size=paper`` keeps
everything above): EfficientNet-B0 at reduced width and depth, decoder (64, 32, 24, 16, 8) at 96x128 (small)
or (32, 16, 8, 8, 4) at 64x96 (tiny); batch 8; Adam with a 5 % linear warm-up and per-batch cosine decay
(peak 2e-3 small, 3e-3 tiny), gradient clipping at global norm 1, horizontal flips, precise-BN statistics
at the end. Targets, heads and loss weights stay the paper's, so the variants compare as in the paper.
"""

from __future__ import annotations

import math

import ml_collections
from ml_collections import config_dict

from configs import common
from semdepth_jax.data.meta import get_meta
from semdepth_jax.models.semantic_md import top_classes

TABLE1 = (
  "baseline",
  "baseline_berhu",
  "concat",
  "1hot40",
  "1hot20",
  "1hot3",
  "semconv",
  "contour",
  "2head",
  "3head",
)
"""Rows of the paper's Table 1 (HyperSim)."""

TABLE2 = (
  "enc_resnet50",
  "enc_b2",
  "enc_b3",
  "enc_b4",
  "2head_dice",
  "2head_dice_ce",
  "2head_ftl_ce",
  "2head_sobel",
  "deeplab",
  "deeplab_1hot40",
  "deeplab_2head",
  "deeplab_2head_dice_ce",
)
"""Rows of the paper's Table 2 (ablations)."""

MODELS = (*TABLE1, *TABLE2, "seg")
"""Values of the ``model=`` preset argument."""

SEMANTICS = ("gt", "predicted")

_DEFAULTS = {
  "model": "baseline",
  "dataset": "hypersim",
  "size": "paper",
  "steps": 0,
  "semantics": "gt",
  "seg_workdir": "",
}

IMAGE_SIZES = {"paper": (256, 256), "small": (96, 128), "tiny": (64, 96)}
"""Training input (H, W) per size: the paper's 256x256 crop; landscape crops for the CPU sizes."""

DEPTH_NORM = 15.0
"""Metres: R3 clips depth to 0..15 m and divides by 15 (docs/model_spec.md §4.5)."""

R3_TRAIN_IMAGES = {"hypersim": 19_399}
"""Training images of R3's split lists (model_spec §4.5), for the per-epoch schedule step."""

PAPER_BATCH = 32
PAPER_EPOCHS = 15.0

_ENCODERS = {
  "paper": {
    "b4": {"name": "efficientnet_b4"},
    "b3": {"name": "efficientnet_b3"},
    "b2": {"name": "efficientnet_b2"},
    "resnet50": {"name": "resnet50"},
  },
  "small": {
    **{
      v: {"name": "efficientnet_b0", "width_multiplier": 0.5, "depth_multiplier": 0.5}
      for v in ("b4", "b3", "b2")
    },
    "resnet50": {
      "name": "resnet50",
      "depths": (1, 1, 1, 1),
      "widths": (16, 32, 64, 128),
      "stem_width": 16,
    },
  },
  "tiny": {
    **{
      v: {"name": "efficientnet_b0", "width_multiplier": 0.25, "depth_multiplier": 0.25}
      for v in ("b4", "b3", "b2")
    },
    "resnet50": {
      "name": "resnet50",
      "depths": (1, 1, 1, 1),
      "widths": (8, 16, 32, 64),
      "stem_width": 8,
    },
  },
}
_DECODER = {
  "paper": (256, 128, 64, 32, 16),
  "small": (64, 32, 24, 16, 8),
  "tiny": (32, 16, 8, 8, 4),
}
_ASPP = {"paper": 256, "small": 32, "tiny": 16}
_SEMCONV_WIDTH = {"paper": 8, "small": 8, "tiny": 4}

# Fast recipe (small / tiny): lengths in batches of 8, Adam peak rates, precise-BN batches.
_FAST_STEPS = {"small": 400, "tiny": 150}
_FAST_LR = {"small": 2e-3, "tiny": 3e-3}
_FAST_BATCH = 8
_RECALIBRATE_BN = {"small": 10, "tiny": 4}

# Loss terms (model_spec §7.4; R3 trainers). Depth: L1 / BerHu on clip(d, 0, 15) / 15 over measured pixels
# (stored 0 = invalid is R3's NaN); no upper mask, the target clips at 15 m as R3 does.
_DEPTH = {
  "target": "normalised",
  "depth_norm": DEPTH_NORM,
  "min_depth": 0.0,
  "max_depth": math.inf,
}
_SEG_CE = {"type": "softmax_ce", "weight": 0.07, "normalization": "all"}
_SEG = {
  "ce": _SEG_CE,
  "dice": {"type": "dice", "weight": 0.07},
  "dice_ce": {"type": "dice_ce", "weight": 0.07},
  "ftl_ce": {"type": "ftl_ce", "weight": 0.07},
}


def _variant(model: str) -> dict:
  """Architecture, input and heads of a preset (sizes applied later)."""
  single = {"tasks": ("depth",), "depth_activation": "sigmoid", "init_scheme": "smp"}
  multi = {"depth_activation": "linear", "init_scheme": "torch"}
  if model in ("baseline", "baseline_berhu", "enc_b4"):
    return {**single, "encoder": "b4"}
  if model.startswith("enc_"):
    return {**single, "encoder": model[len("enc_") :]}
  if model == "concat":
    return {**single, "encoder": "b4", "input_encoding": "concat"}
  if model in ("1hot40", "1hot20", "1hot3"):
    return {**single, "encoder": "b4", "input_encoding": "onehot", "onehot": int(model[4:])}
  if model == "semconv":
    return {**single, "encoder": "b4", "input_encoding": "semconv"}
  if model == "contour":
    return {**single, "encoder": "b4", "input_encoding": "contour"}
  if model in ("2head", "2head_dice", "2head_dice_ce", "2head_ftl_ce"):
    return {**multi, "encoder": "b4", "tasks": ("depth", "semantic")}
  if model == "3head":
    return {**multi, "encoder": "b4", "tasks": ("depth", "semantic", "contour")}
  if model == "2head_sobel":
    return {**multi, "encoder": "b4", "tasks": ("depth", "sobel")}
  if model == "deeplab":
    # smp.DeepLabV3(activation='sigmoid'): 1x1 head (docs/model_spec.md §4.4).
    return {**single, "encoder": "b4", "architecture": "deeplabv3", "head_kernel": 1}
  if model == "deeplab_1hot40":
    return {
      **single,
      "encoder": "b4",
      "architecture": "deeplabv3",
      "head_kernel": 1,
      "input_encoding": "onehot",
      "onehot": 40,
    }
  if model in ("deeplab_2head", "deeplab_2head_dice_ce"):
    return {**multi, "encoder": "b4", "architecture": "deeplabv3", "tasks": ("depth", "semantic")}
  if model == "seg":
    return {"encoder": "b4", "tasks": ("semantic",), "init_scheme": "torch"}
  raise common.ConfigError(f"configs/semantic_md.py: unknown model {model!r}")


def model_loss(model: str) -> dict:
  """The paper's loss terms of a preset (``semdepth_jax.losses.build_loss`` spec)."""
  depth = {"type": "berhu" if model == "baseline_berhu" else "l1", **_DEPTH}
  if model == "seg":
    return {"seg": {"type": "softmax_ce"}}
  if model in ("2head", "3head", "deeplab_2head"):
    loss = {"depth": depth, "seg": dict(_SEG["ce"])}
    if model == "3head":
      loss["contour"] = {"type": "contour_ce", "weight": 0.1}
    return loss
  if model.endswith(("_dice", "_dice_ce", "_ftl_ce")):
    kind = next(k for k in ("dice_ce", "ftl_ce", "dice") if model.endswith("_" + k))
    return {"depth": depth, "seg": dict(_SEG[kind])}
  if model == "2head_sobel":
    return {"depth": depth, "sobel": {"type": "sobel_ce", "weight": 1.0}}
  return {"depth": depth}


def _model_config(args: dict, num_classes: int) -> ml_collections.ConfigDict:
  model, size = args["model"], args["size"]
  v = _variant(model)
  cfg: dict = {
    "name": "semantic_md",
    "encoder": dict(_ENCODERS[size][v["encoder"]]),
    "architecture": v.get("architecture", "unet"),
    "decoder_channels": _DECODER[size],
    "aspp_channels": _ASPP[size],
    "tasks": v["tasks"],
    "head_kernel": v.get("head_kernel", 3),
    "depth_activation": v.get("depth_activation", "linear"),
    "depth_output": "normalised",
    "depth_norm": DEPTH_NORM,
    "init_scheme": v["init_scheme"],
    "input_encoding": v.get("input_encoding", "none"),
  }
  if "onehot" in v:
    if num_classes != 40:
      raise common.ConfigError(
        f"configs/semantic_md.py: model={model} one-hot encodes the top-{v['onehot']} NYU-40 classes; "
        f"dataset {args['dataset']!r} has {num_classes} classes (use a NYU-40 dataset, e.g. hypersim, "
        "replica/nyu40)"
      )
    cfg["onehot_classes"] = top_classes(v["onehot"], num_classes)
  if cfg["input_encoding"] == "semconv":
    cfg["semconv_width"] = _SEMCONV_WIDTH[size]
  if cfg["input_encoding"] != "none":
    src = args["semantics"]
    if src not in SEMANTICS:
      raise common.ConfigError(
        f"configs/semantic_md.py: semantics must be one of {SEMANTICS}, got {src!r}"
      )
    if src == "predicted" and not args["seg_workdir"]:
      raise common.ConfigError(
        "configs/semantic_md.py: semantics=predicted needs seg_workdir=<workdir of a trained "
        "segmentation run> (e.g. model=seg)"
      )
    cfg["semantic_source"] = ml_collections.ConfigDict(
      {
        "source": src,
        "workdir": args["seg_workdir"] or config_dict.placeholder(str),
        "step": config_dict.placeholder(int),
        "mode": "argmax",
        "threshold": 0.5,
      }
    )
  elif args["semantics"] != "gt" or args["seg_workdir"]:
    raise common.ConfigError(
      f"configs/semantic_md.py: model={model} reads no semantic input; semantics= and seg_workdir= "
      "apply to the multi-input models only"
    )
  return ml_collections.ConfigDict(cfg)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Builds the config of one paper-003 experiment (see the module docstring).

  Args:
    arg: ``'model=...,dataset=...,size=...,steps=N,semantics=gt|predicted,seg_workdir=PATH'``.

  Raises:
    ConfigError: unknown preset argument or value.
  """
  args = common.parse_args(arg, _DEFAULTS, where="configs/semantic_md.py")
  model, size, dataset = args["model"], args["size"], args["dataset"]
  if model not in MODELS:
    raise common.ConfigError(
      f"configs/semantic_md.py: model must be one of {', '.join(MODELS)}, got {model!r}"
    )
  meta = get_meta(dataset)
  c = common.base_config()
  c.dataset = dataset
  c.image_size = IMAGE_SIZES[size]
  c.model = _model_config(args, meta.num_classes)
  # R3: resize to cover the crop (HyperSim 768x1024 -> 256x342), centre crop, no augmentation.
  c.augment.resize = "cover"
  c.augment.crop = "center"
  c.augment.flip = size != "paper"  # fast recipe

  if size == "paper":
    schedule = {"name": "cosine", "end_value": 1e-6}
    base = dataset.split(":")[0].split("/")[0]
    if base in R3_TRAIN_IMAGES:
      per_epoch = math.ceil(R3_TRAIN_IMAGES[base] / PAPER_BATCH)
      schedule.update(decay_every=per_epoch, decay_steps=int(PAPER_EPOCHS) * per_epoch)
    stage = common.stage_config(
      num_epochs=PAPER_EPOCHS,
      batch_size=PAPER_BATCH,
      loss=model_loss(model),
      optimizer={"name": "adam", "learning_rate": 1e-3},
      schedule=schedule,
    )
    c.eval.batch_size = PAPER_BATCH
  else:
    stage = common.stage_config(
      num_steps=_FAST_STEPS[size],
      batch_size=_FAST_BATCH,
      loss=model_loss(model),
      optimizer={"name": "adam", "learning_rate": _FAST_LR[size], "grad_clip_norm": 1.0},
      schedule={"name": "cosine", "warmup_fraction": 0.05},
      recalibrate_bn_batches=_RECALIBRATE_BN[size],
    )
    c.eval.batch_size = 8
    c.checkpoint.every_steps = 100
    c.log_every_steps = 10
  c.stages = ml_collections.ConfigDict({"train": stage})
  c.stage_order = ("train",)
  if args["steps"] > 0:
    common.set_steps(c, args["steps"])
  return c
