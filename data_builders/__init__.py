"""TFDS dataset builders of semdepth_jax, one package per dataset: the project's dataset registry.

A dataset is registered once, by its package name in :data:`DATASETS`. The package ``data_builders/<name>/``
holds ``<name>_dataset_builder.py`` (the ``Builder`` class; importing it registers it with TFDS) and
``meta.py`` (its :class:`semdepth_jax.data.meta.DatasetMeta` entries in ``METAS``, plus ``DEFAULT_CONFIG``
when configs change what is stored). Builders, the input pipeline, metrics and visualisation all go through
this list; no other TFDS builder is ever used (a stock TFDS dataset of the same name would try to download).
Builders write ``array_record`` files by default, so building and reading need no TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

DATASETS = (
  "synthetic_city",
  "replica",
  "nyu_depth_v2_labeled",
  "camvid",
  "cityscapes",
  "sun_rgbd",
  "hypersim",
  "scannet",
  "kitti_depth",
  "synthia_rand_cityscapes",
  "synthia_al",
)
"""The project's datasets (package names under ``data_builders/``)."""

_EXTRA: dict[str, Any] = {}


def known_builders() -> tuple[str, ...]:
  """Names accepted by :func:`get_builder_class`."""
  return (*DATASETS, *_EXTRA)


def _base(name: str) -> str:
  return name.split(":")[0].split("/")[0]


def get_builder_class(name: str):
  """Returns the ``tfds.core.GeneratorBasedBuilder`` subclass for ``name``.

  Args:
    name: builder name, optionally with ``/config`` and ``:version`` (both ignored here).

  Raises:
    KeyError: unknown name; the message lists the known builders.
  """
  base = _base(name)
  if base in _EXTRA:
    return _EXTRA[base]
  if base not in DATASETS:
    raise KeyError(
      f"unknown dataset {name!r}; this project's datasets: {', '.join(known_builders())}"
    )
  module = importlib.import_module(f"data_builders.{base}.{base}_dataset_builder")
  return module.Builder


def register_builder(name: str, builder_class: Any) -> None:
  """Registers a builder defined outside this package (tests, user extensions) under ``name``.

  Its meta info must be registered with ``semdepth_jax.data.meta.register``.
  """
  _EXTRA[name] = builder_class


def all_metas() -> list[tuple[Any, bool]]:
  """``(DatasetMeta, is_default_config)`` of every dataset in :data:`DATASETS` (imports only meta modules)."""
  out = []
  for name in DATASETS:
    module = importlib.import_module(f"data_builders.{name}.meta")
    default = getattr(module, "DEFAULT_CONFIG", None)
    for meta in module.METAS:
      out.append((meta, default is not None and meta.name == f"{name}/{default}"))
  return out
