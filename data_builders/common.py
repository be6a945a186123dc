"""Pieces every builder shares: the stored feature spec, PNG encoding and input validation.

Stored example (all builders, so the pipeline reads every dataset the same way):

* ``image``: PNG-encoded uint8 RGB, decoded shape (H, W, 3).
* ``depth``: float32 (H, W) metres, 0 = invalid; all zeros when ``has_depth`` is False.
* ``segmentation``: PNG-encoded uint8 (H, W, 1) training ids, ``IGNORE_INDEX`` (255) = unlabelled; all 255
  when ``has_segmentation`` is False.
* ``has_depth``, ``has_segmentation``: bool flags for partially labelled sets.
* ``intrinsics``: float32 (4,) pinhole (fx, fy, cx, cy) in pixels of this image; zeros when unknown.
* ``file_name``: the stable example key (source file stem), stored as text.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from semdepth_jax.data.meta import IGNORE_INDEX


def example_features(
  height: int | None = None, width: int | None = None
) -> tfds.features.FeaturesDict:
  """The FeaturesDict shared by all builders (see the module docstring).

  Args:
    height, width: fixed image size in pixels, or None for datasets whose sizes vary.
  """
  return tfds.features.FeaturesDict(
    {
      "image": tfds.features.Image(shape=(height, width, 3), dtype=np.uint8, encoding_format="png"),
      "depth": tfds.features.Tensor(shape=(height, width), dtype=np.float32, encoding="zlib"),
      "segmentation": tfds.features.Image(
        shape=(height, width, 1), dtype=np.uint8, encoding_format="png"
      ),
      "has_depth": tfds.features.Scalar(dtype=np.bool_),
      "has_segmentation": tfds.features.Scalar(dtype=np.bool_),
      "intrinsics": tfds.features.Tensor(shape=(4,), dtype=np.float32),
      "file_name": tfds.features.Text(),
    }
  )


def encode_png(array: np.ndarray) -> bytes:
  """PNG-encodes a uint8 (H, W), (H, W, 1) or (H, W, 3) array with PIL (no TensorFlow needed)."""
  array = np.asarray(array)
  if array.dtype != np.uint8:
    raise ValueError(f"encode_png expects uint8, got {array.dtype}")
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG", compress_level=1)
  return buf.getvalue()


def check_files_exist(paths: Iterable, where: str, instructions: str = "") -> None:
  """Raises one FileNotFoundError listing every missing path (checked before a build starts).

  Args:
    paths: required files or folders (``os.PathLike`` / ``epath.Path``).
    where: the folder that was searched, named in the message.
    instructions: appended to the message (typically MANUAL_DOWNLOAD_INSTRUCTIONS).
  """
  missing = [str(p) for p in paths if not _exists(p)]
  if missing:
    listing = "\n  ".join(missing)
    raise FileNotFoundError(
      f"{len(missing)} required file(s) missing under {where}:\n  {listing}\n{instructions}".rstrip()
    )


def _exists(p) -> bool:
  exists = getattr(p, "exists", None)
  if exists is not None:
    return bool(exists())
  import os

  return os.path.exists(p)


def make_example(
  *,
  image: np.ndarray,
  depth: np.ndarray | None,
  segmentation: np.ndarray | None,
  intrinsics=None,
  file_name: str,
  num_classes: int,
  source: str,
) -> dict:
  """Validates one decoded example and returns the dict to yield to TFDS.

  Args:
    image: uint8 (H, W, 3).
    depth: float32 (H, W) metres (0 = invalid) or None if the example has no depth.
    segmentation: integer (H, W) training ids (``IGNORE_INDEX`` allowed) or None.
    intrinsics: (fx, fy, cx, cy) or None.
    file_name: stable key of the example.
    num_classes: number of valid training ids.
    source: the file(s) the example came from, named in errors.

  Raises:
    ValueError: sizes disagree, depth is negative or non-finite, or a label id is out of range; the message
      names ``source``, the expected and the actual.
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(
      f"{source}: expected a uint8 (H, W, 3) RGB image, got {image.dtype} {image.shape}"
    )
  h, w = image.shape[:2]
  has_depth = depth is not None
  has_seg = segmentation is not None
  if has_depth:
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != (h, w):
      raise ValueError(f"{source}: depth size {depth.shape} does not match image size {(h, w)}")
    if not np.all(np.isfinite(depth)):
      raise ValueError(f"{source}: depth has {int(np.sum(~np.isfinite(depth)))} non-finite values")
    if depth.min() < 0:
      raise ValueError(f"{source}: depth must be >= 0 metres, found minimum {float(depth.min())}")
  else:
    depth = np.zeros((h, w), np.float32)
  if has_seg:
    segmentation = np.asarray(segmentation)
    if segmentation.shape != (h, w):
      raise ValueError(
        f"{source}: label size {segmentation.shape} does not match image size {(h, w)}"
      )
    bad = (segmentation != IGNORE_INDEX) & ((segmentation < 0) | (segmentation >= num_classes))
    if bad.any():
      ids = sorted(set(np.unique(segmentation[bad]).tolist()))
      raise ValueError(
        f"{source}: label ids {ids[:10]} outside 0..{num_classes - 1} (ignore = {IGNORE_INDEX})"
      )
    segmentation = segmentation.astype(np.uint8)
  else:
    segmentation = np.full((h, w), IGNORE_INDEX, np.uint8)
  return {
    "image": encode_png(image),
    "depth": depth,
    "segmentation": encode_png(segmentation[..., None]),
    "has_depth": has_depth,
    "has_segmentation": has_seg,
    "intrinsics": np.asarray(intrinsics if intrinsics is not None else (0, 0, 0, 0), np.float32),
    "file_name": file_name,
  }
