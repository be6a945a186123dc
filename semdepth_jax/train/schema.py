"""The training-config schema: defaults of every key the trainer reads (config files build on it).

``semdepth_jax.train.config_utils.validate_config`` checks configs against :func:`base_config` (stages
against :func:`stage_config`, ``evals`` entries against :func:`eval_entry`) and rejects any other key. A
config file must set ``model.name``, ``image_size``, ``dataset`` and the stages' losses (the defaults
describe no particular model):

* ``seed`` int; ``dataset`` TFDS name (``synthetic_city`` default, the embedded dataset); ``data_dir`` ('' = TFDS default, which
  honours ``TFDS_DATA_DIR``); ``num_classes`` (None = ``get_meta(dataset).num_classes``); ``image_size``
  (H, W) of training crops; ``train_split``; ``augment`` (overrides of
  ``semdepth_jax.data.transforms.DEFAULT_AUGMENT``); ``data.{num_threads, prefetch, worker_count}``.
* ``model``: ``name`` (registry key) + constructor keyword arguments (free-form; checked by the model).
* ``model_init.{path, prefix, exclude}``: start from converted pretrained weights (``semdepth
  convert-weights``) merged strictly into the parameter subtree ``prefix`` ('' = the whole model).
* ``stages``: name -> stage (see :func:`stage_config`), run in ``stage_order``. A stage has ``num_steps``
  or ``num_epochs``, ``batch_size`` (global), ``trainable`` (regex on parameter paths, '' = all),
  ``loss`` (terms for ``semdepth_jax.losses.build_loss``), ``model`` (overrides of ``config.model`` for
  this stage), ``optimizer`` and ``schedule`` (``semdepth_jax.train.optim``), ``recalibrate_bn_batches``
  (precise-BN statistics at the stage end, 0 = off). Stages with 0 steps are skipped. The optimiser state is fresh at each stage; parameters and BatchNorm statistics carry over.
* ``mesh_shape`` (data, model), -1 = remaining devices; ``param_sharding``: ``(regex, spec)`` rules
  (default: replicate); ``compute_dtype`` float32/bfloat16 (mixed precision, float32 parameters and
  optimiser); ``remat`` none/dots/full (``semdepth_jax.train.step.REMAT_POLICIES``); ``cpu_conv``
  ynn/eigen (CPU convolution kernels of the train step, ``step.CPU_CONV_IMPLS``); ``pointwise_conv``
  conv/dot (1x1 convolutions as convolutions or matrix products,
  ``semdepth_jax.models.layers.pointwise_conv_impl``); ``volume_conv`` conv/planes (3-D convolutions as
  3-D convolutions or sums of 2-D ones, ``layers.volume_conv_impl``; both switches hold for the train step,
  evaluation and prediction, ``semdepth_jax.predict.conv_switches``); ``distributed`` (call
  ``jax.distributed.initialize()`` even without ``JAX_COORDINATOR_ADDRESS``).
* ``train_mixture``: ``((dataset, weight), ...)`` to train on a weighted mixture (``()`` = ``dataset``).
* ``evals``: named further evaluations (:func:`eval_entry`: ``split``, ``dataset``, ``protocol``,
  ``every_steps``, ``batch_size``, ``max_batches``).
* ``checkpoint.{every_steps, keep, async_save}``; ``log_every_steps``; ``progress_bar``;
  ``eval.{every_steps, at_stage_end, split, batch_size, max_batches, protocol, image_size,
  image_summaries}`` (evaluation runs ``semdepth_jax.evaluate.Evaluation``, the same path as
  ``semdepth evaluate``).
"""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict

from semdepth_jax.train.config_utils import ConfigError


def optimizer_config(**overrides: Any) -> ml_collections.ConfigDict:
  """Optimiser defaults (``semdepth_jax.train.optim.make_optimizer``); keyword arguments override."""
  cfg = ml_collections.ConfigDict(
    {
      "name": "sgd",
      "learning_rate": 1e-3,
      "momentum": 0.0,
      "nesterov": False,
      "b1": 0.9,
      "b2": 0.999,
      "eps": 1e-8,
      "weight_decay": 0.0,
      "weight_decay_mode": "decoupled",
      "weight_decay_exclude": "",
      # (regex, multiplier) pairs on parameter paths, e.g. (("^aspp/", 10.0),).
      "lr_multipliers": (),
      "grad_clip_norm": 0.0,
      "grad_accum_steps": 1,
    }
  )
  _update_strict(cfg, overrides, "optimizer")
  return cfg


def schedule_config(**overrides: Any) -> ml_collections.ConfigDict:
  """Learning-rate schedule defaults (``semdepth_jax.train.optim.make_schedule``)."""
  cfg = ml_collections.ConfigDict(
    {
      "name": "constant",
      "warmup_steps": 0,
      "warmup_fraction": 0.0,  # used when warmup_steps is 0: warm-up = round(fraction * stage steps).
      "warmup_init": 0.0,
      "power": 0.9,
      "end_value": 0.0,
      "decay_steps": 0,
      "decay_every": 0,
      "decay_factor": 0.1,
    }
  )
  _update_strict(cfg, overrides, "schedule")
  return cfg


def stage_config(
  *,
  num_steps: int = 0,
  num_epochs: float = 0.0,
  batch_size: int = 8,
  trainable: str = "",
  loss: dict | None = None,
  model: dict | None = None,
  optimizer: dict | None = None,
  schedule: dict | None = None,
  recalibrate_bn_batches: int = 0,
) -> ml_collections.ConfigDict:
  """One training stage.

  Args:
    num_steps: batches to train (0 with ``num_epochs`` > 0: derived from the train split size).
    num_epochs: passes over the train split (``ceil(epochs * N / batch_size)`` steps), 0 = use num_steps.
    batch_size: global batch size (split over the mesh's ``data`` axis and over processes).
    trainable: regex on parameter paths (``re.search``); non-matching parameters (and their BatchNorm
      statistics) are frozen. '' = everything trainable.
    loss: loss terms for ``semdepth_jax.losses.build_loss``.
    model: overrides of ``config.model`` for this stage (e.g. SSegDep-Net's ``ohess_source``).
    optimizer: overrides of :func:`optimizer_config`.
    schedule: overrides of :func:`schedule_config`.
    recalibrate_bn_batches: if > 0, at the end of the stage the trainable BatchNorm running statistics
      are replaced by their average over this many training batches (precise BN; useful for short runs
      with Keras' momentum 0.99, whose running averages still remember their initial values).
  """
  return ml_collections.ConfigDict(
    {
      "num_steps": int(num_steps),
      "num_epochs": float(num_epochs),
      "batch_size": int(batch_size),
      "trainable": trainable,
      "loss": ml_collections.ConfigDict(loss or {}),
      "model": ml_collections.ConfigDict(model or {}),
      "optimizer": optimizer_config(**(optimizer or {})),
      "schedule": schedule_config(**(schedule or {})),
      "recalibrate_bn_batches": int(recalibrate_bn_batches),
    }
  )


def augment_config(**overrides: Any) -> ml_collections.ConfigDict:
  """Training augmentation: ``semdepth_jax.data.transforms.DEFAULT_AUGMENT`` with overrides."""
  from semdepth_jax.data import transforms

  cfg = ml_collections.ConfigDict()
  for key, value in {**transforms.DEFAULT_AUGMENT, **overrides}.items():
    if key not in transforms.DEFAULT_AUGMENT:
      raise ConfigError(
        f"augment: unknown key {key!r}; known: {', '.join(sorted(transforms.DEFAULT_AUGMENT))}"
      )
    # None-valued fields become typed placeholders so --config.augment.x=... can set them.
    cfg[key] = config_dict.placeholder(object) if value is None else value
  return cfg


def base_config() -> ml_collections.ConfigDict:
  """The shared defaults; also the schema that ``validate_config`` checks configs against.

  A single stage ``train`` (1000 SGD steps of batch 8, no loss terms: a config file must set the loss).
  """
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = "synthetic_city"
  c.data_dir = ""
  c.num_classes = config_dict.placeholder(int)
  c.image_size = config_dict.placeholder(tuple)  # (H, W): set by the config file.
  c.train_split = "train"
  # Train on a weighted mixture of datasets: ((name, weight), ...); () = config.dataset only. Members with
  # another label set than config.dataset contribute depth only.
  c.train_mixture = ()
  c.augment = augment_config()
  c.data = ml_collections.ConfigDict({"num_threads": 2, "prefetch": 2, "worker_count": 0})

  c.model = ml_collections.ConfigDict(
    {"name": ""}
  )  # registry key + attributes: set by the config file.
  # Pretrained weights (``semdepth convert-weights`` output) merged into the subtree ``prefix`` of the
  # fresh parameters; ``exclude``: regexes of paths to keep from the initialisation (e.g. a classifier).
  c.model_init = ml_collections.ConfigDict({"path": "", "prefix": "", "exclude": ()})
  c.stages = ml_collections.ConfigDict({"train": stage_config(num_steps=1000)})
  c.stage_order = ("train",)

  c.mesh_shape = (-1, 1)
  c.param_sharding = ()
  c.compute_dtype = "float32"
  c.remat = "none"  # semdepth_jax.train.step.REMAT_POLICIES: none / dots / full.
  c.cpu_conv = (
    "ynn"  # ynn / eigen: CPU convolution kernels (semdepth_jax.train.step.CPU_CONV_IMPLS).
  )
  # conv / dot: 1x1 convolutions of the train step (semdepth_jax.models.layers.pointwise_conv_impl).
  c.pointwise_conv = "conv"
  # conv / planes: 3-D convolutions of the train step (semdepth_jax.models.layers.volume_conv_impl).
  c.volume_conv = "conv"
  c.distributed = False

  c.checkpoint = ml_collections.ConfigDict({"every_steps": 500, "keep": 3, "async_save": True})
  c.log_every_steps = 50
  c.progress_bar = True
  c.eval = ml_collections.ConfigDict(
    {
      "every_steps": 0,  # 0 = only at stage ends (if at_stage_end) and at the end.
      "at_stage_end": True,
      "split": "validation",
      "batch_size": 8,
      "max_batches": 0,  # 0 = the whole split.
      "protocol": "",  # depth protocol (semdepth_jax.metrics.PROTOCOLS); '' = the dataset's default.
      "image_size": config_dict.placeholder(
        tuple
      ),  # None = the stored size (metrics at GT resolution).
      "image_summaries": 3,  # examples drawn to TensorBoard at each evaluation; 0 = none.
    }
  )
  # Further named evaluations (e.g. on datasets the model is not trained on), each an eval_entry(); they
  # run with the main evaluation and every ``every_steps``, logged as split ``eval/<name>``.
  c.evals = ml_collections.ConfigDict()
  return c


def eval_entry(
  *,
  split: str,
  dataset: str = "",
  protocol: str = "",
  every_steps: int = 0,
  batch_size: int = 0,
  max_batches: int = 0,
) -> ml_collections.ConfigDict:
  """One named evaluation of ``config.evals``.

  Args:
    split: split to evaluate.
    dataset: TFDS name ('' = ``config.dataset``).
    protocol: depth protocol ('' = the dataset's default).
    every_steps: also run every this many steps (0 = only with the main evaluation).
    batch_size: global batch (0 = ``config.eval.batch_size``).
    max_batches: stop after this many batches (0 = the whole split).
  """
  return ml_collections.ConfigDict(
    {
      "split": split,
      "dataset": dataset,
      "protocol": protocol,
      "every_steps": int(every_steps),
      "batch_size": int(batch_size),
      "max_batches": int(max_batches),
    }
  )


def _update_strict(cfg: ml_collections.ConfigDict, overrides: dict, what: str) -> None:
  for k, v in overrides.items():
    if k not in cfg:
      raise ConfigError(f"{what}: unknown key {k!r}; known: {', '.join(sorted(cfg.keys()))}")
    cfg[k] = v
