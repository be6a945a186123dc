"""Input pipeline: grain over ``tfds.data_source``, sharded per process, deterministic and checkpointable.

A *source* is any random-access sequence of decoded stored examples (``len(source)`` and
``source[i] -> dict``), e.g. ``tfds.data_source(...)`` or a list of dicts in tests. The stored example format
is fixed in ``data_builders/common.py``; transforms live in ``semdepth_jax.data.transforms``.

Batches (per process, numpy; the format every consumer codes against):

* ``image`` float32 (B, H, W, 3) in [0, 1];
* ``depth`` float32 (B, H, W) metres, 0 = invalid;
* ``segmentation`` int32 (B, H, W), ``IGNORE_INDEX`` (255) = ignore;
* ``has_depth``, ``has_segmentation``, ``mask`` bool (B,) (``mask`` is False for padding in eval batches);
* ``intrinsics`` float32 (B, 4) ``(fx, fy, cx, cy)`` in pixels of the batch images, zeros when unknown;
* eval batches only: ``file_name`` numpy unicode (B,) (``""`` for padding).

Sharding: process ``p`` of ``P`` reads the examples ``p, p + P, p + 2P, ...`` of the split (disjoint,
together complete). ``B`` is the per-process batch: global batch / ``P``.

Training: each process shuffles its shard with ``seed`` (a different permutation every epoch), repeats for
``num_epochs`` (forever if None), applies ``transforms.preprocess_train`` with a generator seeded by
``(seed, epoch, example index in the split)`` and batches with drop-remainder. The output therefore depends
only on the seed, the process layout and the position in the stream: not on the number of threads or
worker processes. With a finite ``num_epochs`` every process yields ``num_epochs * (N // P) // B`` batches,
so all processes run the same number of SPMD steps.

Evaluation: no shuffling, ``transforms.preprocess_eval`` (fixed resize/crop), and every process yields
``ceil(ceil(N / P) / B)`` batches, padded with ``mask = False`` examples, so each example is counted exactly
once and all processes run the same number of steps.

Iterators are grain ``DatasetIterator``s: ``get_state()`` returns a small JSON-serialisable dict and
``set_state(state)`` resumes at exactly the next batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np

from semdepth_jax.data import transforms
from semdepth_jax.data.meta import IGNORE_INDEX

BATCH_KEYS = (
  "image",
  "depth",
  "segmentation",
  "has_depth",
  "has_segmentation",
  "mask",
  "intrinsics",
)
"""Keys of every batch (eval batches add ``file_name``)."""


# ----------------------------------------------------------------------------------------------------------
# process layout and sharding


def process_layout(
  process_index: int | None = None, process_count: int | None = None
) -> tuple[int, int]:
  """Returns ``(process_index, process_count)``, defaulting to ``jax.process_index()/process_count()``.

  Raises:
    ValueError: the index is outside ``[0, process_count)``.
  """
  if process_index is None or process_count is None:
    import jax  # Imported lazily: the pipeline itself does not need jax.

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(
      f"process_index must be in [0, process_count); got {process_index} of {process_count}"
    )
  return int(process_index), int(process_count)


def shard_indices(num_examples: int, process_index: int, process_count: int) -> np.ndarray:
  """Example indices read by one process: ``arange(process_index, num_examples, process_count)``.

  The shards of processes ``0 .. process_count - 1`` are disjoint and together cover ``range(num_examples)``;
  their sizes differ by at most one.
  """
  return np.arange(process_index, num_examples, process_count, dtype=np.int64)


def per_process_batch_size(global_batch_size: int, process_count: int) -> int:
  """Global batch / process count.

  Raises:
    ValueError: the global batch is not a positive multiple of the process count.
  """
  if global_batch_size < 1 or global_batch_size % process_count:
    raise ValueError(
      f"batch_size {global_batch_size} must be a positive multiple of the process count "
      f"{process_count}"
    )
  return global_batch_size // process_count


def num_eval_batches(num_examples: int, batch_size: int, process_count: int = 1) -> int:
  """Batches every process yields in evaluation: ``ceil(ceil(N / P) / B)`` (B per process)."""
  per_process = math.ceil(num_examples / process_count)
  return math.ceil(per_process / batch_size)


# ----------------------------------------------------------------------------------------------------------
# batching


def collate(examples: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
  """Stacks preprocessed examples into a batch (numpy; see the module docstring for keys and dtypes).

  Raises:
    ValueError: examples have different spatial sizes (names the offending file names).
  """
  shapes = {tuple(np.shape(e["image"])) for e in examples}
  if len(shapes) > 1:
    detail = ", ".join(f"{_name(e)}: {np.shape(e['image'])}" for e in examples)
    raise ValueError(
      f"cannot batch examples of different sizes ({detail}); give image_size so that the pipeline "
      "resizes/crops them to one size"
    )
  batch = {
    "image": np.stack([np.asarray(e["image"], np.float32) for e in examples]),
    "depth": np.stack([np.asarray(e["depth"], np.float32) for e in examples]),
    "segmentation": np.stack([np.asarray(e["segmentation"], np.int32) for e in examples]),
    "has_depth": np.asarray([bool(e["has_depth"]) for e in examples], np.bool_),
    "has_segmentation": np.asarray([bool(e["has_segmentation"]) for e in examples], np.bool_),
    "mask": np.asarray([bool(e.get("mask", True)) for e in examples], np.bool_),
    "intrinsics": np.stack([np.asarray(e["intrinsics"], np.float32).reshape(4) for e in examples]),
  }
  if all("file_name" in e for e in examples):
    batch["file_name"] = np.asarray([_name(e) for e in examples], dtype=np.str_)
  return batch


def _name(example: Mapping[str, Any]) -> str:
  name = example.get("file_name", "")
  if isinstance(name, bytes):
    return name.decode("utf-8")
  return str(name)


def _ensure_complete(example: Mapping[str, Any]) -> dict[str, Any]:
  """Adds depth/labels/flags for sources that lack them (treated as unlabelled)."""
  ex = dict(example)
  h, w = np.shape(ex["image"])[:2]
  if "depth" not in ex:
    ex["depth"] = np.zeros((h, w), np.float32)
    ex.setdefault("has_depth", False)
  if "segmentation" not in ex:
    ex["segmentation"] = np.full((h, w), IGNORE_INDEX, np.uint8)
    ex.setdefault("has_segmentation", False)
  ex.setdefault("has_depth", True)
  ex.setdefault("has_segmentation", True)
  ex.setdefault("intrinsics", np.zeros(4, np.float32))
  return ex


# ----------------------------------------------------------------------------------------------------------
# element functions (picklable callables, so worker processes can run them)


class _TrainElement:
  """Maps a stream position to a preprocessed training example (see ``train_dataset``)."""

  def __init__(self, source, indices, seed, image_size, augment):
    self.source = source
    self.indices = indices
    self.seed = seed
    self.image_size = image_size
    self.augment = augment

  def __call__(self, position: int, index_in_shard: int) -> dict[str, Any]:
    epoch = position // len(self.indices)
    example_index = int(self.indices[index_in_shard])
    rng = np.random.default_rng((self.seed, epoch, example_index))
    ex = _ensure_complete(self.source[example_index])
    out = transforms.preprocess_train(ex, rng, image_size=self.image_size, augment=self.augment)
    out["mask"] = True
    out.pop("file_name", None)
    return out


class _EvalElement:
  """Maps a padded per-process position to a preprocessed eval example or a masked padding example."""

  def __init__(self, source, indices, image_size, mode):
    self.source = source
    self.indices = indices
    self.image_size = image_size
    self.mode = mode

  def __call__(self, position: int) -> dict[str, Any]:
    if position < len(self.indices):
      ex = _ensure_complete(self.source[int(self.indices[position])])
      out = transforms.preprocess_eval(ex, image_size=self.image_size, mode=self.mode)
      out["mask"] = True
      out["file_name"] = _name(out)
      return out
    # Padding: an example of the right shape (the shard's first, or the split's first when the shard is
    # empty) with everything zeroed/ignored and mask False.
    first = int(self.indices[0]) if len(self.indices) else 0
    ex = _ensure_complete(self.source[first])
    out = transforms.preprocess_eval(ex, image_size=self.image_size, mode=self.mode)
    return {
      "image": np.zeros_like(out["image"]),
      "depth": np.zeros_like(out["depth"]),
      "segmentation": np.full_like(out["segmentation"], IGNORE_INDEX),
      "has_depth": False,
      "has_segmentation": False,
      "mask": False,
      "intrinsics": np.zeros(4, np.float32),
      "file_name": "",
    }


# ----------------------------------------------------------------------------------------------------------
# datasets over a source


def train_dataset(
  source: Sequence[Mapping[str, Any]],
  *,
  batch_size: int,
  image_size: tuple[int, int],
  seed: int = 0,
  augment: Mapping[str, Any] | None = None,
  num_epochs: int | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
) -> grain.MapDataset:
  """The training ``grain.MapDataset`` of batches over a random-access source.

  Args:
    source: random-access decoded examples (``tfds.data_source`` or a list of dicts).
    batch_size: per-process batch size B.
    image_size: output (height, width) of the crops.
    seed: shuffling and augmentation seed, in [0, 2**32).
    augment: overrides of ``transforms.DEFAULT_AUGMENT`` (validated here).
    num_epochs: passes over the data, or None for an infinite stream.
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes (default ``jax.process_count()``).

  Returns:
    A ``grain.MapDataset`` whose elements are batches (module docstring); infinite if ``num_epochs`` is
    None, else ``num_epochs * (N // P) // B`` batches long.

  Raises:
    ValueError: empty split, a shard smaller than one batch, bad seed or augment settings.
  """
  p, P = process_layout(process_index, process_count)
  cfg = transforms.check_augment(augment)
  if not 0 <= seed < 2**32:
    raise ValueError(f"seed must be in [0, 2**32), got {seed}")
  n = len(source)
  indices = shard_indices(n, p, P)
  if n // P < 1:
    raise ValueError(f"split has {n} examples, fewer than the {P} processes")
  if num_epochs is not None and num_epochs * (n // P) < batch_size:
    raise ValueError(
      f"{num_epochs} epoch(s) of {n // P} examples per process do not fill one batch of {batch_size}"
    )
  ds = grain.MapDataset.range(len(indices)).shuffle(seed=seed).repeat(num_epochs)
  ds = ds.map_with_index(_TrainElement(source, indices, seed, tuple(image_size), cfg))
  ds = ds.batch(batch_size, drop_remainder=True, batch_fn=collate)
  if num_epochs is not None:
    ds = ds[: num_epochs * (n // P) // batch_size]
  return ds


class _WithoutLabels:
  """Marks a mixture member's labels as absent (its label set differs from the run's)."""

  def __init__(self, fn):
    self.fn = fn

  def __call__(self, position: int, index: int) -> dict[str, Any]:
    out = self.fn(position, index)
    out["segmentation"] = np.full_like(out["segmentation"], IGNORE_INDEX)
    out["has_segmentation"] = False
    return out


def mixture_train_dataset(
  sources: Sequence[Sequence[Mapping[str, Any]]],
  weights: Sequence[float],
  *,
  batch_size: int,
  image_size: tuple[int, int],
  seed: int = 0,
  augment: Mapping[str, Any] | None = None,
  keep_labels: Sequence[bool] | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
) -> grain.MapDataset:
  """An infinite training ``grain.MapDataset`` of batches mixing several sources by weight.

  Each source is sharded over processes, shuffled with its own seed (``seed + 7919 * i``), repeated and
  preprocessed exactly as in :func:`train_dataset`; ``grain.MapDataset.mix`` interleaves the examples
  deterministically in proportion to ``weights`` before batching, so a batch holds examples of several
  datasets and the stream is a function of the position (resumable like a single source).

  Args:
    sources: random-access decoded examples per dataset.
    weights: sampling weights (> 0), one per source.
    batch_size: per-process batch size B.
    image_size: output (height, width) of the crops (every source is cropped to it).
    seed: shuffling and augmentation seed.
    augment: overrides of ``transforms.DEFAULT_AUGMENT``.
    keep_labels: per source, False to drop its labels (``has_segmentation`` False): a dataset whose label
      set differs from the run's still contributes depth.
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes.

  Raises:
    ValueError: mismatched lengths, non-positive weights, an empty source.
  """
  if len(sources) != len(weights) or not sources:
    raise ValueError(f"mixture: {len(sources)} sources but {len(weights)} weights")
  if any(not w > 0 for w in weights):
    raise ValueError(f"mixture weights must be > 0, got {list(weights)}")
  keep = list(keep_labels) if keep_labels is not None else [True] * len(sources)
  p, P = process_layout(process_index, process_count)
  cfg = transforms.check_augment(augment)
  parts = []
  for i, source in enumerate(sources):
    n = len(source)
    if n // P < 1:
      raise ValueError(f"mixture source {i} has {n} examples, fewer than the {P} processes")
    indices = shard_indices(n, p, P)
    s_i = (int(seed) + 7919 * i) % 2**32
    fn = _TrainElement(source, indices, s_i, tuple(image_size), cfg)
    ds = grain.MapDataset.range(len(indices)).shuffle(seed=s_i).repeat(None)
    parts.append(ds.map_with_index(fn if keep[i] else _WithoutLabels(fn)))
  mixed = grain.MapDataset.mix(parts, [float(w) for w in weights])
  return mixed.batch(batch_size, drop_remainder=True, batch_fn=collate)


def make_mixture_train_iterator(
  datasets: Sequence[tuple[str, float]],
  *,
  data_dir: str | None = None,
  split: str = "train",
  batch_size: int,
  image_size: tuple[int, int],
  seed: int = 0,
  augment: Mapping[str, Any] | None = None,
  num_classes: int | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
  num_threads: int = 1,
  prefetch: int = 4,
  worker_count: int = 0,
) -> grain.DatasetIterator:
  """Training iterator over a weighted mixture of built datasets (:func:`mixture_train_dataset`).

  Args:
    datasets: ``(TFDS name, weight)`` pairs, e.g. ``(("replica", 1.0), ("synthetic_city", 1.0))``.
    data_dir: TFDS data dir (default: TFDS's).
    split: split name of every member.
    batch_size: *global* batch size.
    image_size: (height, width) of the training crops.
    seed: shuffling / augmentation seed.
    augment: overrides of ``transforms.DEFAULT_AUGMENT``.
    num_classes: the run's class count; members whose meta info has another class count keep their depth
      but not their labels (None = keep every member's labels).
    process_index: default ``jax.process_index()``.
    process_count: default ``jax.process_count()``.
    num_threads: see ``to_iterator``.
    prefetch: see ``to_iterator``.
    worker_count: see ``to_iterator``.

  Raises:
    FileNotFoundError: a member is not built (message has the build command).
    ValueError: bad weights or settings.
  """
  from semdepth_jax.data.meta import get_meta

  p, P = process_layout(process_index, process_count)
  names = [str(d) for d, _ in datasets]
  keep = [num_classes is None or get_meta(n).num_classes == int(num_classes) for n in names]
  ds = mixture_train_dataset(
    [open_source(n, split, data_dir) for n in names],
    [float(w) for _, w in datasets],
    batch_size=per_process_batch_size(batch_size, P),
    image_size=image_size,
    seed=seed,
    augment=augment,
    keep_labels=keep,
    process_index=p,
    process_count=P,
  )
  return to_iterator(ds, num_threads=num_threads, prefetch=prefetch, worker_count=worker_count)


def eval_dataset(
  source: Sequence[Mapping[str, Any]],
  *,
  batch_size: int,
  image_size: tuple[int, int] | None = None,
  mode: str = "resize",
  process_index: int | None = None,
  process_count: int | None = None,
) -> grain.MapDataset:
  """The evaluation ``grain.MapDataset`` of padded batches (``num_eval_batches`` long on every process).

  Args:
    source: random-access decoded examples.
    batch_size: per-process batch size B.
    image_size: output (height, width), or None to keep the stored size (all examples must agree).
    mode: ``transforms.preprocess_eval`` mode (``resize``, ``cover_crop``, ``center_crop``).
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes (default ``jax.process_count()``).

  Raises:
    ValueError: empty split or unknown mode.
  """
  p, P = process_layout(process_index, process_count)
  if mode not in transforms.EVAL_MODES:
    raise ValueError(f"eval mode must be one of {transforms.EVAL_MODES}, got {mode!r}")
  n = len(source)
  if n == 0:
    raise ValueError("cannot evaluate on an empty split")
  indices = shard_indices(n, p, P)
  padded = num_eval_batches(n, batch_size, P) * batch_size
  size = None if image_size is None else tuple(image_size)
  ds = grain.MapDataset.range(padded).map(_EvalElement(source, indices, size, mode))
  return ds.batch(batch_size, drop_remainder=True, batch_fn=collate)


def to_iterator(
  ds: grain.MapDataset, *, num_threads: int = 1, prefetch: int = 4, worker_count: int = 0
) -> grain.DatasetIterator:
  """Turns a batched ``MapDataset`` into a checkpointable iterator.

  Args:
    ds: dataset from ``train_dataset`` / ``eval_dataset``.
    num_threads: threads producing batches ahead of time (0 = synchronously in the calling thread). One
      thread overlaps input processing with the (much longer) device step; more threads mostly
      contend for the GIL (benchmarks/bench_pipeline.py).
    prefetch: batches buffered ahead (per process); raised to ``num_threads`` when smaller (grain uses
      at most that many threads in parallel).
    worker_count: if > 0, batches are produced by this many worker processes (``mp_prefetch``); the
      output is identical, only faster when the transforms are CPU-bound.

  Returns:
    A ``grain.DatasetIterator`` with ``get_state()`` / ``set_state()``.
  """
  read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(prefetch, num_threads))
  it_ds = ds.to_iter_dataset(read)
  if worker_count > 0:
    from absl import flags

    # grain 0.2.18's mp_prefetch reads absl flags (worker profiling) and fails with
    # UnparsedFlagAccessError outside absl.app.run; keep their defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return iter(it_ds)


# ----------------------------------------------------------------------------------------------------------
# TFDS datasets by name


def default_data_dir() -> str:
  """TFDS's default data dir (honours ``TFDS_DATA_DIR``)."""
  import tensorflow_datasets as tfds

  return os.fspath(tfds.core.constants.DATA_DIR)


def build_command(dataset: str, data_dir: str | None = None, *, manual: bool | None = None) -> str:
  """The exact ``semdepth data build`` command that builds ``dataset`` into ``data_dir``.

  ``--manual_dir DIR`` is included when the builder needs manually downloaded files (its
  ``MANUAL_DOWNLOAD_INSTRUCTIONS`` is set); ``manual`` overrides the detection.
  """
  if manual is None:
    manual = bool(getattr(_builder_class_or_none(dataset), "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
  cmd = f"semdepth data build --dataset {dataset}"
  if manual:
    cmd += " --manual_dir DIR"
  return cmd + f" --data_dir {data_dir or default_data_dir()}"


def _builder_class_or_none(dataset: str):
  try:
    return builder_class(dataset)
  except KeyError:
    return None


def builder_class(dataset: str):
  """The TFDS builder class of ``dataset`` (``name``, ``name/config``, ``name:version``).

  Only this project's builders (``data_builders.DATASETS``, plus any added with
  ``data_builders.register_builder``) are used: a stock TFDS dataset of the same name is never touched (it
  would try to download).

  Raises:
    KeyError: unknown dataset; the message lists the project's datasets.
  """
  import data_builders

  return data_builders.get_builder_class(dataset)


def get_builder(dataset: str, data_dir: str | None = None, **builder_kwargs):
  """Instantiates the project's TFDS builder of ``dataset`` (``name[/config][:version]``) on ``data_dir``.

  The class comes from :func:`builder_class` (never TFDS's catalogue); ``data_dir`` defaults to TFDS's.

  Raises:
    KeyError: unknown dataset (lists the project's datasets).
    ValueError: unknown config of a known dataset (lists its configs).
  """
  cls = builder_class(dataset)
  name, _, version = dataset.partition(":")
  _, _, config = name.partition("/")
  kwargs = dict(builder_kwargs)
  if config:
    names = [c.name for c in (getattr(cls, "BUILDER_CONFIGS", None) or [])]
    if config not in names:
      raise ValueError(
        f"dataset {name.split('/')[0]!r} has no config {config!r}; configs: {', '.join(names) or 'none'}"
      )
    kwargs.setdefault("config", config)
  if version:
    kwargs.setdefault("version", version)
  return cls(data_dir=data_dir or default_data_dir(), **kwargs)


def _prepared_builder(dataset: str, data_dir: str | None):
  builder = get_builder(dataset, data_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(
      f"dataset {dataset!r} is not built in {data_dir or default_data_dir()} (looked for "
      f"{builder.data_dir}). Build it with:\n  {build_command(dataset, data_dir)}"
      + (
        "\n(DIR = the folder with the manually downloaded raw files listed in the builder's "
        "MANUAL_DOWNLOAD_INSTRUCTIONS)"
        if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
        else ""
      )
    )
  return builder


def open_source(dataset: str, split: str, data_dir: str | None = None):
  """Random-access source of a built TFDS dataset split (``builder.as_data_source(split)``).

  Args:
    dataset: TFDS name (``synthetic_city``, ``replica``, ``nyu_depth_v2_labeled/13``, ...).
    split: split name or TFDS split expression (``train[:80%]``).
    data_dir: TFDS data dir (default: TFDS's, honouring ``TFDS_DATA_DIR``).

  Raises:
    FileNotFoundError: the dataset is not built there; the message contains the exact
      ``semdepth data build`` command.
    KeyError: unknown dataset.
  """
  return _prepared_builder(dataset, data_dir).as_data_source(split=split)


def num_examples(dataset: str, split: str, data_dir: str | None = None) -> int:
  """Number of examples of a built split (same errors as ``open_source``)."""
  return len(open_source(dataset, split, data_dir))


def make_train_iterator(
  dataset: str,
  *,
  data_dir: str | None = None,
  split: str = "train",
  batch_size: int,
  image_size: tuple[int, int],
  seed: int = 0,
  augment: Mapping[str, Any] | None = None,
  num_epochs: int | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
  num_threads: int = 1,
  prefetch: int = 4,
  worker_count: int = 0,
) -> grain.DatasetIterator:
  """Training iterator over a built TFDS dataset (see ``train_dataset`` for the semantics).

  Args:
    dataset: TFDS name (``nyu_depth_v2_labeled/13`` ...).
    data_dir: TFDS data dir (default: TFDS's).
    split: split name.
    batch_size: *global* batch size; each process yields ``batch_size / process_count``.
    image_size: (height, width) of the training crops.
    seed: shuffling / augmentation seed.
    augment: overrides of ``transforms.DEFAULT_AUGMENT`` (e.g. ``transforms.EIGEN_AUGMENT``).
    num_epochs: None for an infinite stream.
    process_index: default ``jax.process_index()``.
    process_count: default ``jax.process_count()``.
    num_threads: see ``to_iterator``.
    prefetch: see ``to_iterator``.
    worker_count: see ``to_iterator``.

  Raises:
    FileNotFoundError: the dataset is not built (message has the build command).
    ValueError: bad batch size / settings.
  """
  p, P = process_layout(process_index, process_count)
  ds = train_dataset(
    open_source(dataset, split, data_dir),
    batch_size=per_process_batch_size(batch_size, P),
    image_size=image_size,
    seed=seed,
    augment=augment,
    num_epochs=num_epochs,
    process_index=p,
    process_count=P,
  )
  return to_iterator(ds, num_threads=num_threads, prefetch=prefetch, worker_count=worker_count)


def make_eval_iterator(
  dataset: str,
  *,
  data_dir: str | None = None,
  split: str,
  batch_size: int,
  image_size: tuple[int, int] | None = None,
  mode: str = "resize",
  process_index: int | None = None,
  process_count: int | None = None,
  num_threads: int = 1,
  prefetch: int = 4,
) -> grain.DatasetIterator:
  """Evaluation iterator over a built TFDS dataset (see ``eval_dataset``).

  Args:
    dataset: TFDS name.
    data_dir: TFDS data dir (default: TFDS's).
    split: split name.
    batch_size: *global* batch size; each process yields ``batch_size / process_count``.
    image_size: output (height, width), or None to keep the stored size.
    mode: ``resize`` / ``cover_crop`` / ``center_crop`` (``transforms.preprocess_eval``).
    process_index: default ``jax.process_index()``.
    process_count: default ``jax.process_count()``.
    num_threads: see ``to_iterator``.
    prefetch: see ``to_iterator``.

  Returns:
    Iterator of ``num_eval_batches(N, batch_size / P, P)`` padded batches with ``mask`` and ``file_name``.
  """
  p, P = process_layout(process_index, process_count)
  ds = eval_dataset(
    open_source(dataset, split, data_dir),
    batch_size=per_process_batch_size(batch_size, P),
    image_size=image_size,
    mode=mode,
    process_index=p,
    process_count=P,
  )
  return to_iterator(ds, num_threads=num_threads, prefetch=prefetch)


# ----------------------------------------------------------------------------------------------------------
# global arrays


def make_global_batch(batch: Mapping[str, np.ndarray], mesh, data_axis: str = "data") -> dict:
  """Turns a per-process numpy batch into global ``jax.Array``s sharded along ``data_axis``.

  Each entry becomes ``jax.make_array_from_process_local_data(NamedSharding(mesh, P(data_axis)), x)``:
  the leading (batch) axis is split over the mesh's ``data_axis`` (replicated over other axes) and the
  global batch is the concatenation of all processes' batches in process order. Non-numeric entries
  (``file_name``) cannot live on devices and are left out; keep the host batch for them.

  Args:
    batch: dict of numpy arrays with a common leading dimension B (per process).
    mesh: ``jax.sharding.Mesh`` with an axis named ``data_axis``.
    data_axis: mesh axis that shards the batch.

  Returns:
    dict of global ``jax.Array`` of shape (B * process_count, ...).

  Raises:
    ValueError: ``data_axis`` is not an axis of the mesh. (jax itself raises when B is not divisible by
      this process's share of the ``data`` axis.)
  """
  import jax
  from jax.sharding import NamedSharding, PartitionSpec

  if data_axis not in mesh.axis_names:
    raise ValueError(f"mesh axes {mesh.axis_names} have no {data_axis!r} axis")
  sharding = NamedSharding(mesh, PartitionSpec(data_axis))
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    if value.dtype.kind in "USO":
      continue
    out[key] = jax.make_array_from_process_local_data(sharding, value)
  return out
