"""Shared pytest setup.

* 8 fake CPU devices for the multi-device tests: XLA reads the flag when the backend starts, so it is set
  before anything imports jax.
* ``shared_data``: the real data folder ``../shared/data``. Tests that need it are marked ``real_data``; without
  it they skip with the reason, except under ``CI=true`` where a missing folder is a failure.
"""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Keep tfds from trying the network (GCS metadata, version checks).
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _in_ci() -> bool:
  return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """Path of ``../shared/data``; skips (or fails under CI=true) when it is absent."""
  if not SHARED_DATA.is_dir():
    msg = f"real data folder {SHARED_DATA} not found (tests marked real_data read it)"
    if _in_ci():
      pytest.fail(msg + "; CI=true requires it")
    pytest.skip(msg)
  return SHARED_DATA


def pytest_collection_modifyitems(config, items):
  """Makes every ``real_data`` test depend on the ``shared_data`` fixture, so the skip/fail rule holds."""
  for item in items:
    if item.get_closest_marker("real_data") and "shared_data" not in getattr(
      item, "fixturenames", ()
    ):
      item.fixturenames.append("shared_data")
