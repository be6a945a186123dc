"""Helpers of a clean resume: cutting metrics.jsonl back, and the divergence message."""

import json

import numpy as np
import pytest

from semdepth_jax.train import logging as log_lib


def test_rewrite_jsonl_keeps_selected_records_and_drops_a_torn_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  lines = [json.dumps({"step": s, "split": "train", "loss": s / 10}) for s in (1, 2, 3)]
  path.write_text("\n".join(lines) + '\n{"step": 4, "spl')  # killed mid-write
  removed = log_lib.rewrite_jsonl(path, lambda r: r["step"] <= 2)
  assert removed == 2
  assert path.read_text() == lines[0] + "\n" + lines[1] + "\n"
  assert log_lib.rewrite_jsonl(path, lambda r: True) == 0
  assert log_lib.rewrite_jsonl(tmp_path / "missing.jsonl", lambda r: True) == 0


@pytest.mark.parametrize(
  ("last", "says", "not_says"),
  [
    (None, "No checkpoint has been written yet", "intact"),
    (40, "newest checkpoint (step 40) predates it and is intact", "No checkpoint"),
  ],
)
def test_divergence_message_names_the_checkpoint_truthfully(last, says, not_says):
  with pytest.raises(FloatingPointError) as err:
    log_lib.check_finite(41, {"loss": np.float32(np.nan), "grad_norm": 1.0}, last)
  msg = str(err.value)
  assert "step 41" in msg and says in msg and not_says not in msg
