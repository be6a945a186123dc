"""``benchmarks/compare.py --smoke`` runs and both implementations agree; the accelerator suite's CPU smoke.

No timing is asserted anywhere.

Needs the ``parity`` extra (torch); skips without it, fails under ``CI=true`` (tests/parity/conftest.py).
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.models import known_models
from tests import test_evaluate
from tests.parity.conftest import require
from tests.test_compare_001_002 import FAMILIES as FAMILIES_001_002

tfds_dir = test_evaluate.tfds_dir  # fixture: synthetic_city/tiny built once per module

TESTED_ELSEWHERE = (*FAMILIES_001_002, "ds_sidenet")
"""Families whose references have their own small tests (tests/test_compare_001_002.py,
tests/test_compare_references_004.py); the whole-run smoke below leaves them out to stay fast (their
train steps compile a VGG / ResNet / DS-SIDENet each)."""


def test_compare_smoke_runs_and_implementations_agree(tmp_path):
  require("torch")
  from benchmarks import compare

  names = [n for n in known_models() if n not in TESTED_ELSEWHERE]
  argv = ["--models", ",".join(names), "--mode", "train", "--smoke", "--batch", "2"]
  results = compare.main([*argv, "--out", str(tmp_path)])
  by_name = {r["model"]: r for r in results["models"]}
  assert sorted(by_name) == sorted(names)  # no family silently dropped
  compared = [r for r in results["models"] if r["status"] != "no reference"]
  want = {"unet", "scrx", "cnn3d_up", "cnn3d_s", "ssegdepnet", "semantic_md"}
  assert {r["model"] for r in compared} >= want
  for r in compared:
    assert r["status"] == "ok", r
    assert r["equality"]["ok"] and r["equality"]["max_abs_diff"] <= compare.TOL, r["equality"]
    assert r["params"] == r["torch_params"] > 0  # same architecture, same parameter count
    assert r["flops"] and r["flops"] > 0  # XLA's cost analysis was read
    assert r["jax_s"]["median"] > 0 and r["torch_s"]["median"] > 0 and r["ratio"] > 0
  for r in results["models"]:
    if r["status"] == "no reference":
      assert r["reason"], r
  saved = json.loads((tmp_path / "compare_train_f32.json").read_text())
  assert [m["model"] for m in saved["models"]] == [m["model"] for m in results["models"]]
  table = (tmp_path / "compare_train_f32.md").read_text()
  assert all(f"| {name} |" in table for name in names)


def test_every_family_has_a_reference_or_a_reason():
  """Each registered family is compared (a pair builder and a paper size) or listed with a reason."""
  from benchmarks import compare

  for name in known_models():
    assert (name in compare.PAIR_BUILDERS) != (name in compare.NO_REFERENCE), name
  assert set(compare.PAIR_BUILDERS) <= set(compare.PAPER_SIZE)
  assert set(TESTED_ELSEWHERE) <= set(compare.PAIR_BUILDERS)


def test_equality_check_catches_an_unflipped_transposed_kernel():
  """The check before timing is not vacuous: the U-Net with its transposed kernels left unflipped fails."""
  torch = require("torch")
  import numpy as np

  from benchmarks import compare

  image = np.random.default_rng(0).random((1, 16, 16, 3)).astype(np.float32)
  labels = np.zeros((1, 16, 16), np.int32)
  pair = compare.build_pair("unet", True, image)
  assert compare.check_equal(pair, image, labels, "cpu")["ok"]
  params = dict(pair.variables["params"])
  params["u3"] = {**params["u3"], "kernel": params["u3"]["kernel"][::-1, ::-1]}
  pair.variables = {**pair.variables, "params": params}
  torch.manual_seed(0)
  bad = compare.check_equal(pair, image, labels, "cpu")
  assert not bad["ok"] and bad["max_abs_diff"] > 1e-3, bad


def test_every_default_throughput_preset_builds():
  """The accelerator suite's presets resolve to a model, loss and optimiser (no compilation here)."""
  from benchmarks import accelerator_throughput as at

  for preset in at.DEFAULT_PRESETS:
    fam = at.build_family(preset, "tiny")
    assert fam["model_name"] and len(fam["image_size"]) == 2, preset
  assert at.peak_tflops("NVIDIA H200", "bf16") == 989.0
  assert at.peak_tflops("NVIDIA H100 80GB HBM3", "f32") == 67.0
  assert at.peak_tflops("cpu", "bf16") is None


@pytest.mark.slow
def test_accelerator_suite_smoke_runs_on_cpu(tmp_path):
  """``accelerator_suite.sh --smoke`` (one family, one dtype) writes its results file with every part."""
  require("torch")
  root = pathlib.Path(__file__).resolve().parents[1]
  env = dict(
    os.environ,
    PYTHON=sys.executable,
    PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    SUITE_PRESETS="ssegdepnet.py:model=scrx_ohess",
    SUITE_DTYPES="bf16",
    SUITE_MODELS="scrx",
  )
  script = root / "benchmarks" / "accelerator_suite.sh"
  proc = subprocess.run(
    ["bash", str(script), "--smoke", str(tmp_path)], env=env, capture_output=True, text=True
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  text = (tmp_path / "accelerator_results.md").read_text()
  assert "jax 0." in text and "torch " in text  # versions recorded
  assert "| ssegdepnet.py:model=scrx_ohess | scrx | 32x48 | bf16 | 1 |" in text
  assert "input pipeline" in text and "examples/s" in text
  assert "## Training throughput and MFU (exit 0)" in text
  assert "## Input pipeline (exit 0)" in text
  assert "## JAX vs PyTorch (bf16; exit 0)" in text and "| scrx | ok |" in text
  assert "## DS-SIDENet vs DeepLab-v2-SID inference (exit 0)" in text
  assert "| low | 1 | float32 |" in text
  throughput = json.loads((tmp_path / "throughput.json").read_text())
  assert throughput["complete"]
  assert throughput["families"][0]["runs"][0]["points"][0]["flops"] > 0


def test_ds_sidenet_speed_smoke_rows(tmp_path):
  """``ds_sidenet_speed.py --smoke``: one row per model and dtype, the parameter count of that model."""
  from benchmarks import ds_sidenet_speed
  from semdepth_jax import models

  out = tmp_path / "speed.md"
  ds_sidenet_speed.main(
    ["--smoke", "--models", "low,deeplab_sid", "--dtypes", "float32,bfloat16", "--out", str(out)]
  )
  rows = [r.split("|")[1:-1] for r in out.read_text().splitlines() if r.startswith("| ")]
  body = [[c.strip() for c in r] for r in rows[1:]]  # rows[0] is the header
  assert [r[:3] for r in body] == [
    ["low", "1", "float32"],
    ["low", "1", "bfloat16"],
    ["deeplab_sid", "1", "float32"],
    ["deeplab_sid", "1", "bfloat16"],
  ]
  # Parameter counts from an abstract init of the same widths (no code of the benchmark).
  smoke = ds_sidenet_speed.SMOKE_KWARGS
  for name, model in (
    ("low", models.get_model("ds_sidenet", variant="low", **smoke["low"])),
    ("deeplab_sid", models.get_model("deeplab_sid", **smoke["deeplab_sid"])),
  ):
    shapes = jax.eval_shape(
      lambda x, m=model: m.init(jax.random.key(0), x, train=False),
      jax.ShapeDtypeStruct((1, 32, 48, 3), jnp.float32),
    )
    n = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"]))
    assert {int(r[3].replace(",", "")) for r in body if r[0] == name} == {n}
  assert all(float(r[6]) > 0 for r in body)  # ms / image


def test_throughput_gives_every_family_and_dtype_its_first_point(tmp_path):
  """With no time budget left each (family, dtype) still gets batch 1, and stops before batch 2."""
  from benchmarks import accelerator_throughput as at

  out = tmp_path / "t.json"
  results = at.main(
    [
      "--presets",
      "ssegdepnet.py:model=scrx_ohess",
      "--size",
      "tiny",
      "--dtypes",
      "f32,bf16",
      "--batches",
      "1,2",
      "--budget_s",
      "0",
      "--steps",
      "1",
      "--no-pipeline",
      "--out",
      str(out),
    ]
  )
  runs = results["families"][0]["runs"]
  assert [r["dtype"] for r in runs] == ["f32", "bf16"]
  for run in runs:
    assert [p["batch"] for p in run["points"]] == [1]
    assert run["stopped"] == "time budget at batch 2"
    assert run["points"][0]["flops"] > 0 and run["points"][0]["loss_finite"]
  assert (
    "| ssegdepnet.py:model=scrx_ohess | scrx | 32x48 | bf16 | 1 |"
    in out.with_suffix(".md").read_text()
  )


def test_compare_variants_are_timed_next_to_the_default(tmp_path):
  """``--variants``: every JAX configuration gets its time and ratio (each traced in its own context)."""
  require("torch")
  from benchmarks import compare

  variants = ("eigen", "dwconv", "pointwise", "volume")
  results = compare.main(
    ["--models", "cnn3d_up", "--mode", "train", "--smoke", "--variants", ",".join(variants)]
  )
  (rec,) = results["models"]
  assert rec["status"] == "ok", rec
  for v in variants:
    assert rec[f"jax_{v}_s"]["median"] > 0 and rec[f"ratio_{v}"] > 0, v


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_timed_jax_step_moves_nothing_from_the_host(mode):
  """The timed JAX call finds its weights and input on the device, as PyTorch's eager step does.

  An inference runner once passed the converted NumPy weights to every call, so each timed step copied
  all parameters to the device first (about a quarter of U-Net's CPU inference time).
  """
  require("torch")
  from benchmarks import compare

  image = np.random.default_rng(0).random((1, 16, 16, 3)).astype(np.float32)
  labels = np.zeros((1, 16, 16), np.int32)
  pair = compare.build_pair("unet", True, image)
  run, _, _ = compare._jax_runner(pair, image, labels, mode, "f32", 0)
  run()  # warm: compiled, and a train step's state replaced by its output
  with jax.transfer_guard_host_to_device("disallow"):
    run()
    run()


def test_bench_pipeline_runs_on_a_small_dataset(tfds_dir, capsys):
  """``bench_pipeline.py`` on synthetic_city/tiny (16 training frames, fewer than the 20 it sampled)."""
  from benchmarks import bench_pipeline

  args = ["--dataset", "synthetic_city/tiny", "--data_dir", str(tfds_dir), "--batch_size", "2",
          "--num_batches", "1", "--warmup", "0", "--height", "32", "--width", "48",
          "--settings", "0:0"]  # fmt: skip
  assert bench_pipeline.main(args) == 0
  out = capsys.readouterr().out
  assert "transforms only (1 thread):" in out
  assert "pipeline num_threads=0 worker_count=0:" in out and "32x48 crops, batch 2" in out
