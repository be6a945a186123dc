"""``semdepth data build`` and ``semdepth data show``: build TFDS datasets and preview them.

``data build`` runs the dataset's TFDS builder (``download_and_prepare``). TFDS writes everything into a
temporary ``incomplete.<6 random characters>_<version>`` folder beside the final one and renames it to
``<data_dir>/<name>/[<config>/]<version>`` only after every split and ``dataset_info.json`` are written
(``tfds.core.utils.incomplete_dir``); an interrupted build therefore never looks built
(``builder.is_prepared()`` is False, readers raise the "not built" error with the build command) and
running the same command again starts over. A build killed outright leaves its temporary folder behind;
the next build of the same dataset and version removes such folders and says so
(:func:`remove_stale_incomplete`).

``data show`` writes a PNG grid of the first ``--n`` stored examples of a split (rows = examples; columns
RGB | depth with a colour bar in metres | labels with a legend of the classes present), using the palette,
class names and depth range of the dataset's meta info.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import sys
import time

import numpy as np

# Keep TFDS away from the network (GCS metadata / hosted-dataset checks): builds here are local.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")

FILE_FORMATS = ("array_record", "tfrecord")


def add_parser(subparsers) -> argparse.ArgumentParser:
  """Registers ``data`` with its ``build`` and ``show`` sub-commands on ``subparsers``."""
  parser = subparsers.add_parser(
    "data",
    help="build TFDS datasets and preview them (data build / data show)",
    description=__doc__.split("\n\n")[0],
  )
  sub = parser.add_subparsers(dest="data_command", metavar="{build,show}")
  parser.set_defaults(func=lambda args: _no_subcommand(parser))

  b = sub.add_parser(
    "build",
    help="build (download_and_prepare) a TFDS dataset",
    description=(
      "Builds a dataset with its TFDS builder. Builders of manually downloaded datasets read the raw "
      "files from --manual_dir. The build is written to a temporary folder that is renamed only when "
      "complete, so an interrupted build is never mistaken for a finished one."
    ),
  )
  b.add_argument(
    "--dataset", required=True, help="TFDS name, e.g. replica, nyu_depth_v2_labeled/13"
  )
  b.add_argument("--config", default=None, help="builder config (same as --dataset NAME/CONFIG)")
  b.add_argument("--manual_dir", default=None, help="folder with the manually downloaded raw files")
  b.add_argument(
    "--data_dir",
    default=None,
    help="TFDS data dir (default: TFDS's default, which honours $TFDS_DATA_DIR)",
  )
  b.add_argument(
    "--file_format",
    default="array_record",
    choices=FILE_FORMATS,
    help="record format; tfrecord needs TensorFlow (default: array_record)",
  )
  b.set_defaults(func=build)

  s = sub.add_parser("show", help="write a PNG grid of stored examples (RGB | depth | labels)")
  s.add_argument("--dataset", required=True, help="TFDS name, e.g. synthetic_city")
  s.add_argument("--config", default=None, help="builder config (same as --dataset NAME/CONFIG)")
  s.add_argument("--split", default="train", help="split name (default: train)")
  s.add_argument("--n", type=int, default=8, help="number of examples (rows), default 8")
  s.add_argument("--out", default="grid.png", help="output PNG path (default: grid.png)")
  s.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS's default)")
  s.add_argument("--dpi", type=int, default=100, help="PNG resolution (default 100)")
  s.set_defaults(func=show)
  return parser


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
  parser.print_help()
  return 2


def dataset_name(dataset: str, config: str | None) -> str:
  """Combines ``--dataset`` and ``--config`` into a TFDS name ``name[/config][:version]``.

  Raises:
    ValueError: a config is given twice with different values.
  """
  if not config:
    return dataset
  base, _, version = dataset.partition(":")
  name, _, existing = base.partition("/")
  if existing and existing != config:
    raise ValueError(
      f"--dataset {dataset} already names config {existing!r}, but --config is {config!r}"
    )
  return f"{name}/{config}" + (f":{version}" if version else "")


def meta_for(name: str):
  """Meta info for a TFDS name: ``get_meta(name)``, else that of the builder without its config, else None.

  ``synthetic_city/tiny`` -> ``synthetic_city``: configs that only change the size share classes and ranges.
  """
  from semdepth_jax.data import meta as meta_lib

  base = name.split(":")[0]
  for key in (base, base.split("/")[0]):
    try:
      return meta_lib.get_meta(key)
    except KeyError:
      continue
  return None


def remove_stale_incomplete(builder) -> str | None:
  """Deletes the temporary folders that interrupted builds of ``builder``'s dataset and version left.

  TFDS builds into ``<parent>/incomplete.XXXXXX_<version>`` next to the final ``<parent>/<version>``
  folder and renames it at the end; a killed build leaves it behind (tens of MB each). Call this right
  before ``download_and_prepare``: two builds of the same dataset and version must not run at once.

  Args:
    builder: a TFDS builder (``builder.data_dir`` is the final, versioned folder).

  Returns:
    One line saying what was removed (folders and size), or None when there was nothing.
  """
  final = os.fspath(builder.data_dir).rstrip("/")
  parent, version = os.path.split(final)
  if not os.path.isdir(parent):
    return None
  pattern = re.compile(r"incomplete\.[A-Z0-9]{6}_" + re.escape(version))
  stale = sorted(n for n in os.listdir(parent) if pattern.fullmatch(n))
  if not stale:
    return None
  size = 0
  for name in stale:
    for root, _, files in os.walk(os.path.join(parent, name)):
      size += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    shutil.rmtree(os.path.join(parent, name))
  return (
    f"removed {len(stale)} incomplete folder(s) of an interrupted build of {builder.name} "
    f"{version} ({size / 1e6:.1f} MB) from {parent}: {', '.join(stale)}"
  )


def _has_tensorflow() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def build(args: argparse.Namespace) -> int:
  """Handler of ``data build``; returns the exit status (0 on success, 2 on a user error)."""
  import tensorflow_datasets as tfds

  from semdepth_jax.data import pipeline

  try:
    name = dataset_name(args.dataset, args.config)
  except ValueError as e:
    print(f"semdepth data {args.data_command}: error: {e}", file=sys.stderr)
    return 2
  if args.file_format == "tfrecord" and not _has_tensorflow():
    print(
      f"semdepth data {args.data_command}: error: --file_format tfrecord needs TensorFlow, which is not installed "
      "(pip install 'semdepth-jax[tf]'), or use the default --file_format array_record.",
      file=sys.stderr,
    )
    return 2
  data_dir = args.data_dir or pipeline.default_data_dir()
  try:
    builder = pipeline.get_builder(name, data_dir)
  except (KeyError, ValueError) as e:
    print(f"semdepth data {args.data_command}: error: {e.args[0]}", file=sys.stderr)
    return 2
  if builder.is_prepared():
    print(f"{name} is already built at {builder.data_dir}; nothing to do.")
    _print_splits(builder)
    return 0
  manual_needed = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
  if manual_needed and not args.manual_dir:
    print(
      f"error: {name} is built from manually downloaded files; pass --manual_dir DIR.\n"
      f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}",
      file=sys.stderr,
    )
    return 2
  if manual_needed:
    problem = _manual_dir_problem(args.manual_dir)
    if problem:
      print(
        f"semdepth data {args.data_command}: error: --manual_dir {args.manual_dir}: expected a folder "
        f"holding the downloaded files of {name}, got {problem}",
        file=sys.stderr,
      )
      return 2
  download_config = tfds.download.DownloadConfig(manual_dir=args.manual_dir, try_download_gcs=False)
  removed = remove_stale_incomplete(builder)
  if removed:
    print(removed, flush=True)
  print(f"Building {name} into {data_dir} ({args.file_format}) ...", flush=True)
  start = time.perf_counter()
  try:
    builder.download_and_prepare(download_config=download_config, file_format=args.file_format)
  except (FileNotFoundError, ValueError) as e:
    # Builders check their raw files up front and list what is missing; a bad file (corrupt PNG, size
    # mismatch, label out of range) raises ValueError naming it.
    print(f"semdepth data {args.data_command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    # incomplete_dir() has removed its temporary folder; the final folder was never created.
    print(
      f"\ninterrupted: {name} was not built (nothing written to {builder.data_dir}); "
      "run the same command again to start over.",
      file=sys.stderr,
    )
    return 130
  elapsed = time.perf_counter() - start
  print(f"Built {name} in {elapsed:.1f} s at {builder.data_dir}")
  _print_splits(builder)
  return 0


def _manual_dir_problem(manual_dir: str) -> str | None:
  """What is wrong with ``--manual_dir`` (None if it is a non-empty folder).

  TFDS would stop with a bare AssertionError on a missing or empty manual folder.
  """
  if not os.path.exists(manual_dir):
    return "a path that does not exist"
  if not os.path.isdir(manual_dir):
    return "a file"
  try:
    with os.scandir(manual_dir) as entries:
      if next(entries, None) is None:
        return "an empty folder"
  except OSError as e:
    return f"a folder that cannot be read ({e.strerror})"
  return None


def _print_splits(builder) -> None:
  for split, info in sorted(builder.info.splits.items()):
    print(f"  {split}: {info.num_examples} examples")


def show(args: argparse.Namespace) -> int:
  """Handler of ``data show``; returns the exit status (0 on success, 2 on a user error)."""
  from semdepth_jax import viz
  from semdepth_jax.data import meta as meta_lib
  from semdepth_jax.data import pipeline

  if args.n < 1:
    print(
      f"semdepth data {args.data_command}: error: --n must be >= 1, got {args.n}", file=sys.stderr
    )
    return 2
  try:
    name = dataset_name(args.dataset, args.config)
    source = pipeline.open_source(name, args.split, args.data_dir)
  except (KeyError, ValueError) as e:
    print(f"semdepth data {args.data_command}: error: {e.args[0]}", file=sys.stderr)
    return 2
  except FileNotFoundError as e:
    print(f"semdepth data {args.data_command}: error: {e}", file=sys.stderr)
    return 2
  n = min(args.n, len(source))
  examples = [source[i] for i in range(n)]
  meta = meta_for(name)
  if meta is not None:
    fig = viz.dataset_grid(examples, meta, dpi=args.dpi)
  else:
    # A dataset without meta info (e.g. a custom builder): generic palette, and one depth range fixed for
    # the whole grid from the shown examples (never per frame).
    valid = [e["depth"][e["depth"] > 0] for e in examples if bool(e.get("has_depth", True))]
    valid = np.concatenate([v.ravel() for v in valid]) if valid else np.zeros(0)
    rng = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 1.0)
    if not rng[1] > rng[0]:
      rng = (rng[0], rng[0] + 1.0)
    ids = [
      int(v) for e in examples for v in np.unique(e["segmentation"]) if v != meta_lib.IGNORE_INDEX
    ]
    num = max(ids, default=-1) + 1
    print(
      f"note: no meta info for {name}; using a generated palette and the depth range "
      f"{rng[0]:.2f}-{rng[1]:.2f} m of the shown examples"
    )
    fig = viz.example_grid(
      examples,
      class_names=[f"class {i}" for i in range(num)],
      class_colors=meta_lib.generated_palette(num),
      depth_range=rng,
      dpi=args.dpi,
    )
  path = viz.save_figure(fig, args.out)
  print(f"Wrote {n} examples of {name} [{args.split}] to {path}")
  return 0
