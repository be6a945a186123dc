r"""``semdepth predict``: run a trained workdir's model on your own images of any size.

::

  semdepth predict --workdir runs/x --images photos/ extra.jpg --out preds/ [--step N] \
      [--mode resize|tile] [--tta flip] [--ply [--intrinsics fx,fy,cx,cy]]
  semdepth predict --exported model.shlo --images photos/ --out preds/   # artifact of `semdepth export`

Inputs: files or folders (folders: their ``*.png``, ``*.jpg``, ``*.jpeg``, ``*.bmp`` files, not
recursive). Greyscale, palette and RGBA images are converted to RGB; other modes (16-bit or float single
channel, e.g. depth maps) are rejected. An unreadable or unsupported image gets an error that names the
file; the other images are still processed and the exit status is 1 when any image failed.

Model input: ``--mode resize`` (default) resizes the image to the training size ``config.image_size``
(bilinear, antialiased); ``--mode tile`` covers it with tiles of the training size (``semdepth_jax.tiling``;
evenly spaced, overlaps averaged). Outputs are brought back to the original image size: depth bilinearly
(in metres), class scores (softmax probabilities) bilinearly before the argmax. Depth is converted to
metres when the model predicts paper 000's inverted normalised depth (``model.depth_output``, with the
config's ``depth_norm``).

Outputs per image ``<stem>`` (in ``--out``):

==========================  =================================================================================
``<stem>_depth.npy``        float32 (H, W) depth in metres
``<stem>_depth.png``        uint16 (H, W) depth ``round(scale * d)``: millimetres (scale 1000) for datasets
                            whose depth stays under 65 m, 1/256 m (KITTI's convention) for outdoor ones
                            (``depth_png_scale``); the scale is stored in the PNG's ``depth_scale`` text
                            chunk, which ``semdepth score`` reads (the ``.npy`` keeps full precision)
``<stem>_depth_color.png``  depth colourised with the dataset's *fixed* ``meta.depth_vis_range`` (never
                            rescaled per image, so sequences do not flicker), with a colour bar in metres
                            (``viz.depth_colorbar_image``; images under 160 px tall are enlarged by an
                            integer factor so the bar stays legible)
``<stem>_seg.png``          palette PNG: pixel values are class ids, the palette is the dataset's colours
``<stem>_overlay.png``      class colours blended over the image
``<stem>_figure.png``       RGB | depth with colour bar | labels with a legend of the classes present
``<stem>.ply``              (``--ply``) point cloud (binary little-endian, ``--ply_ascii`` for text), one
                            vertex per pixel with depth > 0, coloured by RGB or by class (``--ply_color``)
==========================  =================================================================================

Point clouds back-project the depth with the pinhole model in the OpenCV camera frame (x right, y down,
z forward; depth = z): ``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy`` for pixel centres ``(u, v)``.
Intrinsics: ``--intrinsics fx,fy,cx,cy`` in pixels of the input images, else the dataset's meta intrinsics
scaled to each image size (``DatasetMeta.intrinsics_at``); ``--ply`` without either is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from semdepth_jax import resize, tiling

_log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
"""File types read from folders (and accepted as explicit files)."""

MODES = ("resize", "tile")
"""How an image of any size reaches the model (see the module docstring)."""

TTA_MODES = ("none", "flip")
"""Test-time augmentation: none, or horizontal flip (``semdepth_jax.tiling.flip_tta``)."""

DEPTH_PNG_SCALE = 1000.0
"""Default units per metre of ``<stem>_depth.png`` (millimetres), for datasets whose depth stays < 65 m."""

DEPTH_PNG_SCALE_FAR = 256.0
"""Units per metre for far-range datasets (KITTI's png/256 convention: up to 255.996 m in a uint16)."""

DEPTH_PNG_SCALE_KEY = "depth_scale"
"""PNG text chunk of ``<stem>_depth.png`` holding its scale (metres = value / scale)."""

PLY_COLORS = ("rgb", "class")


class ImageError(ValueError):
  """An input image cannot be used (missing, unreadable, unsupported); the message names the file."""


# ----------------------------------------------------------------------------------------------------------
# Loading a trained workdir.


@dataclasses.dataclass
class TrainedModel:
  """A restored model ready for inference.

  Attributes:
    model: the base model of the config (``loop.model_kwargs(config)``; the inference configuration).
    variables: ``{'params': ..., 'batch_stats': ...}`` restored from the checkpoint.
    config: the training config (``ConfigDict``).
    meta: ``DatasetMeta`` of ``config.dataset``.
    step: the checkpoint step.
    workdir: absolute path of the workdir.
  """

  model: nn.Module
  variables: dict[str, Any]
  config: Any
  meta: Any
  step: int
  workdir: str

  @property
  def input_size(self) -> tuple[int, int]:
    """(height, width) the model was trained at (``config.image_size``)."""
    h, w = self.config.image_size
    return int(h), int(w)

  @property
  def depth_output(self) -> str:
    """Units of the model's raw depth (``semdepth_jax.models.contract.DEPTH_OUTPUTS``)."""
    return getattr(self.model, "depth_output", "metres")

  @property
  def depth_norm(self) -> float | None:
    """Metres, saturation distance of inverted normalised depth (None for other units)."""
    return getattr(self.model, "depth_norm", None)

  @property
  def trained_with_flips(self) -> bool:
    """Whether training used horizontal-flip augmentation (flip TTA can hurt a model trained without)."""
    return bool(self.config.augment.get("flip", False))

  @property
  def num_classes(self) -> int:
    """Segmentation classes of the model."""
    from semdepth_jax.train import loop

    return loop.resolved_num_classes(self.config)

  def inference_model(
    self,
    mode: str = "resize",
    tta: str | None = None,
    *,
    pointwise_conv: str | None = None,
    volume_conv: str | None = None,
  ) -> InferenceModel:
    """An :class:`InferenceModel` of this model at its training input size.

    In tile mode the tiles show the scene at the training pipeline's scale (``config.augment.resize``).
    The convolution switches default to the run's config (:func:`conv_switches`).
    """
    return InferenceModel(
      self.model,
      input_size=self.input_size,
      mode=mode,
      tta=tta,
      train_resize=self.config.augment.get("resize", "cover"),
      **conv_switches(self.config, pointwise_conv=pointwise_conv, volume_conv=volume_conv),
    )


def conv_switches(
  config: Any, *, pointwise_conv: str | None = None, volume_conv: str | None = None
) -> dict[str, str]:
  """The convolution switches of a training config for :class:`InferenceModel`.

  ``{'pointwise_conv': config.pointwise_conv, 'volume_conv': config.volume_conv}`` (``'conv'`` where the
  config predates them), so evaluation and prediction trace a model's convolutions the way its training
  step did (``semdepth_jax.train.step.jit_train_step``). A given ``pointwise_conv`` / ``volume_conv``
  replaces the config's (``semdepth predict`` / ``evaluate`` ``--pointwise_conv`` / ``--volume_conv``):
  the results agree to float rounding, the speed differs (README, Performance).
  """
  return {
    "pointwise_conv": str(pointwise_conv or config.get("pointwise_conv", "conv")),
    "volume_conv": str(volume_conv or config.get("volume_conv", "conv")),
  }


def add_conv_arguments(p: argparse.ArgumentParser) -> None:
  """``--pointwise_conv`` / ``--volume_conv`` of ``semdepth predict`` and ``evaluate`` (:func:`conv_switches`)."""
  from semdepth_jax.models import layers

  p.add_argument(
    "--pointwise_conv",
    choices=layers.POINTWISE_IMPLS,
    default=None,
    help="1x1 convolutions as convolutions or matrix products (default: the run's config)",
  )
  p.add_argument(
    "--volume_conv",
    choices=layers.VOLUME_IMPLS,
    default=None,
    help="3-D convolutions as one 3-D convolution or sums of 2-D ones (planes: about 2x faster "
    "3D CNN inference on CPU; default: the run's config)",
  )


def load_config_for(workdir: str | os.PathLike, config: Any = None) -> Any:
  """The config of a workdir: ``config`` if given, else the workdir's ``config.json``.

  Args:
    workdir: training workdir (``train`` saves its config there as ``config.json``).
    config: ``None``, a ``ConfigDict`` (returned as is) or a ``PATH[:ARGS]`` config spec (loaded with
      ``config_utils.load_config``).

  Raises:
    FileNotFoundError: no config given and no ``config.json`` in ``workdir``.
  """
  import ml_collections

  from semdepth_jax.train import config_utils

  path = os.path.join(os.fspath(workdir), "config.json")
  if config is not None:
    if isinstance(config, str):
      config = config_utils.load_config(config)
    if os.path.isfile(path):
      given = json.loads(json.dumps(config_utils.to_dict(config)))  # tuples -> lists, as saved
      changed = config_utils.diff(config_utils.load_json(path), given)
      if changed:
        _log.warning("the given config differs from %s in: %s", path, ", ".join(changed))
    return config
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"{path} not found: {workdir} is not a training workdir (train writes config.json there); "
      "pass the workdir of `semdepth train`, or give --config"
    )
  return ml_collections.ConfigDict(config_utils.load_json(path))


def restore_for_inference(
  workdir: str | os.PathLike,
  *,
  step: int | None = None,
  config: Any = None,
  mesh: Any = None,
) -> tuple[nn.Module, dict[str, Any], Any]:
  """``(model, variables, config)`` of a training workdir, ready for ``model.apply(variables, ...)``.

  Reads only the checkpoint's ``variables`` item (params and BatchNorm statistics; never the optimiser
  state), checked leaf by leaf against the shapes the config's model initialises. Used by
  ``semdepth evaluate``, ``semdepth predict`` and export.

  Args:
    workdir: folder written by ``train`` (``config.json``, ``checkpoints/<step>/``).
    step: checkpoint step (default: the latest).
    config: config override (``ConfigDict`` or ``PATH[:ARGS]``); default the workdir's ``config.json``.
    mesh: mesh to place the variables on (default: replicated on a one-device mesh).

  Returns:
    The base model of the config (``loop.model_kwargs``; the inference configuration), its variables and
    the config.

  Raises:
    FileNotFoundError: no config, no checkpoint, or no checkpoint at ``step`` (lists the available ones).
    semdepth_jax.train.checkpoint.CheckpointMismatchError: the checkpoint does not fit the config.
  """
  trained = load_trained(workdir, step=step, config=config, mesh=mesh)
  return trained.model, trained.variables, trained.config


def load_trained(
  workdir: str | os.PathLike,
  *,
  step: int | None = None,
  config: Any = None,
  mesh: Any = None,
) -> TrainedModel:
  """Restores the base model of a training workdir from its checkpoint (see :func:`restore_for_inference`).

  Returns:
    A :class:`TrainedModel` (model, variables, config, dataset meta, step, workdir).

  Raises:
    FileNotFoundError: no config, no checkpoint, or no checkpoint at ``step`` (lists the available ones).
    semdepth_jax.train.checkpoint.CheckpointMismatchError: the checkpoint does not fit the config.
  """
  from semdepth_jax.data.meta import get_meta
  from semdepth_jax.train import checkpoint as ckpt_lib
  from semdepth_jax.train import loop
  from semdepth_jax.train import mesh as mesh_lib

  workdir = os.path.abspath(os.fspath(workdir))
  config = load_config_for(workdir, config)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise FileNotFoundError(f"no checkpoints folder in {workdir} (looked for {ckpt_dir})")
  if mesh is None:
    mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  model = loop.build_model(config)
  abstract = loop.abstract_variables(config, model)
  replicated = mesh_lib.replicated(mesh)
  abstract = jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), abstract
  )
  with ckpt_lib.Checkpointer(ckpt_dir, keep=int(config.checkpoint.keep), async_save=False) as ckpt:
    steps = ckpt.all_steps()
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")
    if step is None:
      step = steps[-1]
    elif int(step) not in steps:
      raise FileNotFoundError(
        f"no checkpoint at step {step} in {ckpt_dir}; available steps: {steps}"
      )
    variables, _ = ckpt.restore_variables(int(step), abstract)
  if not variables.get("batch_stats"):
    variables = {"params": variables["params"]}
  return TrainedModel(
    model=model,
    variables=variables,
    config=config,
    meta=get_meta(config.dataset),
    step=int(step),
    workdir=workdir,
  )


# ----------------------------------------------------------------------------------------------------------
# The inference model: any image size in, metres and class probabilities at that size out.


def training_tile_size(
  input_size: tuple[int, int], image_size: tuple[int, int], train_resize: Any
) -> tuple[int, int]:
  """Tile (height, width) in pixels of an ``image_size`` image that shows the scene at training scale.

  The training pipeline (``semdepth_jax.data.transforms.preprocess_train``) resizes each stored image by
  ``augment.resize`` and then crops ``input_size``: with ``'cover'`` the image is scaled by
  ``s = max(h_in / H, w_in / W)``, with ``(h, w)`` by ``(h / H, w / W)``, with ``None`` not at all. A tile of
  ``input_size / s`` image pixels, resized to ``input_size``, therefore shows objects at the size the model
  saw them. The result is clipped to the image; a tile as large as the image makes tiling the same as
  resizing.

  Args:
    input_size: (h_in, w_in) the model input.
    image_size: (H, W) of the image to tile.
    train_resize: ``'cover'``, ``(h, w)`` or ``None``.

  Returns:
    (tile height, tile width) in image pixels, each >= 1 and <= the image's.
  """
  (hi, wi), (H, W) = input_size, image_size
  if train_resize == "cover":
    s = max(hi / H, wi / W)
    sy = sx = s
  elif train_resize is None:
    sy = sx = 1.0
  else:
    sy, sx = float(train_resize[0]) / H, float(train_resize[1]) / W
  return (max(1, min(H, round(hi / sy))), max(1, min(W, round(wi / sx))))


class InferenceModel:
  """Wraps a trained model for images of any size; follows the models API (``apply``).

  ``dense(variables, image)`` returns ``{'depth': (B, H, W) metres, 'probs': (B, H, W, C)}`` at the size of
  ``image`` (keys for the heads the model has):

  * ``mode='resize'``: the image is resized to ``input_size`` (bilinear, antialiased), the model runs, its
    raw outputs become metres and class probabilities through the model's ``decode``
    (``semdepth_jax.models.contract``), and both are resized bilinearly back to (H, W).
  * ``mode='tile'``: the same per tile of ``tile_size`` pixels of the image (``tiling.tiled_predict``;
    overlaps averaged), each tile resized to ``input_size``. ``tile_size`` defaults to the size at which
    the training pipeline showed the scene to the model (:func:`training_tile_size`), so objects appear at
    the scale the model learnt; tiles of ``input_size`` pixels would magnify them.
  * ``tta='flip'``: horizontal-flip averaging (``tiling.flip_tta``), per tile in tile mode.
  * ``tile_combine``: how overlapping tiles' class scores combine, ``'mean'`` or ``'max'`` (paper 001's
    "label with the higher normalised score", ``tiling.tiled_predict``); depth is always averaged.

  ``apply(variables, image, labels=None, train=False, ...)`` returns the same as a model output dict
  (``depth`` (B, H, W, 1) metres, ``seg_logits`` = log of the probabilities, so argmax is unchanged) and
  ``depth_output = 'metres'``, so the training code's evaluation (``loop.make_evaluate_fn``) runs it as is.

  Args:
    model: linen module following the model-family contract (``decode``, ``depth_output``).
    input_size: (height, width) the model was trained at.
    mode: ``'resize'`` or ``'tile'``.
    tta: ``None``/``'none'`` or ``'flip'``.
    tile_size: (height, width) of a tile in image pixels (``mode='tile'``); default: from
      ``train_resize`` (:func:`training_tile_size`).
    train_resize: the training pipeline's ``augment.resize`` (``'cover'``, ``(h, w)`` or ``None``).
    tile_combine: ``'mean'`` or ``'max'`` for overlapping class scores (``mode='tile'``).
    pass_labels: pass ground-truth labels (resized nearest to the model input) to models whose call takes
      ``labels`` (default: detected from the signature, as in training).
    pointwise_conv: how the model's 1x1 convolutions are traced, one of
      ``semdepth_jax.models.layers.POINTWISE_IMPLS`` (``config.pointwise_conv``; :func:`conv_switches`).
    volume_conv: how its 3-D convolutions are traced, one of ``semdepth_jax.models.layers.VOLUME_IMPLS``
      (``config.volume_conv``; ``'planes'`` halves 3D CNN-S / CNN-UP inference time on CPU).

  Raises:
    ValueError: unknown mode / tta / convolution switch, or a model whose depth units cannot be decoded
      (e.g. inverted normalised output without ``depth_norm``).
  """

  depth_output = "metres"

  def __init__(
    self,
    model: nn.Module,
    *,
    input_size: tuple[int, int],
    mode: str = "resize",
    tta: str | None = None,
    tile_size: tuple[int, int] | None = None,
    train_resize: Any = None,
    tile_combine: str = "mean",
    pass_labels: bool | None = None,
    pointwise_conv: str = "conv",
    volume_conv: str = "conv",
  ):
    from semdepth_jax.models import contract, layers
    from semdepth_jax.train import step as step_lib

    if mode not in MODES:
      raise ValueError(f"InferenceModel: mode must be one of {MODES}, got {mode!r}")
    tta = None if tta in (None, "none") else tta
    if tta not in (None, "flip"):
      raise ValueError(f"InferenceModel: tta must be one of {TTA_MODES}, got {tta!r}")
    if tile_combine not in tiling.PROBS_COMBINES:
      raise ValueError(
        f"InferenceModel: tile_combine must be one of {tiling.PROBS_COMBINES}, got {tile_combine!r}"
      )
    for key, value, allowed in (
      ("pointwise_conv", pointwise_conv, layers.POINTWISE_IMPLS),
      ("volume_conv", volume_conv, layers.VOLUME_IMPLS),
    ):
      if value not in allowed:
        raise ValueError(f"InferenceModel: {key} must be one of {allowed}, got {value!r}")
    contract.check_model(model, f"InferenceModel({type(model).__name__})")
    self.pointwise_conv = pointwise_conv
    self.volume_conv = volume_conv
    self.tile_combine = tile_combine
    self.model = model
    self.input_size = (int(input_size[0]), int(input_size[1]))
    self.tile_size = None if tile_size is None else (int(tile_size[0]), int(tile_size[1]))
    self.train_resize = tuple(train_resize) if isinstance(train_resize, list) else train_resize
    self.mode = mode
    self.tta = tta
    self.pass_labels = step_lib.accepts_labels(model) if pass_labels is None else pass_labels

  def at_input_size(
    self, variables: Mapping[str, Any], image: jax.Array, labels: jax.Array | None = None
  ) -> tiling.Predictions:
    """One model pass for a (B, H, W, 3) image of any size; maps at (H, W) (no tiling, no TTA)."""
    from semdepth_jax.models import contract, layers

    B, H, W = image.shape[:3]
    x, lab = image.astype(jnp.float32), labels
    if self.input_size != (H, W):
      x = resize.image(x, self.input_size)
      if lab is not None:
        lab = resize.nearest(lab, self.input_size)
    kwargs: dict[str, Any] = {"train": False}
    if self.pass_labels and lab is not None:
      kwargs["labels"] = lab.astype(jnp.int32)
    with layers.pointwise_conv_impl(self.pointwise_conv), layers.volume_conv_impl(self.volume_conv):
      raw = self.model.apply(variables, x, **kwargs)
    decoded = contract.decode(raw, **contract.decode_options(self.model))
    preds = {}
    if "depth" in decoded:
      preds["depth"] = resize.bilinear(decoded["depth"], (H, W))
    if "seg_probs" in decoded:
      preds["probs"] = resize.bilinear(decoded["seg_probs"], (H, W))
    return preds

  def dense(
    self, variables: Mapping[str, Any], image: jax.Array, labels: jax.Array | None = None
  ) -> tiling.Predictions:
    """Depth (B, H, W) metres and class probabilities (B, H, W, C) at the size of ``image`` (jittable)."""

    def fn(x, lab):
      return self.at_input_size(variables, x, lab)

    if self.tta == "flip":
      single = fn

      def fn(x, lab):
        return tiling.flip_tta(single, x, lab)

    if self.mode == "tile":
      size = self.tile_size or training_tile_size(
        self.input_size, tuple(image.shape[1:3]), self.train_resize
      )
      return tiling.tiled_predict(fn, image, size, labels, probs_combine=self.tile_combine)
    return dict(fn(image, labels))

  def __call__(
    self, variables: Mapping[str, Any], image: jax.Array, labels: jax.Array | None = None, **kwargs
  ) -> dict[str, jax.Array]:
    """Same as :meth:`apply` (its signature tells the training code to pass ground-truth labels)."""
    return self.apply(variables, image, labels, **kwargs)

  def apply(
    self,
    variables: Mapping[str, Any],
    image: jax.Array,
    labels: jax.Array | None = None,
    *,
    train: bool = False,
    mutable: Any = False,
    rngs: Any = None,
  ) -> dict[str, jax.Array]:
    """Models-API outputs at the input size: ``depth`` (B, H, W, 1) metres, ``seg_logits`` (log-probs).

    Raises:
      ValueError: ``train=True`` or ``mutable`` (inference only).
    """
    del rngs
    if train or mutable:
      raise ValueError("InferenceModel is for inference only (train=False, no mutable collections)")
    preds = self.dense(variables, image, labels)
    out = {}
    if "depth" in preds:
      out["depth"] = preds["depth"][..., None]
    if "probs" in preds:
      out["seg_logits"] = jnp.log(jnp.maximum(preds["probs"], 1e-30))
    return out


# ----------------------------------------------------------------------------------------------------------
# Inputs.


def collect_images(
  paths: Sequence[str | os.PathLike], skipped: list[str] | None = None
) -> tuple[list[pathlib.Path], dict[str, str]]:
  """Expands files and folders into the list of images to process.

  Folders contribute their files with an ``IMAGE_EXTENSIONS`` suffix (case-insensitive, sorted, not
  recursive). Explicit files are kept whatever their suffix (reading decides), unless missing.

  Args:
    paths: image files and folders.
    skipped: if given, a message is appended for each folder whose subfolders were not searched.

  Returns:
    ``(images, errors)``: paths in order (duplicates removed) and ``{path: message}`` for paths that do
    not exist, folders without images and files whose output stem collides with an earlier image's.
  """
  images: list[pathlib.Path] = []
  errors: dict[str, str] = {}
  seen: set[pathlib.Path] = set()
  stems: dict[str, pathlib.Path] = {}

  def add(p: pathlib.Path) -> None:
    key = p.resolve()
    if key in seen:
      return
    seen.add(key)
    if p.stem in stems:
      errors[str(p)] = (
        f"{p}: its outputs would overwrite those of {stems[p.stem]} (same stem {p.stem!r}); rename one"
      )
      return
    stems[p.stem] = p
    images.append(p)

  for raw in paths:
    p = pathlib.Path(raw)
    if p.is_dir():
      found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
      if not found:
        errors[str(p)] = f"{p}: folder has no {'/'.join(IMAGE_EXTENSIONS)} files"
      subfolders = sorted(f.name for f in p.iterdir() if f.is_dir())
      if subfolders and skipped is not None:
        shown = ", ".join(subfolders[:5]) + (
          f", ... ({len(subfolders)} in all)" if len(subfolders) > 5 else ""
        )
        skipped.append(
          f"{p}: skipped {len(subfolders)} subfolder(s) ({shown}): folders are not searched "
          "recursively; pass a subfolder itself to predict its images"
        )
      for f in found:
        add(f)
    elif p.is_file():
      add(p)
    else:
      errors[str(p)] = f"{p}: no such file or folder"
  return images, errors


def gather_images(
  paths: Sequence[str | os.PathLike], log: Any = None
) -> tuple[list[pathlib.Path], dict[str, str]]:
  """:func:`collect_images`, saying which subfolders were skipped (``log``, else a logged warning).

  Every ``predict`` form (plain, exported, routed) collects its inputs here, so a skipped folder is never
  silent.
  """
  skipped: list[str] = []
  files, errors = collect_images(paths, skipped)
  for msg in skipped:
    (log or _log.warning)(f"note: {msg}")
  return files, errors


def read_image(path: str | os.PathLike) -> np.ndarray:
  """Reads an image file as uint8 RGB (H, W, 3).

  Greyscale (``L``, ``LA``, ``1``), palette (``P``), ``RGBA``/``CMYK``/``YCbCr`` images are converted to
  RGB (alpha dropped).

  Raises:
    ImageError: unsupported suffix, undecodable or truncated file, or a mode that is not a photo (16-bit
      or float single channel, e.g. a depth map); the message names the file.
  """
  from PIL import Image, UnidentifiedImageError

  path = pathlib.Path(path)
  if path.suffix.lower() not in IMAGE_EXTENSIONS:
    raise ImageError(
      f"{path}: unsupported file type {path.suffix!r}; supported: {', '.join(IMAGE_EXTENSIONS)}"
    )
  try:
    with Image.open(path) as im:
      im.load()
      mode = im.mode
      if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        raise ImageError(
          f"{path}: {mode} single-channel image (16-bit / float, e.g. a depth map) is not an RGB photo"
        )
      rgb = np.asarray(im.convert("RGB"), np.uint8)
  except ImageError:
    raise
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
    raise ImageError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
  if rgb.ndim != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
    raise ImageError(f"{path}: decoded to an empty array of shape {rgb.shape}")
  return rgb


def parse_intrinsics(text: str) -> tuple[float, float, float, float]:
  """Parses ``'fx,fy,cx,cy'`` (pixels).

  Raises:
    ValueError: not four numbers, or non-positive focal lengths.
  """
  try:
    vals = tuple(float(v) for v in text.split(","))
  except ValueError:
    vals = ()
  if len(vals) != 4:
    raise ValueError(f"--intrinsics must be 'fx,fy,cx,cy' (4 numbers, pixels), got {text!r}")
  if vals[0] <= 0 or vals[1] <= 0:
    raise ValueError(f"--intrinsics focal lengths must be > 0, got fx={vals[0]}, fy={vals[1]}")
  return vals  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------
# Output formats.


def depth_png_scale(meta: Any) -> float:
  """Units per metre of the depth PNGs for a dataset (metres = value / scale).

  Millimetres (1000) when its depth range fits in a uint16 at that scale (``max_depth`` and
  ``depth_vis_range`` <= 65 m), else 256 (KITTI's convention, up to 256 m), so outdoor predictions do not
  saturate at 65.535 m.
  """
  far = max(float(meta.max_depth or 0.0), float(meta.depth_vis_range[1]))
  if meta.max_depth is None and meta.scene_type == "outdoor":
    far = max(far, 80.0)
  return DEPTH_PNG_SCALE if far <= 65.0 else DEPTH_PNG_SCALE_FAR


def depth_to_png(depth_m: np.ndarray, scale: float = DEPTH_PNG_SCALE) -> np.ndarray:
  """uint16 ``clip(round(scale * d), 0, 65535)``; NaN/negative -> 0, beyond ``65535 / scale`` m saturates."""
  d = np.nan_to_num(np.asarray(depth_m, np.float64), nan=0.0, posinf=np.inf, neginf=0.0)
  return np.clip(np.rint(d * float(scale)), 0, 65535).astype(np.uint16)


def write_depth_png(
  path: str | os.PathLike, depth_m: np.ndarray, scale: float = DEPTH_PNG_SCALE
) -> None:
  """Writes ``depth_to_png(depth_m, scale)`` as a 16-bit greyscale PNG with its scale in a text chunk.

  The chunk ``depth_scale`` (:data:`DEPTH_PNG_SCALE_KEY`) says ``metres = value / scale``;
  ``semdepth score`` reads it when ``--pred_scale`` is not given.
  """
  from PIL import Image, PngImagePlugin

  info = PngImagePlugin.PngInfo()
  info.add_text(DEPTH_PNG_SCALE_KEY, f"{float(scale):g}")
  info.add_text("depth_unit", f"metres = value / {float(scale):g}")
  Image.fromarray(depth_to_png(depth_m, scale)).save(path, pnginfo=info)


def write_palette_png(
  path: str | os.PathLike, labels: np.ndarray, colors: Sequence[Sequence[int]]
) -> None:
  """Writes class ids as an 8-bit palette PNG whose palette entry ``k`` is ``colors[k]``.

  Pixel values are the ids themselves (``np.array(Image.open(path))`` gives them back); entries beyond
  ``len(colors)`` (incl. 255, the ignore index) are black.

  Raises:
    ValueError: ids outside [0, 255] or more than 256 colours.
  """
  from PIL import Image

  lab = np.asarray(labels)
  if lab.size and (lab.min() < 0 or lab.max() > 255):
    raise ValueError(f"palette PNG needs ids in [0, 255], got [{lab.min()}, {lab.max()}]")
  if len(colors) > 256:
    raise ValueError(f"palette PNG holds at most 256 colours, got {len(colors)}")
  palette = np.zeros((256, 3), np.uint8)
  palette[: len(colors)] = np.asarray(colors, np.uint8).reshape(-1, 3)
  im = Image.fromarray(lab.astype(np.uint8), mode="P")
  im.putpalette(palette.reshape(-1).tolist())
  im.save(path)


def backproject(depth_m: np.ndarray, intrinsics: Sequence[float]) -> np.ndarray:
  """Pinhole back-projection of a planar depth map to camera-frame points (OpenCV axes).

  ``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy``, ``Z = depth`` for pixel centres ``u = column``,
  ``v = row``.

  Args:
    depth_m: (H, W) depth in metres (z, not ray length).
    intrinsics: (fx, fy, cx, cy) in pixels of this image.

  Returns:
    float32 (H, W, 3) points in metres.
  """
  fx, fy, cx, cy = (float(v) for v in intrinsics)
  z = np.asarray(depth_m, np.float32)
  v, u = np.meshgrid(np.arange(z.shape[0]), np.arange(z.shape[1]), indexing="ij")
  x = (u.astype(np.float32) - cx) * z / fx
  y = (v.astype(np.float32) - cy) * z / fy
  return np.stack([x, y, z], axis=-1).astype(np.float32)


def write_ply(
  path: str | os.PathLike, points: np.ndarray, colors: np.ndarray, *, binary: bool = True
) -> int:
  """Writes a coloured point cloud as PLY (``binary_little_endian 1.0`` or ``ascii 1.0``).

  Vertex properties: ``float x, y, z`` (metres) and ``uchar red, green, blue``.

  Args:
    path: output file.
    points: float (N, 3).
    colors: uint8 (N, 3).
    binary: binary little-endian (default) or ASCII.

  Returns:
    The number of vertices N.

  Raises:
    ValueError: shapes do not match.
  """
  pts = np.asarray(points, np.float32).reshape(-1, 3)
  cols = np.asarray(colors, np.uint8).reshape(-1, 3)
  if len(pts) != len(cols):
    raise ValueError(f"write_ply: {len(pts)} points but {len(cols)} colours")
  fmt = "binary_little_endian" if binary else "ascii"
  header = (
    f"ply\nformat {fmt} 1.0\ncomment written by semdepth_jax predict (metres, OpenCV camera frame)\n"
    f"element vertex {len(pts)}\nproperty float x\nproperty float y\nproperty float z\n"
    "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
  )
  with open(path, "wb") as f:
    f.write(header.encode("ascii"))
    if binary:
      rec = np.empty(
        len(pts),
        dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")],
      )
      rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
      rec["r"], rec["g"], rec["b"] = cols[:, 0], cols[:, 1], cols[:, 2]
      f.write(rec.tobytes())
    else:
      lines = [
        f"{p[0]:.6g} {p[1]:.6g} {p[2]:.6g} {c[0]} {c[1]} {c[2]}\n"
        for p, c in zip(pts.tolist(), cols.tolist(), strict=True)
      ]
      f.write("".join(lines).encode("ascii"))
  return len(pts)


# ----------------------------------------------------------------------------------------------------------
# Prediction over files.


@dataclasses.dataclass
class PredictResult:
  """What :func:`predict_images` did.

  Attributes:
    outputs: image path -> list of files written for it.
    errors: image path -> error message (images that failed; they have no outputs).
    step: checkpoint step used.
  """

  outputs: dict[str, list[str]]
  errors: dict[str, str]
  step: int

  @property
  def ok(self) -> bool:
    """True when every image was processed."""
    return not self.errors


def image_intrinsics(
  meta: Any, height: int, width: int, given: Sequence[float] | None
) -> tuple[float, float, float, float] | None:
  """``given`` (pixels of the image) or the dataset's meta intrinsics scaled to ``height`` x ``width``."""
  if given is not None:
    return tuple(float(v) for v in given)  # type: ignore[return-value]
  return meta.intrinsics_at(height, width)


def write_prediction(
  out_dir: str | os.PathLike,
  stem: str,
  image: np.ndarray,
  preds: Mapping[str, np.ndarray],
  meta: Any,
  *,
  intrinsics: Sequence[float] | None = None,
  ply: bool = False,
  ply_color: str = "rgb",
  ply_binary: bool = True,
  dpi: int = 100,
) -> list[str]:
  """Writes the output files of one image (see the module docstring); returns their paths.

  Args:
    out_dir: output folder (created).
    stem: file-name stem.
    image: uint8 (H, W, 3).
    preds: ``depth`` (H, W) metres and/or ``labels`` (H, W) int class ids.
    meta: ``DatasetMeta`` (palette, class names, fixed depth range).
    intrinsics: (fx, fy, cx, cy) at (H, W) for ``ply``.
    ply: write ``<stem>.ply`` (needs depth and intrinsics).
    ply_color: ``'rgb'`` or ``'class'`` (needs labels).
    ply_binary: binary or ASCII PLY.
    dpi: resolution of ``<stem>_figure.png``.

  Raises:
    ValueError: ``ply`` without intrinsics or depth, or ``ply_color='class'`` without labels.
  """
  from PIL import Image

  from semdepth_jax import viz

  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  written: list[str] = []
  depth = preds.get("depth")
  labels = preds.get("labels")
  vmin, vmax = meta.depth_vis_range

  def path(suffix: str) -> pathlib.Path:
    p = out / f"{stem}{suffix}"
    written.append(str(p))
    return p

  if depth is not None:
    np.save(path("_depth.npy"), np.asarray(depth, np.float32))
    write_depth_png(path("_depth.png"), depth, depth_png_scale(meta))
    Image.fromarray(viz.depth_colorbar_image(depth, vmin, vmax)).save(path("_depth_color.png"))
  if labels is not None:
    write_palette_png(path("_seg.png"), labels, meta.class_colors)
    overlay = viz.overlay_labels(image, labels, meta.class_colors, ignore_index=meta.ignore_index)
    Image.fromarray(overlay).save(path("_overlay.png"))
  fig = viz.prediction_figure(image, meta, depth=depth, labels=labels, title=stem, dpi=dpi)
  viz.save_figure(fig, path("_figure.png"))
  if ply:
    if depth is None:
      raise ValueError(f"{stem}: --ply needs a depth prediction; the model has no depth output")
    if intrinsics is None:
      raise ValueError(f"{stem}: --ply needs intrinsics (--intrinsics fx,fy,cx,cy)")
    if ply_color == "class":
      if labels is None:
        raise ValueError(f"{stem}: --ply_color class needs labels; the model does not segment")
      colors = viz.colourise_labels(labels, meta.class_colors, meta.ignore_index)
    else:
      colors = image
    pts = backproject(depth, intrinsics)
    valid = np.isfinite(pts[..., 2]) & (pts[..., 2] > 0)
    write_ply(path(".ply"), pts[valid], colors[valid], binary=ply_binary)
  return written


def _check_model_runs(inf: InferenceModel, variables: Any) -> None:
  """Traces one input at the model size so label-requiring models fail once, up front."""
  h, w = inf.input_size
  try:
    jax.eval_shape(lambda v, x: inf.dense(v, x), variables, jnp.zeros((1, h, w, 3), jnp.float32))
  except ValueError as e:
    raise ValueError(
      f"the model cannot run on images alone ({e}). `predict` needs a model that reads only RGB (e.g. "
      "ssegdepnet, unet, scrx_rgb), not one that builds OHESS planes from ground-truth labels"
    ) from None


def predict_images(
  workdir: str | os.PathLike | TrainedModel,
  images: Sequence[str | os.PathLike],
  out_dir: str | os.PathLike,
  *,
  step: int | None = None,
  mode: str = "resize",
  tta: str | None = None,
  ply: bool = False,
  intrinsics: Sequence[float] | None = None,
  ply_color: str = "rgb",
  ply_binary: bool = True,
  config: Any = None,
  log=None,
  pointwise_conv: str | None = None,
  volume_conv: str | None = None,
) -> PredictResult:
  """Runs a trained model on image files and writes the outputs (module docstring).

  Args:
    workdir: training workdir, or an already loaded :class:`TrainedModel`.
    images: files and/or folders.
    out_dir: output folder.
    step: checkpoint step (default latest).
    mode: ``'resize'`` or ``'tile'``.
    tta: ``None``/``'none'`` or ``'flip'``.
    ply: also write point clouds.
    intrinsics: (fx, fy, cx, cy) in pixels of the input images (default: the dataset's meta, scaled).
    ply_color: ``'rgb'`` or ``'class'``.
    ply_binary: binary (default) or ASCII PLY.
    config: config override for :func:`load_trained`.
    log: ``print``-like callable for progress lines (default: no output).
    pointwise_conv: 1x1 convolution switch (None: the config's; :func:`conv_switches`).
    volume_conv: 3-D convolution switch (None: the config's; :func:`conv_switches`).

  Returns:
    :class:`PredictResult` (per-image errors are collected, not raised).

  Raises:
    ValueError: bad arguments, ``ply`` without known intrinsics, or a model that needs labels.
    FileNotFoundError: the workdir has no config/checkpoint.
  """
  if ply_color not in PLY_COLORS:
    raise ValueError(f"ply_color must be one of {PLY_COLORS}, got {ply_color!r}")
  trained = (
    workdir
    if isinstance(workdir, TrainedModel)
    else load_trained(workdir, step=step, config=config)
  )
  meta = trained.meta
  if ply and intrinsics is None and meta.intrinsics is None:
    raise ValueError(
      f"--ply needs camera intrinsics: dataset {meta.name!r} has none in its meta info; pass "
      "--intrinsics fx,fy,cx,cy (pixels of the input images)"
    )
  inf = trained.inference_model(
    mode=mode, tta=tta, pointwise_conv=pointwise_conv, volume_conv=volume_conv
  )
  _check_model_runs(inf, trained.variables)
  dense = jax.jit(inf.dense)
  outputs, errors = _predict_files(
    lambda f, x: (dense(trained.variables, x), meta, ""),
    images,
    out_dir,
    ply=ply,
    intrinsics=intrinsics,
    ply_color=ply_color,
    ply_binary=ply_binary,
    log=log,
  )
  return PredictResult(outputs=outputs, errors=errors, step=trained.step)


def _predict_files(
  run: Any,
  images: Sequence[str | os.PathLike],
  out_dir: str | os.PathLike,
  *,
  ply: bool,
  intrinsics: Sequence[float] | None,
  ply_color: str,
  ply_binary: bool,
  log: Any,
) -> tuple[dict[str, list[str]], dict[str, str]]:
  """Reads each image, runs it and writes its files (plain, exported and routed prediction share this).

  ``run(path, x)`` takes the file and its image (1, H, W, 3) in [0, 1] and returns ``(preds, meta, note)``:
  ``depth`` / ``probs`` at (H, W), the dataset meta to write them with, and a suffix for the log line.
  """
  files, errors = gather_images(images, log)
  outputs: dict[str, list[str]] = {}
  for f in files:
    try:
      img = read_image(f)
    except ImageError as e:
      errors[str(f)] = str(e)
      continue
    x = jnp.asarray(img[None].astype(np.float32) / np.float32(255.0))
    preds, meta, note = run(f, x)
    preds = jax.device_get(preds)
    host: dict[str, np.ndarray] = {}
    if "depth" in preds:
      host["depth"] = np.asarray(preds["depth"][0], np.float32)
    if "probs" in preds:
      host["labels"] = np.argmax(np.asarray(preds["probs"][0]), axis=-1).astype(np.int32)
    k = image_intrinsics(meta, img.shape[0], img.shape[1], intrinsics) if ply else None
    outputs[str(f)] = write_prediction(
      out_dir,
      f.stem,
      img,
      host,
      meta,
      intrinsics=k,
      ply=ply,
      ply_color=ply_color,
      ply_binary=ply_binary,
    )
    if log is not None:
      log(f"{f} ({img.shape[0]}x{img.shape[1]}): {len(outputs[str(f)])} files{note}")
  return outputs, errors


def predict_exported(
  artifact: str | os.PathLike,
  images: Sequence[str | os.PathLike],
  out_dir: str | os.PathLike,
  *,
  ply: bool = False,
  intrinsics: Sequence[float] | None = None,
  ply_color: str = "rgb",
  ply_binary: bool = True,
  log=None,
) -> PredictResult:
  """:func:`predict_images` with an exported artifact (``semdepth export``) instead of a workdir.

  Each image is resized to the artifact's input size (antialiased bilinear), the artifact returns metres
  and class probabilities at its output resolution, and both are resized bilinearly to the image size:
  the same steps and outputs as ``--mode resize`` without TTA. The dataset meta (palette, depth range) is
  that of the sidecar's ``dataset``.

  Raises:
    FileNotFoundError: the artifact or its sidecar is missing.
    ValueError: bad arguments, or an unreadable sidecar.
  """
  from semdepth_jax import export as export_lib
  from semdepth_jax.data.meta import get_meta

  if ply_color not in PLY_COLORS:
    raise ValueError(f"ply_color must be one of {PLY_COLORS}, got {ply_color!r}")
  art = export_lib.load_exported(artifact)
  if "dataset" not in art.sidecar:
    raise ValueError(f"{export_lib.sidecar_path(artifact)}: no 'dataset' (palette, depth range)")
  meta = get_meta(art.sidecar["dataset"])
  if ply and intrinsics is None and meta.intrinsics is None:
    raise ValueError(
      f"--ply needs camera intrinsics: dataset {meta.name!r} has none in its meta info; pass "
      "--intrinsics fx,fy,cx,cy (pixels of the input images)"
    )
  size = art.input_size

  def dense(x):
    H, W = x.shape[1:3]
    if size != (H, W):
      x = resize.image(x, size)
    out = art.run(np.asarray(x))
    preds = {}
    if "depth" in out:
      preds["depth"] = resize.bilinear(out["depth"], (H, W))
    if "seg_probs" in out:
      preds["probs"] = resize.bilinear(out["seg_probs"], (H, W))
    return preds

  outputs, errors = _predict_files(
    lambda f, x: (dense(x), meta, ""),
    images,
    out_dir,
    ply=ply,
    intrinsics=intrinsics,
    ply_color=ply_color,
    ply_binary=ply_binary,
    log=log,
  )
  return PredictResult(outputs=outputs, errors=errors, step=art.sidecar["checkpoint"]["step"])


# ----------------------------------------------------------------------------------------------------------
# CLI.


def add_parser(subparsers) -> argparse.ArgumentParser:
  """Registers the ``predict`` sub-command (see ``semdepth_jax.main``)."""
  p = subparsers.add_parser(
    "predict",
    help="run a trained model on your own images",
    description="Run a trained workdir's model on your own images of any size.",
    formatter_class=argparse.RawDescriptionHelpFormatter,
    epilog=(
      "Writes <stem>_depth.npy (metres), <stem>_depth.png (uint16 millimetres, saturating at 65.535 m), "
      "<stem>_depth_color.png (fixed dataset range + colour bar), <stem>_seg.png (palette PNG of class "
      "ids), <stem>_overlay.png, <stem>_figure.png and with --ply <stem>.ply. Exit status 1 if any image "
      "failed, 2 on a usage error."
    ),
  )
  src = p.add_mutually_exclusive_group()
  src.add_argument("--workdir", default=None, help="training workdir (config.json + checkpoints/)")
  src.add_argument(
    "--exported", default=None, help="artifact of `semdepth export` (PATH with PATH.json beside it)"
  )
  p.add_argument("--images", required=True, nargs="+", help="image files and/or folders")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  p.add_argument("--config", default=None, help="config override PATH[:ARGS] (default: workdir's)")
  p.add_argument("--mode", choices=MODES, default="resize", help="resize (default) or tile")
  p.add_argument("--tta", choices=TTA_MODES, default="none", help="test-time augmentation")
  p.add_argument("--ply", action="store_true", help="also write <stem>.ply point clouds")
  p.add_argument("--ply_color", choices=PLY_COLORS, default="rgb", help="PLY vertex colours")
  p.add_argument("--ply_ascii", action="store_true", help="ASCII PLY instead of binary")
  p.add_argument(
    "--intrinsics", default=None, help="fx,fy,cx,cy in pixels of the input images (for --ply)"
  )
  add_conv_arguments(p)
  from semdepth_jax import routed

  routed.add_arguments(p)
  p.set_defaults(func=run)
  return p


def run(args: argparse.Namespace) -> int:
  """Handler of ``semdepth predict``: 0 = all images done, 1 = some failed, 2 = usage error."""
  if args.router is not None:
    from semdepth_jax import routed

    return routed.run_predict(args)
  if not args.workdir and not getattr(args, "exported", None):
    print(
      "semdepth predict: error: one of --workdir, --exported or --router (with --low, --high) is "
      "required",
      file=sys.stderr,
    )
    return 2
  from semdepth_jax.train.checkpoint import CheckpointDamagedError

  try:
    intrinsics = parse_intrinsics(args.intrinsics) if args.intrinsics else None
    if getattr(args, "exported", None):
      if (
        args.mode != "resize"
        or args.tta != "none"
        or args.step is not None
        or args.config
        or args.pointwise_conv
        or args.volume_conv
      ):
        raise ValueError(
          "--exported runs the artifact as exported: no --mode tile, --tta, --step, --config, "
          "--pointwise_conv, --volume_conv"
        )
      result = predict_exported(
        args.exported,
        args.images,
        args.out,
        ply=args.ply,
        intrinsics=intrinsics,
        ply_color=args.ply_color,
        ply_binary=not args.ply_ascii,
        log=print,
      )
    else:
      result = predict_images(
        args.workdir,
        args.images,
        args.out,
        step=args.step,
        mode=args.mode,
        tta=args.tta,
        ply=args.ply,
        intrinsics=intrinsics,
        ply_color=args.ply_color,
        ply_binary=not args.ply_ascii,
        config=args.config,
        pointwise_conv=args.pointwise_conv,
        volume_conv=args.volume_conv,
        log=print,
      )
  except (ValueError, FileNotFoundError, KeyError, CheckpointDamagedError) as e:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    print(f"semdepth predict: error: {msg}", file=sys.stderr)
    return 2
  for msg in result.errors.values():
    print(f"semdepth predict: error: {msg}", file=sys.stderr)
  n_ok, n_bad = len(result.outputs), len(result.errors)
  print(f"predicted {n_ok} image(s) with step {result.step} into {args.out}; {n_bad} failed")
  return 1 if n_bad else 0
