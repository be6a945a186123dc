"""Tests of ``semdepth data build`` / ``semdepth data show`` on a tiny in-test TFDS builder."""

import importlib.util
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import data_builders
from data_builders import common
from semdepth_jax import main as main_lib
from semdepth_jax import viz
from semdepth_jax.data import cli
from semdepth_jax.data import meta as meta_lib

NAME = "semdepth_cli_test_ds"
H, W = 12, 20


class SemdepthCliTestDs(tfds.core.GeneratorBasedBuilder):
  """4 train / 2 validation examples in the shared stored format; can be told to fail mid-build."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Test data."}
  FAIL_AFTER = None  # set to k to raise after k examples (simulates an interrupted build)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=common.example_features(H, W))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, 4), "validation": self._generate_examples(10, 2)}

  def _generate_examples(self, start, n):
    for i in range(start, start + n):
      if self.FAIL_AFTER is not None and i - start >= self.FAIL_AFTER:
        raise KeyboardInterrupt("simulated interruption")
      rng = np.random.default_rng(i)
      depth = rng.uniform(1.0, 30.0, (H, W)).astype(np.float32)
      depth[0] = 0.0
      yield (
        f"{i:03d}",
        common.make_example(
          image=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
          depth=depth,
          segmentation=rng.integers(0, 3, (H, W)),
          intrinsics=None,
          file_name=f"{i:03d}",
          num_classes=3,
          source=f"test {i}",
        ),
      )


# Test builders are not part of the project's dataset list: register them explicitly.
data_builders.register_builder(NAME, SemdepthCliTestDs)


def run(argv, capsys):
  rc = main_lib.main(argv)
  out = capsys.readouterr()
  return rc, out.out, out.err


def test_build_then_show(tmp_path, capsys, monkeypatch):
  data_dir = str(tmp_path / "tfds")
  rc, out, _ = run(["data", "build", "--dataset", NAME, "--data_dir", data_dir], capsys)
  assert rc == 0
  final = os.path.join(data_dir, NAME, "1.0.0")
  assert f"at {final}" in out
  assert "train: 4 examples" in out and "validation: 2 examples" in out
  assert " s at " in out  # time taken
  assert os.path.isfile(os.path.join(final, "dataset_info.json"))
  assert not [p for p in os.listdir(os.path.join(data_dir, NAME)) if "incomplete" in p]

  rc, out, _ = run(["data", "build", "--dataset", NAME, "--data_dir", data_dir], capsys)
  assert rc == 0 and "already built" in out

  # Without meta info: generated palette, one depth range for the grid.
  png = tmp_path / "grid.png"
  argv = ["data", "show", "--dataset", NAME, "--split", "validation", "--n", "8"]
  argv += ["--out", str(png), "--data_dir", data_dir, "--dpi", "40"]
  rc, out, _ = run(argv, capsys)
  assert rc == 0 and "Wrote 2 examples" in out and "no meta info" in out
  with Image.open(png) as im:
    assert im.size[1] == round(2 * viz.ROW_HEIGHT_IN * 40)  # one row per example

  # With meta info: the dataset's palette and fixed depth range.
  test_meta = meta_lib.DatasetMeta(
    name=NAME,
    class_names=("a", "b", "c"),
    class_colors=((255, 0, 0), (0, 255, 0), (0, 0, 255)),
    has_depth=True,
    has_segmentation=True,
    min_depth=1e-3,
    max_depth=30.0,
    depth_vis_range=(1.0, 30.0),
    eval_crop=None,
    native_size=(H, W),
    intrinsics=None,
    splits=("train", "validation"),
    scene_type="outdoor",
  )
  monkeypatch.setitem(meta_lib._REGISTRY, NAME, test_meta)
  argv = ["data", "show", "--dataset", NAME, "--n", "3", "--out", str(png), "--data_dir", data_dir]
  rc, out, _ = run(argv + ["--dpi", "40"], capsys)
  assert rc == 0 and "Wrote 3 examples" in out and "no meta info" not in out
  with Image.open(png) as im:
    assert im.size[1] == round(3 * viz.ROW_HEIGHT_IN * 40)
    pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
  # The pure palette colours of the label panel are in the image.
  for colour in test_meta.class_colors:
    assert (pixels == colour).all(axis=1).any()


def test_interrupted_build_is_not_mistaken_for_complete(tmp_path, capsys, monkeypatch):
  data_dir = str(tmp_path / "tfds")
  monkeypatch.setattr(SemdepthCliTestDs, "FAIL_AFTER", 2)
  rc, _, err = run(["data", "build", "--dataset", NAME, "--data_dir", data_dir], capsys)
  assert rc == 130 and "was not built" in err
  assert not os.path.exists(os.path.join(data_dir, NAME, "1.0.0"))
  leftovers = (
    os.listdir(os.path.join(data_dir, NAME)) if os.path.isdir(os.path.join(data_dir, NAME)) else []
  )
  assert not [p for p in leftovers if "incomplete" in p]  # TFDS removed its temporary folder
  # Readers report the dataset as not built, with the command that builds it.
  argv = [
    "data",
    "show",
    "--dataset",
    NAME,
    "--out",
    str(tmp_path / "g.png"),
    "--data_dir",
    data_dir,
  ]
  rc, _, err = run(argv, capsys)
  assert rc == 2
  assert f"semdepth data build --dataset {NAME} --data_dir {data_dir}" in err
  # Building again completes.
  monkeypatch.setattr(SemdepthCliTestDs, "FAIL_AFTER", None)
  rc, out, _ = run(["data", "build", "--dataset", NAME, "--data_dir", data_dir], capsys)
  assert rc == 0 and "train: 4 examples" in out


@pytest.mark.skipif(
  importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow is installed"
)
def test_tfrecord_without_tensorflow_is_a_clear_error(tmp_path, capsys):
  argv = ["data", "build", "--dataset", NAME, "--data_dir", str(tmp_path), "--file_format"]
  rc, _, err = run(argv + ["tfrecord"], capsys)
  assert rc == 2 and "needs TensorFlow" in err


def test_unknown_dataset_and_config_conflict(tmp_path, capsys):
  rc, _, err = run(
    ["data", "build", "--dataset", "no_such_ds", "--data_dir", str(tmp_path)], capsys
  )
  assert rc == 2 and "unknown dataset 'no_such_ds'" in err
  assert cli.dataset_name("nyu_depth_v2_labeled", "13") == "nyu_depth_v2_labeled/13"
  assert cli.dataset_name("nyu_depth_v2_labeled/13:1.0.0", "13") == "nyu_depth_v2_labeled/13:1.0.0"
  with pytest.raises(ValueError, match="already names config"):
    cli.dataset_name("nyu_depth_v2_labeled/40", "13")


def test_data_without_subcommand_prints_help(capsys):
  rc, out, _ = run(["data"], capsys)
  assert rc == 2 and "build" in out and "show" in out


def test_stock_tfds_name_is_a_usage_error_listing_our_datasets(tmp_path, capsys):
  # nyu_depth_v2 is a stock TFDS dataset (a 32 GB download); only this project's builders are ever used.
  rc, _, err = run(
    ["data", "build", "--dataset", "nyu_depth_v2", "--data_dir", str(tmp_path)], capsys
  )
  assert rc == 2
  assert "unknown dataset 'nyu_depth_v2'" in err and "nyu_depth_v2_labeled" in err
  assert not any(tmp_path.iterdir())  # nothing was created, nothing was downloaded
