"""TFDS builder ``synthia_rand_cityscapes``: SYNTHIA-RAND-CITYSCAPES (Ros et al. 2016), 9,400 frames.

Input (the extracted ``RAND_CITYSCAPES`` folder; ``docs/model_spec.md`` §9.6)::

  RGB/NNNNNNN.png            uint8 RGB, 1280 x 760
  Depth/Depth/NNNNNNN.png    uint16 per channel, depth in centimetres (every channel holds it)
  GT/LABELS/NNNNNNN.png      uint16 per channel: first channel (R) = class id 0..22, second = instance id
  (GT/COLOR/ is not used)

Depth follows the SYNTHIA loader of BenBausch/Depth-Semantic-UDA (model_spec source SYN): channel 0 of
``cv2.imread(..., IMREAD_UNCHANGED)``, i.e. the PNG's third channel (cv2 orders channels B, G, R), / 100 =
metres; 0 stays 0 (invalid). Sky and far pixels keep their large values; paper 002's 80 m rule is applied by
the loss / metrics (``meta.max_depth``), not here. Labels: the class id in the first (R) channel (cv2 channel
2), mapped per config: ``cityscapes19`` (default) -> Cityscapes trainIds (void, parking-slot, road-work ->
255; lanemarking -> road, as Cityscapes labels lane markings as road); ``synthia22`` -> raw id - 1 for ids
1..22, void 0 -> 255. Both 16-bit files are decoded losslessly by ``png16`` (PIL would keep only the high
byte of each sample).

Split (no published train/test split exists; paper 002 does not give one, model_spec §3.3): frame number
``n % 10 == 0`` -> ``test`` (940 frames), others -> ``train`` (8,460). The frames are independent random
renders (no sequence), so an interleaved rule keeps both splits alike.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_builders import common, png16
from semdepth_jax.data import meta as meta_lib

DEPTH_SCALE = 100.0  # Depth PNG value per metre (centimetres).
TEST_EVERY = 10  # frame number % TEST_EVERY == 0 -> test.
NUM_RAW_IDS = 23  # 0 void, 1..22 classes.
_FOLDERS = ("RGB", "Depth/Depth", "GT/LABELS")
_MARKER = "GT/LABELS"
_FRAME_RE = re.compile(r"\d+")
# SYNTHIA raw id -> Cityscapes trainId (by class name; 255 = no Cityscapes counterpart).
SYNTHIA_TO_CITYSCAPES = {
  0: 255,  # void
  1: 10,  # sky
  2: 2,  # building
  3: 0,  # road
  4: 1,  # sidewalk
  5: 4,  # fence
  6: 8,  # vegetation
  7: 5,  # pole
  8: 13,  # car
  9: 7,  # traffic sign
  10: 11,  # pedestrian -> person
  11: 18,  # bicycle
  12: 17,  # motorcycle
  13: 255,  # parking-slot
  14: 255,  # road-work
  15: 6,  # traffic light
  16: 9,  # terrain
  17: 12,  # rider
  18: 14,  # truck
  19: 15,  # bus
  20: 16,  # train
  21: 3,  # wall
  22: 0,  # lanemarking -> road
}

_INSTRUCTIONS = """\
Download SYNTHIA-RAND-CITYSCAPES (http://synthia-dataset.net/downloads/, "SYNTHIA-RAND-CITYSCAPES (CVPR16)")
and put the extracted `RAND_CITYSCAPES` folder into `manual_dir` (it may sit up to two levels below it), or
repack it as one .zip / .tar / .tar.gz / .tgz / .tar.bz2 / .tar.xz archive in `manual_dir` (the official .rar
must be extracted first; archives are extracted into the TFDS download folder):

  RAND_CITYSCAPES/RGB/NNNNNNN.png           uint8 RGB
  RAND_CITYSCAPES/Depth/Depth/NNNNNNN.png   uint16, centimetres
  RAND_CITYSCAPES/GT/LABELS/NNNNNNN.png     uint16, class id in the first channel

Every frame needs all three PNGs. Split: frame number % 10 == 0 -> test, others -> train.
"""


@dataclasses.dataclass(eq=False)
class SynthiaRandConfig(tfds.core.BuilderConfig):
  """Builder config of ``synthia_rand_cityscapes``.

  Attributes:
    label_set: ``"cityscapes19"`` (Cityscapes trainIds 0..18) or ``"synthia22"`` (raw ids 1..22 -> 0..21).
  """

  label_set: str = "cityscapes19"


class Builder(common.ArrayRecordByDefault, tfds.core.GeneratorBasedBuilder):
  """SYNTHIA-RAND-CITYSCAPES: synthetic street frames with depth (metres) and 19 / 22-class labels.

  Registered as ``synthia_rand_cityscapes``. See the module docstring for layout, decoding and split.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
    "1.0.0": "Initial release: configs cityscapes19 and synthia22, n % 10 == 0 test split."
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
    SynthiaRandConfig(
      name="cityscapes19", label_set="cityscapes19", description="Cityscapes 19 trainIds."
    ),
    SynthiaRandConfig(name="synthia22", label_set="synthia22", description="SYNTHIA's 22 classes."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "cityscapes19"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.example_features(),
      homepage="http://synthia-dataset.net/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    label_set = self.builder_config.label_set
    if label_set not in ("cityscapes19", "synthia22"):
      raise ValueError(f"label_set must be 'cityscapes19' or 'synthia22', got {label_set!r}")
    manual_dir = epath.Path(dl_manager.manual_dir)
    root = common.locate_root(manual_dir, _MARKER, dl_manager.download_dir / "extracted")
    common.check_files_exist([root / f for f in _FOLDERS], str(root), _INSTRUCTIONS)
    stems = list_frames(root)
    meta = meta_lib.get_meta(f"synthia_rand_cityscapes/{label_set}")
    lut = label_lut(label_set)
    splits = {"train": [], "test": []}
    for stem in stems:
      splits["test" if int(stem) % TEST_EVERY == 0 else "train"].append(stem)
    return {
      name: self._generate_examples(root, frames, lut, meta)
      for name, frames in splits.items()
      if frames
    }

  def _generate_examples(
    self, root: epath.Path, stems: list[str], lut: np.ndarray, meta: meta_lib.DatasetMeta
  ) -> Iterator[tuple[str, dict]]:
    for stem in stems:
      yield stem, load_frame(root, stem, lut, meta)


def list_frames(root: epath.Path) -> list[str]:
  """Sorted frame stems after checking that every frame has its RGB, depth and label PNG.

  Raises:
    FileNotFoundError: no frames, or one message listing every missing PNG.
    ValueError: a file stem that is not a frame number (named).
  """
  stems = sorted({p.stem for folder in _FOLDERS for p in (root / folder).glob("*.png")})
  if not stems:
    raise FileNotFoundError(f"no frames (*.png) in {root / 'RGB'}\n{_INSTRUCTIONS}")
  bad = [s for s in stems if not _FRAME_RE.fullmatch(s)]
  if bad:
    raise ValueError(f"{root}: frame files must be named by number (NNNNNNN.png), found {bad[:5]}")
  common.check_files_exist(
    [root / folder / f"{stem}.png" for stem in stems for folder in _FOLDERS],
    str(root),
    _INSTRUCTIONS,
  )
  return stems


def label_lut(label_set: str) -> np.ndarray:
  """uint8 (NUM_RAW_IDS,) raw SYNTHIA id -> stored training id (255 = ignore) for a label set."""
  if label_set == "cityscapes19":
    return np.array([SYNTHIA_TO_CITYSCAPES[i] for i in range(NUM_RAW_IDS)], np.uint8)
  return np.array([meta_lib.IGNORE_INDEX] + list(range(NUM_RAW_IDS - 1)), np.uint8)


def decode_depth(samples: np.ndarray, source: str) -> np.ndarray:
  """Depth PNG samples (H, W, C) uint16 -> float32 (H, W) metres (cv2 channel 0 = last colour channel).

  Raises:
    ValueError: not a 16-bit PNG (named with ``source``).
  """
  if samples.dtype != np.uint16:
    raise ValueError(f"{source}: expected a 16-bit depth PNG (centimetres), got 8-bit samples")
  channel = samples[..., 0] if samples.shape[-1] == 1 else samples[..., 2]
  return channel.astype(np.float32) / np.float32(DEPTH_SCALE)


def load_frame(root: epath.Path, stem: str, lut: np.ndarray, meta: meta_lib.DatasetMeta) -> dict:
  """Decodes one frame into the stored example.

  Raises:
    ValueError: undecodable PNG, 8-bit depth, class ids above 22, or sizes that disagree; the message names
      the file.
  """
  rgb_path = root / "RGB" / f"{stem}.png"
  depth_path = root / "Depth" / "Depth" / f"{stem}.png"
  label_path = root / "GT" / "LABELS" / f"{stem}.png"
  image = common.read_png(rgb_path, "rgb")
  depth = decode_depth(png16.read_png_channels(depth_path), str(depth_path))
  raw = png16.read_png_channels(label_path)[..., 0]
  if raw.max(initial=0) >= NUM_RAW_IDS:
    bad = np.unique(raw[raw >= NUM_RAW_IDS]).tolist()[:10]
    raise ValueError(f"{label_path}: class ids {bad} outside 0..{NUM_RAW_IDS - 1}")
  for path, array in ((depth_path, depth), (label_path, raw)):
    if array.shape != image.shape[:2]:
      raise ValueError(
        f"{path}: size (H, W) = {array.shape} does not match {rgb_path.name} {image.shape[:2]}"
      )
  return common.make_example(
    image=image,
    depth=depth,
    segmentation=lut[raw],
    intrinsics=None,
    file_name=stem,
    num_classes=meta.num_classes,
    source=str(rgb_path),
  )
