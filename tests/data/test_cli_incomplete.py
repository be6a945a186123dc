"""Stale ``incomplete.*`` folders of killed TFDS builds are removed by the next build, with one line."""

import logging
import os

import pytest

from semdepth_jax.train import loop
from tests.data.test_cli import NAME, run


def _fake_leftovers(data_dir):
  base = os.path.join(data_dir, NAME)
  stale = os.path.join(base, "incomplete.AB12CD_1.0.0")
  other = os.path.join(base, "incomplete.ZZ99ZZ_0.9.0")  # another version: not ours to remove
  for d in (stale, other):
    os.makedirs(os.path.join(d, "train"))
    with open(os.path.join(d, "train", "part-0"), "wb") as f:
      f.write(b"x" * 2_000_000)
  return stale, other


def test_data_build_removes_stale_incomplete_folders(tmp_path, capsys):
  data_dir = str(tmp_path / "tfds")
  stale, other = _fake_leftovers(data_dir)
  rc, out, _ = run(["data", "build", "--dataset", NAME, "--data_dir", data_dir], capsys)
  assert rc == 0
  lines = [ln for ln in out.splitlines() if "incomplete" in ln]
  assert len(lines) == 1
  assert "removed 1 incomplete folder" in lines[0] and "incomplete.AB12CD_1.0.0" in lines[0]
  assert "2.0 MB" in lines[0]
  assert not os.path.exists(stale) and os.path.isdir(other)
  assert os.path.isdir(os.path.join(data_dir, NAME, "1.0.0"))


def test_ensure_dataset_removes_stale_incomplete_folders(tmp_path, caplog):
  data_dir = str(tmp_path / "tfds")
  stale, other = _fake_leftovers(data_dir)
  with caplog.at_level(logging.INFO, logger="semdepth_jax"):
    loop.ensure_dataset(NAME, data_dir, manual_dir=tmp_path)
  assert any("incomplete.AB12CD_1.0.0" in r.getMessage() for r in caplog.records)
  assert not os.path.exists(stale) and os.path.isdir(other)


def test_ensure_dataset_names_a_missing_or_empty_manual_dir(tmp_path):
  (tmp_path / "empty").mkdir()
  for sub, what in (("missing", "does not exist"), ("empty", "an empty folder")):
    with pytest.raises(FileNotFoundError, match=f"manual_dir .*{sub}: expected a folder .*{what}"):
      loop.ensure_dataset("replica", str(tmp_path / "tfds"), manual_dir=tmp_path / sub)
