"""TFDS builder ``synthia_al``: SYNTHIA-AL (Bengar et al. 2019) for paper 000, 14 classes, two depth decodings.

Input (the layout paper 000's code R0 reads; ``docs/model_spec.md`` §9.1)::

  train/<sequence>/RGB/<frame>.png      uint8 RGB
  train/<sequence>/Depth/<frame>.png    uint8 RGB, 24-bit encoded depth
  train/<sequence>/SemSeg/<frame>.png   class id 0..22 in the first (R) channel
  test/<sequence>/...                   the same

R0 pairs the files of a sequence by sorted order; here they are paired by file name (the same pairing when
the three folders hold the same names) and a frame missing in one folder is an error.

Labels (R0 ``procesar_etiquetas``, §9.1 table): raw id (R channel = channel 2 of ``cv2.imread``) -> SSegDep-Net
14 classes (``semdepth_jax.data.meta.SSEGDEP_CLASS_NAMES``): 11 -> 1 Sky; 3, 4 -> 2 Building; 1, 10 -> 3 Road;
2 -> 4 Sidewalk; 5 -> 5 Fence; 9 -> 6 Vegetation; 6 -> 7 Pole; 14..17 -> 8 Vehicle; 8 -> 9 Sign; 12 -> 10
Pedestrian; 13, 18, 19 -> 11 Cyclist; 20 -> 12 Lanemark; 7 -> 13 Traffic light; 0, 21, 22 and every other
value -> 0 Miscellaneous. No pixel is ignored (R0 has no ignore label).

Depth (R, G, B = the PNG's channels, 8 bits each; configs):

* ``metric`` (default): ``5000 (R + 256 G + 65536 B) / (2^24 - 1)`` metres, clipped at 256 m (the saturation
  of paper 000's target, see ``r0``). This assumes SYNTHIA's 24-bit convention with R the least significant
  byte (the convention of the SYNTHIA family and CARLA/SHIFT, whose depth PNGs share this scheme; §9.1 marks it
  as not verified on SYNTHIA-AL files).
* ``r0``: exactly what R0 ``procesar_deph`` computes, times 256 to give metres: R0 reads BGR uint8 with cv2
  and evaluates ``5000 (G + 256 B + 65536 R) / (2^24 - 1)``; under NumPy 1.x value-based casting the R term
  is computed in uint16 and overflows to 0, so the value it uses is ``5000 (G + 256 B) / (2^24 - 1)`` in
  [0, 19.53]. Stored: 256 times that (exact in floating point), up to 5000 m, not clipped. Under the R-low
  convention this equals the metric depth less ``5000 R / (2^24 - 1)`` (at most 7.6 cm). R0's network target
  is then ``1 - min(depth / 256, 1)`` after resizing.

Both: 0 = 0 (no invalid marker exists; zero-distance pixels do not occur). Intrinsics unknown (zeros).
Splits: ``train`` and ``test`` as in the folders. Keys: ``<sequence>_<frame>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_builders import common, png16
from data_builders.synthia_al import meta as al_meta
from semdepth_jax.data import meta as meta_lib

DEPTH_RANGE_M = 5000.0  # metres of the largest 24-bit code.
_CODE_MAX = 2**24 - 1
_FOLDERS = ("RGB", "Depth", "SemSeg")
# Raw SYNTHIA-AL id -> SSegDep-Net class (R0 procesar_etiquetas); ids not listed -> 0 Miscellaneous.
RAW_TO_SSEGDEP = {
  11: 1,
  3: 2,
  4: 2,
  1: 3,
  10: 3,
  2: 4,
  5: 5,
  9: 6,
  6: 7,
  14: 8,
  15: 8,
  16: 8,
  17: 8,
  8: 9,
  12: 10,
  13: 11,
  18: 11,
  19: 11,
  20: 12,
  7: 13,
}

_INSTRUCTIONS = """\
Download SYNTHIA-AL (http://synthia-dataset.net/downloads/) and put its sequences into `manual_dir` in the
layout of paper 000's code (the folder holding train/ and test/ may sit up to two levels below `manual_dir`,
or be packed as one .zip / .tar / .tar.gz / .tgz / .tar.bz2 / .tar.xz archive, extracted into the TFDS
download folder):

  train/<sequence>/RGB/<frame>.png       uint8 RGB
  train/<sequence>/Depth/<frame>.png     uint8 RGB, 24-bit depth
  train/<sequence>/SemSeg/<frame>.png    class id 0..22 in the R channel
  test/<sequence>/RGB|Depth|SemSeg/...   the same

Every frame needs all three PNGs (paired by file name). Configs: `metric` (default) and `r0` depth decoding.
"""


@dataclasses.dataclass(eq=False)
class SynthiaAlConfig(tfds.core.BuilderConfig):
  """Builder config of ``synthia_al``.

  Attributes:
    depth_decoding: ``"metric"`` (24-bit metres clipped at 256 m) or ``"r0"`` (R0's arithmetic x 256).
  """

  depth_decoding: str = "metric"


class Builder(common.ArrayRecordByDefault, tfds.core.GeneratorBasedBuilder):
  """SYNTHIA-AL as used by paper 000: RGB, depth in metres (two decodings), 14 SSegDep-Net classes.

  Registered as ``synthia_al``. See the module docstring for layout and decodings.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: configs metric and r0."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
    SynthiaAlConfig(
      name="metric",
      depth_decoding="metric",
      description="24-bit depth in metres, 256 m saturation.",
    ),
    SynthiaAlConfig(
      name="r0", depth_decoding="r0", description="Paper 000 code's depth arithmetic."
    ),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "metric"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.example_features(),
      homepage="http://synthia-dataset.net/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    decoding = self.builder_config.depth_decoding
    if decoding not in ("metric", "r0"):
      raise ValueError(f"depth_decoding must be 'metric' or 'r0', got {decoding!r}")
    manual_dir = epath.Path(dl_manager.manual_dir)
    extract = dl_manager.download_dir / "extracted"
    root = common.locate_root(manual_dir, "train", extract)
    if not (root / "train").is_dir():
      root = common.locate_root(manual_dir, "test", extract)
    splits = {s: list_frames(root / s) for s in ("train", "test") if (root / s).is_dir()}
    if not any(splits.values()):
      raise FileNotFoundError(
        f"no frames found: expected {root}/train/<sequence>/RGB/*.png or {root}/test/...\n{_INSTRUCTIONS}"
      )
    meta = meta_lib.get_meta(f"synthia_al/{decoding}")
    lut = label_lut()
    return {
      name: self._generate_examples(root / name, frames, lut, decoding, meta)
      for name, frames in splits.items()
      if frames
    }

  def _generate_examples(
    self,
    split_dir: epath.Path,
    frames: list[tuple[str, str]],
    lut: np.ndarray,
    decoding: str,
    meta: meta_lib.DatasetMeta,
  ) -> Iterator[tuple[str, dict]]:
    for sequence, stem in frames:
      yield f"{sequence}_{stem}", load_frame(split_dir / sequence, stem, lut, decoding, meta)


def list_frames(split_dir: epath.Path) -> list[tuple[str, str]]:
  """``(sequence, frame stem)`` of every frame of a split folder, after checking all three PNGs exist.

  Raises:
    FileNotFoundError: one message listing every missing PNG.
  """
  frames, required = [], []
  for seq in sorted(p for p in split_dir.iterdir() if p.is_dir()):
    stems = sorted(
      {p.stem for f in _FOLDERS if (seq / f).is_dir() for p in (seq / f).glob("*.png")}
    )
    frames += [(seq.name, s) for s in stems]
    required += [seq / f / f"{s}.png" for s in stems for f in _FOLDERS]
  common.check_files_exist(required, str(split_dir), _INSTRUCTIONS)
  return frames


def label_lut() -> np.ndarray:
  """uint8 (65536,) raw SYNTHIA-AL id -> SSegDep-Net class 0..13 (unlisted ids -> 0 Miscellaneous)."""
  lut = np.zeros(65536, np.uint8)
  for raw, cls in RAW_TO_SSEGDEP.items():
    lut[raw] = cls
  return lut


def decode_depth(rgb: np.ndarray, decoding: str, source: str) -> np.ndarray:
  """24-bit depth PNG samples -> float32 (H, W) metres.

  Args:
    rgb: uint8 (H, W, C >= 3) samples in PNG order R, G, B[, A].
    decoding: ``"metric"`` or ``"r0"`` (see the module docstring).
    source: named in errors.

  Raises:
    ValueError: fewer than 3 channels or not 8-bit.
  """
  if rgb.dtype != np.uint8 or rgb.shape[-1] < 3:
    raise ValueError(
      f"{source}: expected an 8-bit RGB depth PNG, got {rgb.dtype} with {rgb.shape[-1]} channel(s)"
    )
  r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
  if decoding == "metric":
    metres = DEPTH_RANGE_M * (r + 256 * g + 65536 * b) / _CODE_MAX
    return np.minimum(metres, al_meta.SATURATION_M).astype(np.float32)
  r0_value = (
    DEPTH_RANGE_M * (g + 256 * b) / float(_CODE_MAX)
  )  # R0's uint16 result; R * 65536 wrapped.
  return (r0_value * al_meta.SATURATION_M).astype(np.float32)


def load_frame(
  seq_dir: epath.Path, stem: str, lut: np.ndarray, decoding: str, meta: meta_lib.DatasetMeta
) -> dict:
  """Decodes one frame into the stored example.

  Raises:
    ValueError: undecodable PNG, a depth PNG that is not 8-bit RGB, or sizes that disagree; the message
      names the file.
  """
  rgb_path, depth_path, label_path = (seq_dir / f / f"{stem}.png" for f in _FOLDERS)
  image = common.read_png(rgb_path, "rgb")
  depth = decode_depth(png16.read_png_channels(depth_path), decoding, str(depth_path))
  labels = lut[png16.read_png_channels(label_path)[..., 0]]
  for path, array in ((depth_path, depth), (label_path, labels)):
    if array.shape != image.shape[:2]:
      raise ValueError(
        f"{path}: size (H, W) = {array.shape} does not match {rgb_path.name} {image.shape[:2]}"
      )
  return common.make_example(
    image=image,
    depth=depth,
    segmentation=labels,
    intrinsics=None,
    file_name=f"{seq_dir.name}_{stem}",
    num_classes=meta.num_classes,
    source=str(rgb_path),
  )
