"""TFDS dataset builders of semdepth_jax, one package per dataset.

``get_builder_class(name)`` imports a builder module (which registers it with TFDS) and returns its class.
Builders write ``array_record`` files by default, so building and reading need no TensorFlow.
"""

from __future__ import annotations

import importlib

# name -> module defining the builder class (importing it registers the builder with tfds).
BUILDER_MODULES = {
  "synthetic_city": "data_builders.synthetic_city.synthetic_city_dataset_builder",
  "replica": "data_builders.replica.replica_dataset_builder",
  "nyu_depth_v2_labeled": "data_builders.nyu_depth_v2_labeled.nyu_depth_v2_labeled_dataset_builder",
  "camvid": "data_builders.camvid.camvid_dataset_builder",
}


def known_builders() -> tuple[str, ...]:
  """Names accepted by :func:`get_builder_class`."""
  return tuple(BUILDER_MODULES)


def get_builder_class(name: str):
  """Returns the ``tfds.core.GeneratorBasedBuilder`` subclass for ``name``.

  Args:
    name: builder name, optionally with ``/config`` and ``:version`` (both ignored here).

  Raises:
    KeyError: unknown name; the message lists the known builders.
  """
  base = name.split(":")[0].split("/")[0]
  if base not in BUILDER_MODULES:
    raise KeyError(f"unknown dataset builder {name!r}; known: {', '.join(known_builders())}")
  module = importlib.import_module(BUILDER_MODULES[base])
  return module.Builder
