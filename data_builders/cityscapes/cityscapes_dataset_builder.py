"""TFDS builder ``cityscapes``: Cityscapes fine annotations, 19 classes, stereo depth in metres.

Inputs (``manual_dir``), each as the official zip archive or the folder it extracts to (archives are
read member by member, never extracted):

* ``leftImg8bit_trainvaltest.zip`` / ``leftImg8bit/``: ``<split>/<city>/<stem>_leftImg8bit.png``,
  uint8 RGB 2048 x 1024;
* ``gtFine_trainvaltest.zip`` / ``gtFine/``: ``<split>/<city>/<stem>_gtFine_labelIds.png``, uint8
  label ids 0..33;
* ``disparity_trainvaltest.zip`` / ``disparity/``: ``<split>/<city>/<stem>_disparity.png``, uint16
  disparity code p;
* ``camera_trainvaltest.zip`` / ``camera/``: ``<split>/<city>/<stem>_camera.json``, the calibration.

``<stem>`` is ``<city>_<sequence>_<frame>`` (``aachen_000000_000019``); splits ``train`` (2975
frames) and ``val`` (500 -> stored split ``validation``). The ``test`` frames (1525) have no public
labels and are not built (model_spec §2.6: paper 001's val + test evaluation cannot be reproduced;
use val).

Stored (``data_builders.common``), docs/model_spec.md §9.2:

* ``segmentation``: trainIds 0..18 (``meta.CITYSCAPES19_CLASS_NAMES``) from the label ids through
  ``meta.CITYSCAPES_LABEL_ID_TO_TRAIN_ID``; every other id -> 255 (ignore).
* ``depth`` metres: ``p > 1`` -> disparity ``d = (p - 1) / 256`` pixels, ``depth = baseline * fx /
  d`` with ``extrinsic.baseline`` (metres) and ``intrinsic.fx`` (pixels) of the frame's camera json.
  ``p = 0`` (no measurement) and ``p = 1`` (disparity 0, infinitely far) -> 0 = invalid.
* ``intrinsics``: ``(intrinsic.fx, intrinsic.fy, intrinsic.u0, intrinsic.v0)`` of the camera json.

Config ``full`` (default) stores the 2048 x 1024 frames; ``half`` stores 1024 x 512 made with
``semdepth_jax.data.transforms.resize`` (RGB bilinear, antialiased; labels and depth nearest
neighbour, so depth holds only measured values; intrinsics ``f / 2``, ``c' = (c + 0.5) / 2 - 0.5``).
Depth is computed at full resolution, where the disparity was measured, before resizing.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_builders import archive, common
from semdepth_jax.data import meta as meta_lib
from semdepth_jax.data import transforms

INPUTS = {
  "leftImg8bit": "leftImg8bit_trainvaltest.zip",
  "gtFine": "gtFine_trainvaltest.zip",
  "disparity": "disparity_trainvaltest.zip",
  "camera": "camera_trainvaltest.zip",
}
"""Folder -> official archive of each required input."""
SPLITS = {"train": "train", "validation": "val"}
"""Stored split -> Cityscapes folder. ``test`` is not built (no public labels)."""
NUM_LABEL_IDS = len(meta_lib.CITYSCAPES_LABEL_ID_TO_TRAIN_ID)  # ids 0..33 in *_gtFine_labelIds.png.
DISPARITY_SCALE = 256.0  # disparity PNG code units per pixel of disparity (after subtracting 1).
_FILES = {
  "leftImg8bit": "_leftImg8bit.png",
  "gtFine": "_gtFine_labelIds.png",
  "disparity": "_disparity.png",
  "camera": "_camera.json",
}
_CAMERA_KEYS = (
  "extrinsic.baseline",
  "intrinsic.fx",
  "intrinsic.fy",
  "intrinsic.u0",
  "intrinsic.v0",
)

_INSTRUCTIONS = """\
Download from https://www.cityscapes-dataset.com/downloads/ (free registration, research licence)
and put into `manual_dir`, as the zip archives or extracted (archives are read in place, nothing is
extracted):

  leftImg8bit_trainvaltest.zip  (11 GB)  or  leftImg8bit/{train,val}/<city>/<stem>_leftImg8bit.png
  gtFine_trainvaltest.zip       (241 MB) or  gtFine/{train,val}/<city>/<stem>_gtFine_labelIds.png
  disparity_trainvaltest.zip    (3.5 GB) or  disparity/{train,val}/<city>/<stem>_disparity.png
  camera_trainvaltest.zip       (2 MB)   or  camera/{train,val}/<city>/<stem>_camera.json

(the folders or archives may also sit one level below `manual_dir`). Splits: train (2975 frames) and
val (500, stored as `validation`). The test frames have no public labels and are not built, even if
present. Every frame of leftImg8bit/{train,val} needs all four files.
"""


@dataclasses.dataclass(eq=False)
class CityscapesConfig(tfds.core.BuilderConfig):
  """Builder config of ``cityscapes``.

  Attributes:
    downsample: integer factor by which the 2048 x 1024 frames are reduced before storing (1 = full
      size); the frame size must be divisible by it.
  """

  downsample: int = 1


class Builder(common.ArrayRecordByDefault, tfds.core.GeneratorBasedBuilder):
  """Cityscapes (Cordts et al. 2016): RGB, 19-class labels, stereo depth (metres), intrinsics.

  Registered as ``cityscapes`` (TFDS derives it from this module's name; this project's builder
  replaces TFDS's own ``cityscapes``, which has no depth). See the module docstring for inputs and
  units.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
    "1.0.0": "Initial release: train / validation, 19 trainIds, depth from disparity."
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
    CityscapesConfig(name="full", downsample=1, description="Full size, 2048 x 1024."),
    CityscapesConfig(name="half", downsample=2, description="Half size, 1024 x 512."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "full"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.example_features(),
      homepage="https://www.cityscapes-dataset.com/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    factor = self.builder_config.downsample
    if not isinstance(factor, int) or factor < 1:
      raise ValueError(f"cityscapes config {self.builder_config.name!r}: downsample must be >= 1")
    inputs = find_inputs(epath.Path(dl_manager.manual_dir))
    frames = list_frames(inputs)
    return {
      split: self._generate_examples(inputs, SPLITS[split], items, factor)
      for split, items in frames.items()
      if items
    }

  def _generate_examples(
    self, inputs: dict[str, archive.ZipOrFolder], folder: str, items: list[str], factor: int
  ) -> Iterator[tuple[str, dict]]:
    for item in items:
      example = load_frame(inputs, folder, item, factor)
      yield example["file_name"], example


def find_inputs(manual_dir: epath.Path) -> dict[str, archive.ZipOrFolder]:
  """Finds the four inputs (folder or archive each) in ``manual_dir``.

  Raises:
    FileNotFoundError: one message naming every input that is neither an archive nor a folder there.
  """
  found = {
    folder: archive.find_input(manual_dir, folder, zip_name) for folder, zip_name in INPUTS.items()
  }
  missing = [
    f"{zip_name} (or folder {folder}/)" for folder, zip_name in INPUTS.items() if not found[folder]
  ]
  if missing:
    listing = "\n  ".join(missing)
    raise FileNotFoundError(
      f"{len(missing)} required input(s) missing under {manual_dir} (and one level below):\n  "
      f"{listing}\n{_INSTRUCTIONS}".rstrip()
    )
  return found


def frame_path(inputs: dict[str, archive.ZipOrFolder], kind: str, folder: str, item: str):
  """One file of a frame: ``kind`` in INPUTS, ``folder`` train/val, ``item`` ``<city>/<stem>``."""
  return inputs[kind].file(f"{kind}/{folder}/{item}{_FILES[kind]}")


def list_frames(inputs: dict[str, archive.ZipOrFolder]) -> dict[str, list[str]]:
  """Lists the frames (``<city>/<stem>``) of each stored split; checks that all their files exist.

  Frames are those of ``leftImg8bit/{train,val}/*/*_leftImg8bit.png``, sorted.

  Raises:
    FileNotFoundError: no frames at all, or one message listing the missing label, disparity and
      camera files.
  """
  suffix = _FILES["leftImg8bit"]
  frames = {}
  for split, folder in SPLITS.items():
    names = inputs["leftImg8bit"].glob(f"leftImg8bit/{folder}/*/*{suffix}")
    frames[split] = [n[len(f"leftImg8bit/{folder}/") : -len(suffix)] for n in names]
  if not any(frames.values()):
    raise FileNotFoundError(
      f"no frames leftImg8bit/{{train,val}}/<city>/*{suffix} in {inputs['leftImg8bit'].where()}\n"
      f"{_INSTRUCTIONS}".rstrip()
    )
  required = [
    frame_path(inputs, kind, SPLITS[split], item)
    for split, items in frames.items()
    for item in items
    for kind in ("gtFine", "disparity", "camera")
  ]
  archive.check_present(
    required, ", ".join(inputs[k].where() for k in ("gtFine", "disparity", "camera")), _INSTRUCTIONS
  )
  return frames


def label_lut() -> np.ndarray:
  """Look-up table label id -> stored trainId: int16 (256,), -1 for ids above 33 (not label ids)."""
  lut = np.full(256, -1, np.int16)
  lut[:NUM_LABEL_IDS] = meta_lib.CITYSCAPES_LABEL_ID_TO_TRAIN_ID
  return lut


def read_camera(path) -> tuple[float, tuple[float, float, float, float]]:
  """Reads a ``*_camera.json``: baseline (metres) and intrinsics (fx, fy, u0, v0) in pixels.

  Raises:
    ValueError: unreadable JSON, or a key of ``extrinsic.baseline``, ``intrinsic.fx/fy/u0/v0``
      missing or not a finite number (baseline, fx and fy must be > 0); the message names the file
      and the key.
  """
  try:
    camera = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise ValueError(f"{path}: cannot read camera json: {e}") from e
  values = {}
  for key in _CAMERA_KEYS:
    group, field = key.split(".")
    block = camera.get(group) if isinstance(camera, dict) else None
    value = block.get(field) if isinstance(block, dict) else None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (field in ("baseline", "fx", "fy") and value <= 0):
      kind = "a positive number" if field in ("baseline", "fx", "fy") else "a finite number"
      raise ValueError(f"{path}: camera json key {key!r} must be {kind}, got {value!r}")
    values[key] = float(value)
  baseline, fx, fy, u0, v0 = (values[k] for k in _CAMERA_KEYS)
  return baseline, (fx, fy, u0, v0)


def disparity_to_depth(code: np.ndarray, baseline: float, fx: float) -> np.ndarray:
  """Converts a Cityscapes disparity PNG to depth in metres (docs/model_spec.md §9.2).

  Args:
    code: uint16 (H, W) PNG values ``p``.
    baseline: stereo baseline in metres (``extrinsic.baseline``).
    fx: focal length in pixels (``intrinsic.fx``).

  Returns:
    float32 (H, W): ``baseline * fx / ((p - 1) / 256)`` where ``p > 1``; 0 (invalid) where ``p``
    is 0 (no measurement) or 1 (zero disparity).
  """
  p = np.asarray(code, np.float64)
  valid = p > 1
  depth = np.zeros(p.shape, np.float64)
  depth[valid] = baseline * fx * DISPARITY_SCALE / (p[valid] - 1.0)
  return depth.astype(np.float32)


def load_frame(
  inputs: dict[str, archive.ZipOrFolder], folder: str, item: str, factor: int = 1
) -> dict:
  """Decodes one frame into the stored example (``common.make_example``).

  Args:
    inputs: the four inputs (``find_inputs``).
    folder: ``train`` or ``val``.
    item: ``<city>/<stem>``.
    factor: downsampling factor (config ``downsample``).

  Raises:
    ValueError: undecodable PNG, bad camera json, sizes that disagree, label ids above 33, or a size
      not divisible by ``factor``; the message names the file.
  """
  rgb_path = frame_path(inputs, "leftImg8bit", folder, item)
  label_path = frame_path(inputs, "gtFine", folder, item)
  disparity_path = frame_path(inputs, "disparity", folder, item)
  camera_path = frame_path(inputs, "camera", folder, item)
  image = common.read_png(rgb_path, "rgb")
  raw = common.read_png(label_path, "uint8")
  code = common.read_png(disparity_path, "uint16")
  baseline, intrinsics = read_camera(camera_path)
  for path, array in ((label_path, raw), (disparity_path, code)):
    if array.shape != image.shape[:2]:
      raise ValueError(
        f"{path}: size (H, W) = {array.shape} does not match {rgb_path.name} {image.shape[:2]}"
      )
  labels = label_lut()[raw]
  if (labels < 0).any():
    bad = np.unique(raw[labels < 0]).tolist()
    raise ValueError(
      f"{label_path}: label ids {bad[:10]} outside 0..{NUM_LABEL_IDS - 1}"
      " (expected the *_gtFine_labelIds.png ids)"
    )
  example = {
    "image": image,
    "depth": disparity_to_depth(code, baseline, intrinsics[0]),
    "segmentation": labels,
    "intrinsics": np.asarray(intrinsics, np.float64),
  }
  h, w = image.shape[:2]
  if factor != 1:
    if h % factor or w % factor:
      raise ValueError(f"{rgb_path}: size {h} x {w} is not divisible by downsample {factor}")
    example = transforms.resize(example, (h // factor, w // factor))
  stem = item.rsplit("/", 1)[-1]
  return common.make_example(
    image=example["image"],
    depth=example["depth"],
    segmentation=example["segmentation"],
    intrinsics=example["intrinsics"],
    file_name=stem,
    num_classes=len(meta_lib.CITYSCAPES19_CLASS_NAMES),
    source=str(rgb_path),
  )
