"""Parity tests against the real PyTorch reference implementations (torchvision, timm, smp).

They need the ``parity`` extra (``pip install -e '.[parity]'``). Without it they skip with the reason; under
``CI=true`` a missing reference package is a failure, so CI can never pass by silently skipping them.
"""

import importlib
import os

import pytest


def _in_ci() -> bool:
  return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(module: str):
  """Imports ``module`` (e.g. ``torchvision``); skips the test without it, fails under ``CI=true``."""
  try:
    return importlib.import_module(module)
  except ImportError as e:
    msg = f"parity test needs {module!r} (pip install -e '.[parity]'): {e}"
    if _in_ci():
      pytest.fail(msg + "; CI=true requires it")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def torch():
  """The ``torch`` module, single-threaded (tests run under pytest-xdist) and deterministic."""
  mod = require("torch")
  mod.set_num_threads(1)
  mod.manual_seed(0)
  return mod
