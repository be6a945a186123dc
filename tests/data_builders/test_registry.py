"""One dataset registry: every project builder has meta info next to it, and vice versa."""

import pathlib

import pytest

import data_builders
from semdepth_jax.data import meta as meta_lib
from semdepth_jax.data import pipeline

ROOT = pathlib.Path(data_builders.__file__).parent


def test_every_builder_package_is_registered_and_has_meta():
  packages = sorted(
    p.name for p in ROOT.iterdir() if p.is_dir() and (p / f"{p.name}_dataset_builder.py").is_file()
  )
  assert packages == sorted(data_builders.DATASETS)
  for name in data_builders.DATASETS:
    folder = ROOT / name
    for f in ("meta.py", "README.md", "CITATIONS.bib", "__init__.py"):
      assert (folder / f).is_file(), f"data_builders/{name}/{f} is missing"
    assert meta_lib.get_meta(name).name.split("/")[0] == name


def test_every_meta_belongs_to_a_builder_and_every_config_has_meta():
  for meta, _ in data_builders.all_metas():
    assert meta.name.split("/")[0] in data_builders.DATASETS
  for name in data_builders.DATASETS:
    cls = data_builders.get_builder_class(name)
    for config in getattr(cls, "BUILDER_CONFIGS", None) or []:
      meta = meta_lib.get_meta(f"{name}/{config.name}")
      assert meta.name in (name, f"{name}/{config.name}")


@pytest.mark.parametrize("name", ["nyu_depth_v2", "kitti", "mnist"])
def test_stock_tfds_names_are_never_used(name, tmp_path):
  with pytest.raises(KeyError, match="this project's datasets: synthetic_city, replica"):
    pipeline.get_builder(name, str(tmp_path))


def test_unknown_config_lists_the_configs(tmp_path):
  with pytest.raises(ValueError, match="no config '7'; configs: 40, 13"):
    pipeline.get_builder("nyu_depth_v2_labeled/7", str(tmp_path))
  assert pipeline.get_builder("nyu_depth_v2_labeled/13", str(tmp_path)).builder_config.name == "13"
