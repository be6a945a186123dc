"""TFDS builder ``synthetic_city``: procedurally rendered street scenes with exact depth and 14 classes.

Nothing is downloaded: every frame is ray-cast in numpy by :mod:`data_builders.synthetic_city.render` from
a seed derived from ``(config.seed, split, index)``, so any frame can be regenerated on its own and a build
is reproducible bit for bit.

Stored (``data_builders.common``): ``image`` uint8 (H, W, 3); ``depth`` float32 (H, W) planar depth z in
metres, 0 for sky and for hits at or beyond the far limit ``get_meta('synthetic_city').max_depth``
(80 m); ``segmentation`` training ids 0..13 of the SSegDep-Net label set (docs/model_spec.md §9.1,
``semdepth_jax.data.meta.SSEGDEP_CLASS_NAMES``; every pixel is labelled, no 255); ``intrinsics``
(fx, fy, cx, cy) with fx = fy = (W / 2) / tan(hfov / 2), cx = (W - 1) / 2, cy = (H - 1) / 2; ``file_name``
``f"{split}_{index:05d}"`` (also the example key).

Usage (no TensorFlow needed)::

  builder = SyntheticCity(config="tiny", data_dir=tmp)        # or "default"
  builder.download_and_prepare()                             # array_record by default
  source = builder.as_data_source("train")
  # Other sizes: SyntheticCity(config=SyntheticCityConfig(name="hd", height=384, width=640), ...)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
from collections.abc import Iterable, Iterator

import tensorflow_datasets as tfds

from data_builders import common
from data_builders.synthetic_city import render
from semdepth_jax.data import meta as meta_lib

_META = meta_lib.get_meta("synthetic_city")
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(eq=False)
class SyntheticCityConfig(tfds.core.BuilderConfig):
  """Builder config of ``synthetic_city``: image size, frame counts and seed.

  Attributes:
    height: image height in pixels (>= 8).
    width: image width in pixels (>= 8).
    num_train: frames in ``train`` (>= 0).
    num_validation: frames in ``validation`` (>= 0).
    num_test: frames in ``test`` (>= 0).
      A split with 0 frames is not written (TFDS cannot store empty splits).
    seed: base seed (>= 0); frame ``i`` of split ``s`` uses ``render.frame_seed(seed, s, i)``.
    hfov_deg: horizontal field of view in degrees, in (0, 180).
  """

  height: int = 192
  width: int = 320
  num_train: int = 400
  num_validation: int = 100
  num_test: int = 100
  seed: int = 0
  hfov_deg: float = 80.0

  def __post_init__(self):
    errors = []
    if self.height < 8 or self.width < 8:
      errors.append(f"height and width must be >= 8 pixels, got {self.height}x{self.width}")
    for field in ("num_train", "num_validation", "num_test", "seed"):
      if getattr(self, field) < 0:
        errors.append(f"{field} must be >= 0, got {getattr(self, field)}")
    if not 0.0 < self.hfov_deg < 180.0:
      errors.append(f"hfov_deg must be in (0, 180), got {self.hfov_deg}")
    if errors:
      raise ValueError(f"SyntheticCityConfig {self.name!r}: " + "; ".join(errors))

  def num_examples(self, split: str) -> int:
    """Number of frames of ``split`` ('train', 'validation' or 'test')."""
    if split not in SPLITS:
      raise ValueError(f"SyntheticCityConfig: unknown split {split!r}; expected one of {SPLITS}")
    return int(getattr(self, f"num_{split}"))


class SyntheticCity(tfds.core.GeneratorBasedBuilder):
  """Procedural street scenes (RGB, exact planar depth in metres, 14 SSegDep-Net classes).

  Registered with TFDS as ``synthetic_city``. Configs: ``default`` (192 x 320, the paper-000 input size;
  400 / 100 / 100 frames) and ``tiny`` (48 x 80; 16 / 8 / 8 frames, for tests). Files are written as
  ``array_record`` unless another ``file_format`` is passed, so building and reading need no TensorFlow.
  See the module docstring of :mod:`data_builders.synthetic_city.render` for the scene model.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: ray-cast street scenes, default and tiny configs."}
  BUILDER_CONFIGS = [
    SyntheticCityConfig(
      name="default",
      description="192x320 frames (paper-000 input size): 400 train / 100 validation / 100 test.",
    ),
    SyntheticCityConfig(
      name="tiny",
      description="48x80 frames for tests: 16 train / 8 validation / 8 test.",
      height=48,
      width=80,
      num_train=16,
      num_validation=8,
      num_test=8,
    ),
  ]
  DEFAULT_CONFIG_NAME = "default"

  def __init__(self, *, file_format=None, num_workers: int = 1, **kwargs):
    """Same arguments as ``tfds.core.GeneratorBasedBuilder``, plus ``num_workers``.

    Args:
      file_format: TFDS file format; default ``"array_record"`` (readable without TensorFlow).
      num_workers: processes that render frames during ``download_and_prepare`` (``spawn`` start
        method; scripts that build with > 1 worker need an ``if __name__ == "__main__":`` guard).
        Frames are seeded independently, so the output does not depend on it.
      **kwargs: passed to ``tfds.core.GeneratorBasedBuilder`` (``config``, ``data_dir``, ...).

    Raises:
      ValueError: ``num_workers < 1``.
    """
    if num_workers < 1:
      raise ValueError(f"SyntheticCity: num_workers must be >= 1, got {num_workers}")
    self._num_workers = int(num_workers)
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return self.dataset_info_from_configs(
      features=common.example_features(cfg.height, cfg.width),
      supervised_keys=None,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    # TFDS cannot write an empty split: splits configured with 0 frames are left out.
    cfg = self.builder_config
    return {s: self._generate_examples(s) for s in SPLITS if cfg.num_examples(s) > 0}

  def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
    cfg = self.builder_config
    jobs = [
      (cfg.height, cfg.width, cfg.seed, split, index, cfg.hfov_deg, _META.max_depth)
      for index in range(cfg.num_examples(split))
    ]
    for job, (image, depth, labels, intrinsics) in zip(
      jobs, iter_rendered(jobs, self._num_workers), strict=True
    ):
      key = f"{split}_{job[4]:05d}"
      yield (
        key,
        common.make_example(
          image=image,
          depth=depth,
          segmentation=labels,
          intrinsics=intrinsics,
          file_name=key,
          num_classes=_META.num_classes,
          source=f"synthetic_city/{cfg.name} {key} (seed {cfg.seed})",
        ),
      )


def iter_rendered(jobs: Iterable[tuple], num_workers: int = 1) -> Iterator[tuple]:
  """Yields ``render.render_arrays(job)`` for each job, in order, using ``num_workers`` processes.

  Args:
    jobs: ``(height, width, seed, split, index, hfov_deg, far)`` tuples.
    num_workers: 1 renders in this process; more uses a ``spawn`` process pool (results are identical).
  """
  jobs = list(jobs)
  if num_workers <= 1 or len(jobs) < 2:
    yield from map(render.render_arrays, jobs)
    return
  ctx = multiprocessing.get_context("spawn")
  workers = min(num_workers, len(jobs))
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
    yield from pool.map(render.render_arrays, jobs, chunksize=4)


Builder = SyntheticCity
"""Alias read by ``data_builders.get_builder_class``."""
