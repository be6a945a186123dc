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
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Iterable

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from semdepth_jax.data import meta as meta_lib
from semdepth_jax.data.meta import IGNORE_INDEX


def example_features(
  height: int | None = None, width: int | None = None
) -> tfds.features.FeaturesDict:
  """The FeaturesDict shared by all builders (see the module docstring).

  Args:
    height: fixed image height in pixels, or None for datasets whose sizes vary.
    width: fixed image width in pixels, or None for datasets whose sizes vary.
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


# --- File helpers shared by the builders of real datasets. -----------------------------------------

_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def scaled_intrinsics(
  meta: meta_lib.DatasetMeta, height: int, width: int
) -> tuple[float, float, float, float]:
  """The dataset's intrinsics for an image of ``height`` x ``width`` pixels.

  Returns ``meta.intrinsics`` (pixels at ``meta.native_size``) scaled by ``DatasetMeta.intrinsics_at`` when
  the image is a uniform rescale of the native size (same aspect ratio within 1 %), and zeros (unknown)
  when the aspect ratio differs or the dataset has no fixed intrinsics.
  """
  nh, nw = meta.native_size
  if meta.intrinsics is None or abs(height * nw - width * nh) > 0.01 * nh * width:
    return (0.0, 0.0, 0.0, 0.0)
  return meta.intrinsics_at(height, width)


def read_png(path: epath.Path, kind: str) -> np.ndarray:
  """Decodes a PNG with PIL.

  Args:
    path: the file.
    kind: ``"rgb"`` -> uint8 (H, W, 3); ``"uint8"`` -> uint8 (H, W) from an 8-bit grey or palette PNG
      (palette indices, not colours); ``"uint16"`` -> uint16 (H, W) from a 16-bit grey PNG.

  Raises:
    ValueError: the file is not a decodable PNG or has another mode; the message names ``path``.
  """
  try:
    with path.open("rb") as f, Image.open(f) as img:
      img.load()
      mode = img.mode
      if kind == "rgb" and mode in ("RGB", "RGBA", "L", "P", "LA"):
        return np.array(img.convert("RGB"), dtype=np.uint8)
      if kind == "uint8" and mode in ("L", "P"):
        return np.array(img, dtype=np.uint8)
      if kind == "uint16" and mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.array(img)
        if array.min() < 0 or array.max() > 65535:  # mode "I" is int32.
          raise ValueError(f"{path}: 16-bit PNG values outside 0..65535")
        return array.astype(np.uint16)
  except (OSError, SyntaxError, Image.DecompressionBombError) as e:
    raise ValueError(f"{path}: cannot decode PNG: {e}") from e
  raise ValueError(f"{path}: expected a {kind} PNG, got PIL mode {mode!r}")


def locate_root(manual_dir: epath.Path, marker: str, extract_dir: epath.Path) -> epath.Path:
  """Finds the dataset folder: the shallowest folder holding ``marker`` in ``manual_dir``.

  Looks in ``manual_dir`` and up to two levels below it; if nothing is found there, extracts every archive
  (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) lying directly in ``manual_dir`` into
  ``extract_dir/<archive name>`` (once; a ``.done`` marker caches it) and looks inside. ``manual_dir`` is
  only read.

  Returns:
    The folder, or ``manual_dir`` itself when no folder holds ``marker`` (the caller's
    ``common.check_files_exist`` then names the expected paths).

  Raises:
    ValueError: several folders hold ``marker`` (the message lists them), or an archive cannot be read.
  """
  candidates = _roots_with(manual_dir, marker)
  if not candidates:
    for archive in sorted(p for p in manual_dir.iterdir() if is_archive(p)):
      candidates += _roots_with(extract(archive, extract_dir), marker)
  if len(candidates) > 1:
    raise ValueError(
      f"found {len(candidates)} folders holding {marker} under {manual_dir}: "
      f"{', '.join(map(str, candidates))}; keep only one dataset copy in manual_dir"
    )
  return candidates[0] if candidates else manual_dir


def _roots_with(folder: epath.Path, marker: str, max_depth: int = 2) -> list[epath.Path]:
  """Folders at depth 0..max_depth below ``folder`` that contain ``marker`` (shallowest level only)."""
  level = [folder]
  for _ in range(max_depth + 1):
    found = sorted(p for p in level if (p / marker).exists())
    if found:
      return found
    level = [c for p in level for c in _subfolders(p)]
  return []


def _subfolders(folder: epath.Path) -> list[epath.Path]:
  try:
    return [c for c in folder.iterdir() if c.is_dir()]
  except OSError:  # unreadable folders cannot hold the dataset.
    return []


def is_archive(path: epath.Path) -> bool:
  """Whether ``path`` is a file with one of the archive suffixes (zip, tar, tar.gz, tgz ...) builders open."""
  return path.is_file() and path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def extract(archive: epath.Path, extract_dir: epath.Path) -> epath.Path:
  """Extracts ``archive`` once into ``extract_dir/<archive name>`` (a ``.done`` marker caches it).

  Raises:
    ValueError: the archive cannot be read (truncated, damaged, not an archive); the message names it.
  """
  dest = extract_dir / archive.name
  done = extract_dir / f"{archive.name}.done"
  if done.exists():
    return dest
  if dest.exists():
    shutil.rmtree(dest)
  dest.mkdir(parents=True)
  try:
    if archive.name.lower().endswith(".zip"):
      with zipfile.ZipFile(archive) as z:
        z.extractall(dest)
    else:
      with tarfile.open(archive) as t:
        t.extractall(dest, filter="data")
  except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as e:
    # A truncated .tar.gz ends in EOFError, a damaged deflate stream in zlib.error.
    raise ValueError(
      f"{archive}: cannot extract archive (truncated or damaged download?): {type(e).__name__}: {e}"
    ) from e
  done.touch()
  return dest


class ArrayRecordByDefault:
  """Builder mixin: write ``array_record`` unless another ``file_format`` is passed.

  TFDS's own default is tfrecord, which needs TensorFlow to read; array_record builds and reads without it.
  Use as ``class Builder(common.ArrayRecordByDefault, tfds.core.GeneratorBasedBuilder)``.
  """

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format or "array_record", **kwargs)
