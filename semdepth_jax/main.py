"""The ``semdepth`` command line: a thin dispatcher over the library's command modules.

Each command module exposes ``add_parser(subparsers)``, which registers its sub-command and sets
``func(args) -> int`` as the handler. Modules are imported lazily so ``semdepth --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, one-line help) per top-level command; the module's add_parser defines the details.
_COMMANDS = {
  "data": (
    "semdepth_jax.data.cli",
    "build TFDS datasets and preview them (data build / data show)",
  ),
  "train": ("semdepth_jax.train.cli", "train a model from a config; resumes from its workdir"),
  "evaluate": ("semdepth_jax.evaluate", "evaluate a trained workdir on a dataset split"),
  "predict": ("semdepth_jax.predict", "run a trained model on your own images"),
  "export": (
    "semdepth_jax.export",
    "export a trained model (with its decode) as StableHLO or ONNX for serving",
  ),
  "score": (
    "semdepth_jax.score",
    "score saved predictions against ground truth with a named protocol",
  ),
  "convert-weights": (
    "semdepth_jax.weights.convert",
    "convert pretrained PyTorch / safetensors / Keras weights for a backbone",
  ),
  "quickstart": (
    "semdepth_jax.quickstart",
    "the main job: build, train, evaluate and predict (~11 min on 2 CPU cores)",
  ),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
  """Builds the top-level parser, importing only the module of the command being run."""
  parser = argparse.ArgumentParser(
    prog="semdepth",
    description="Joint monocular depth estimation and semantic segmentation (JAX/Flax).",
  )
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
  for name, (module_name, help_text) in _COMMANDS.items():
    if wanted == name:
      try:
        module = importlib.import_module(module_name)
      except ModuleNotFoundError as e:
        if e.name != module_name:
          raise
        sub.add_parser(name, help=help_text + " [not available in this version]")
        continue
      module.add_parser(sub)
    else:
      sub.add_parser(name, help=help_text, add_help=False)
  return parser


def main(argv: list[str] | None = None) -> int:
  """Entry point of the ``semdepth`` console script; returns the process exit status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser(argv)
  args = parser.parse_args(argv)
  if getattr(args, "func", None) is None:
    parser.print_help()
    return 0 if not argv else 2
  return int(args.func(args) or 0)


if __name__ == "__main__":
  sys.exit(main())
