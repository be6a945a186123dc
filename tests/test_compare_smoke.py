"""``benchmarks/compare.py --smoke`` runs and both implementations agree (no timing is asserted).

Needs the ``parity`` extra (torch); skips without it, fails under ``CI=true`` (tests/parity/conftest.py).
"""

import json

from semdepth_jax.models import known_models
from tests.parity.conftest import require


def test_compare_smoke_runs_and_implementations_agree(tmp_path):
  require("torch")
  from benchmarks import compare

  results = compare.main(
    ["--models", "all", "--mode", "train", "--smoke", "--batch", "2", "--out", str(tmp_path)]
  )
  by_name = {r["model"]: r for r in results["models"]}
  assert sorted(by_name) == sorted(known_models())  # no family silently dropped
  compared = [r for r in results["models"] if r["status"] != "no reference"]
  assert {r["model"] for r in compared} >= {"unet", "scrx"}
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
  assert all(f"| {name} |" in table for name in known_models())
