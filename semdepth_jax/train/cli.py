r"""``semdepth train``: train a model from a config; always resumes from its workdir.

Usage::

  semdepth train --config configs/ssegdepnet.py:model=cnn3d_up,dataset=replica,size=tiny,steps=300 \
    --workdir runs/cnn3d_up [--config.stages.train.optimizer.learning_rate=0.01 ...] [--data_dir DIR]

Datasets are read from the TFDS data dir (``--data_dir``, else ``config.data_dir``, else TFDS's default,
which honours ``TFDS_DATA_DIR``). The embedded default dataset (``synthetic_city``) is built on first use; a
dataset that needs manually downloaded files and is not built yet stops with the exact ``semdepth data
build`` command (exit status 2). Exit status: 0 done, 1 training diverged (NaN/inf), 2 usage/config/data
errors.
"""

from __future__ import annotations

import argparse
import logging
import sys

_OVERRIDE_PREFIX = "--config."


class _OverrideParser(argparse.ArgumentParser):
  """An ArgumentParser that collects ``--config.key=value`` (or ``--config.key value``) overrides.

  argparse cannot declare a family of options; the overrides are taken out before normal parsing and
  stored in ``namespace.config_overrides`` (in order).
  """

  def parse_known_args(self, args=None, namespace=None):  # noqa: D102 - argparse API
    args = list(sys.argv[1:] if args is None else args)
    overrides, rest, i = [], [], 0
    while i < len(args):
      a = args[i]
      if a.startswith(_OVERRIDE_PREFIX):
        if "=" not in a:
          if i + 1 >= len(args):
            self.error(f"override {a} needs a value (--config.key=value)")
          a = f"{a}={args[i + 1]}"
          i += 1
        overrides.append(a)
      else:
        rest.append(a)
      i += 1
    namespace, extras = super().parse_known_args(rest, namespace)
    namespace.config_overrides = (
      list(getattr(namespace, "config_overrides", None) or []) + overrides
    )
    return namespace, extras


def add_parser(subparsers) -> argparse.ArgumentParser:
  """Registers ``semdepth train`` on an argparse sub-parsers object; returns the parser."""
  parser = subparsers.add_parser(
    "train",
    help="train a model from a config; resumes from its workdir",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
    epilog=(
      "Overrides: --config.KEY=VALUE for any config field, e.g. --config.seed=1 "
      "--config.stages.train.batch_size=4 --config.image_size='(64, 96)'."
    ),
  )
  # Collect --config.* overrides (argparse has no wildcard options).
  parser.__class__ = type("TrainArgumentParser", (_OverrideParser, type(parser)), {})
  parser.add_argument(
    "--config",
    required=True,
    metavar="PATH[:ARGS]",
    help="config file and preset arguments, e.g. configs/ssegdepnet.py:model=unet,size=small",
  )
  parser.add_argument(
    "--workdir", required=True, help="output folder (checkpoints, logs); training resumes from it"
  )
  parser.add_argument(
    "--data_dir",
    default=None,
    help="TFDS data dir (default: config.data_dir, else TFDS_DATA_DIR / ~/tensorflow_datasets)",
  )
  parser.set_defaults(func=run, config_overrides=[])
  return parser


def run(args: argparse.Namespace) -> int:
  """Handler of ``semdepth train``; returns the exit status."""
  from semdepth_jax.train import config_utils, loop
  from semdepth_jax.train import mesh as mesh_lib

  setup_logging()
  overrides = list(args.config_overrides)
  if args.data_dir:
    overrides.append(f"--config.data_dir={args.data_dir}")
  from semdepth_jax.train.checkpoint import CheckpointMismatchError

  try:
    config = config_utils.load_config(args.config, overrides)
    # Before the checks below touch the devices: a multi-process run must initialise first.
    mesh_lib.maybe_initialize_distributed(bool(config.distributed))
    loop.check_consumers(config)
    config_utils.check_model_input(config)  # before the dataset is opened or anything is built
    loop.ensure_dataset(config.dataset, config.data_dir or None)
  except (config_utils.ConfigError, FileNotFoundError, KeyError, TypeError, ValueError) as e:
    print(f"semdepth train: {_message(e)}", file=sys.stderr)
    return 2
  try:
    result = loop.train(config, args.workdir)
  except (
    FileNotFoundError,
    CheckpointMismatchError,
    ValueError,
  ) as e:  # incl. model_init mismatches
    print(f"semdepth train: {_message(e)}", file=sys.stderr)
    return 2
  except FloatingPointError as e:
    print(f"semdepth train: {e}", file=sys.stderr)
    return 1
  print(f"finished at step {result.step}; workdir {result.workdir}")
  if result.eval_metrics:
    print(loop.format_metrics(result.eval_metrics))
  return 0


def setup_logging() -> None:
  """INFO logs of this library on stderr; other libraries (absl, Orbax, TFDS) at WARNING."""
  logging.basicConfig(
    level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
  )
  logging.getLogger("semdepth_jax").setLevel(logging.INFO)
  try:
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
  except ImportError:  # pragma: no cover - absl ships with ml_collections
    pass


def _message(e: BaseException) -> str:
  # KeyError's str() adds quotes around the message.
  if isinstance(e, KeyError) and e.args:
    return str(e.args[0])
  return str(e)
