"""Helpers shared by the config files in this folder (the schema itself is ``semdepth_jax.train.schema``).

Config files build on :func:`base_config` and the other schema constructors re-exported here, parse their
``k=v`` preset arguments with :func:`parse_args` and honour ``steps=N`` with :func:`set_steps`. Nothing here
is specific to one paper.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from semdepth_jax.train.config_utils import ConfigError, parse_preset_args
from semdepth_jax.train.schema import (
  augment_config,
  base_config,
  eval_entry,
  optimizer_config,
  schedule_config,
  stage_config,
)

__all__ = [
  "SIZES",
  "ConfigError",
  "augment_config",
  "base_config",
  "eval_entry",
  "optimizer_config",
  "parse_args",
  "schedule_config",
  "set_steps",
  "stage_config",
]

SIZES = ("paper", "small", "tiny")
"""``size=`` presets of every family: the paper's widths and input; reduced widths for minutes on 2 CPU
cores (``small``); tests (``tiny``). Each family's config file maps them to widths and input sizes."""


def set_steps(config: ml_collections.ConfigDict, steps: int) -> None:
  """Sets every stage with steps to ``steps`` batches (``steps=N`` preset argument); clears epochs.

  Stages currently at 0 steps and 0 epochs (disabled, e.g. SSegDep-Net's optional joint stage) stay
  disabled.
  """
  for name in config.stage_order:
    st = config.stages[name]
    if st.num_steps or st.num_epochs:
      st.num_steps = int(steps)
      st.num_epochs = 0.0
  ckpt = config.checkpoint
  ckpt.every_steps = max(1, min(ckpt.every_steps, int(steps)))


def parse_args(arg: str | None, defaults: dict[str, Any], where: str) -> dict[str, Any]:
  """``parse_preset_args`` plus checks of the shared ``size`` and ``steps`` arguments."""
  args = parse_preset_args(arg, defaults, where=where)
  if "size" in args and args["size"] not in SIZES:
    raise ConfigError(f"{where}: size must be one of {SIZES}, got {args['size']!r}")
  if args.get("steps", 0) < 0:  # "steps=-5" used to fall back to the default length silently.
    raise ConfigError(
      f"{where}: preset argument steps must be >= 0 (0 = the preset's length), got {args['steps']}"
    )
  return args
