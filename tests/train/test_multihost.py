"""Multi-host training as on a pod, simulated with 2 JAX processes of 4 CPU devices each on localhost.

The processes (``tests/train/multihost_worker.py``) are started the way a pod or cluster launch starts them:
``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` in the environment, read by
``mesh.maybe_initialize_distributed``; cross-process collectives run over gloo (jax's CPU default). Each
reads its own shard of the data. The reference is this (pytest) process with 8 devices, fed the global
batches the two processes assemble (both shards concatenated in process order), so both runs compute the
same SPMD program on the same global data and must reach the same parameters. Checkpoints written by 2
processes are resumed by 1 and vice versa.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from semdepth_jax.train import checkpoint as ckpt_lib
from semdepth_jax.train import logging as log_lib
from semdepth_jax.train import loop
from tests.conftest import REPO_ROOT
from tests.train import multihost_worker as worker

pytestmark = pytest.mark.multidevice

NUM_PROCESSES, DEVICES_PER_PROCESS = 2, 4
TIMEOUT_S = 150  # only reached when something hangs (the workers take ~25 s on 2 loaded cores)
ATOL = 1e-5


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(args: list[str], logdir) -> None:
  """Runs the worker in ``NUM_PROCESSES`` processes; kills all of them on failure or timeout."""
  port = _free_port()
  procs, logs = [], []
  for pid in range(NUM_PROCESSES):
    env = dict(os.environ)
    env.update(
      XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}",
      JAX_PLATFORMS="cpu",
      JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
      JAX_NUM_PROCESSES=str(NUM_PROCESSES),
      JAX_PROCESS_ID=str(pid),
      PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
    )
    log = open(os.path.join(logdir, f"worker{pid}.log"), "wb")  # noqa: SIM115 - closed below
    logs.append(log)
    procs.append(
      subprocess.Popen(
        [sys.executable, "-m", "tests.train.multihost_worker", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
      )
    )
  deadline = time.monotonic() + TIMEOUT_S
  failed = None
  try:
    while any(p.poll() is None for p in procs):
      bad = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
      if bad:
        failed = f"process {bad[0]} exited with {procs[bad[0]].returncode}"
        break
      if time.monotonic() > deadline:
        failed = f"timed out after {TIMEOUT_S} s"
        break
      time.sleep(0.2)
    else:
      bad = [i for i, p in enumerate(procs) if p.returncode != 0]
      if bad:
        failed = f"process {bad[0]} exited with {procs[bad[0]].returncode}"
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    for log in logs:
      log.close()
  if failed:
    tails = []
    for pid in range(NUM_PROCESSES):
      with open(os.path.join(logdir, f"worker{pid}.log"), encoding="utf-8", errors="replace") as f:
        tails.append(f"--- worker {pid}:\n" + "".join(f.readlines()[-25:]))
    pytest.fail(f"multi-host workers failed: {failed}\n" + "\n".join(tails))


def _load(out, i: int) -> tuple[list[np.ndarray], dict]:
  import json

  with np.load(os.path.join(out, f"{i}.npz")) as z:
    leaves = [z[f"arr_{k}"] for k in range(len(z.files))]
  with open(os.path.join(out, f"{i}.json"), encoding="utf-8") as f:
    return leaves, json.load(f)


def _assert_close(actual: list[np.ndarray], expected, what: str) -> None:
  exp = worker.state_leaves(expected)
  assert len(actual) == len(exp), what
  for k, (a, e) in enumerate(zip(actual, exp, strict=True)):
    np.testing.assert_allclose(a, e, rtol=0, atol=ATOL, err_msg=f"{what}: leaf {k}")


@pytest.mark.slow
def test_two_processes_match_one_process_and_checkpoints_cross_over(tmp_path):
  assert jax.device_count() == NUM_PROCESSES * DEVICES_PER_PROCESS
  # Reference: one process, 8 devices, the same global batches.
  ref_comps = worker.components(emulate_processes=NUM_PROCESSES)
  ref = loop.train(worker.config(), tmp_path / "ref", components=ref_comps)
  assert ref.eval_metrics["examples"] == worker.NUM_EVAL
  part = loop.train(worker.config(), tmp_path / "ref_part", components=ref_comps, stop_at_step=2)
  assert part.step == 2
  shutil.copytree(tmp_path / "ref_part", tmp_path / "from1")  # a 1-process checkpoint at step 2

  out = tmp_path / "out"
  _launch(
    [str(out), str(tmp_path / "mh"), f"{tmp_path / 'mh_part'}:2", str(tmp_path / "from1")],
    tmp_path,
  )

  # 2 processes x 4 devices from scratch == 1 process x 8 devices.
  leaves, info = _load(out, 0)
  assert (info["process_count"], info["device_count"], info["local_device_count"]) == (2, 8, 4)
  assert info["step"] == worker.STEPS
  _assert_close(leaves, ref.state, "2-process run vs 1-process run")
  # Every evaluation example counted exactly once (11 examples, padded to 2 x 2 x 4 slots).
  assert info["eval"]["examples"] == worker.NUM_EVAL
  np.testing.assert_allclose(info["eval"]["rmse"], ref.eval_metrics["rmse"], rtol=1e-5)
  # Logs written once (process 0), with the reference's values.
  mh_log = log_lib.read_jsonl(tmp_path / "mh" / "metrics.jsonl")
  ref_log = log_lib.read_jsonl(tmp_path / "ref" / "metrics.jsonl")
  assert [(r["step"], r["split"]) for r in mh_log] == [(r["step"], r["split"]) for r in ref_log]
  for a, b in zip(mh_log, ref_log, strict=True):
    key = "loss" if a["split"] == "train" else "rmse"
    np.testing.assert_allclose(a[key], b[key], rtol=1e-5)

  # A checkpoint written by 1 process, resumed by 2.
  leaves, info = _load(out, 2)
  assert info["step"] == worker.STEPS
  _assert_close(leaves, ref.state, "1-process checkpoint resumed in 2 processes")

  # A checkpoint written by 2 processes, restored and resumed by 1. Each process wrote its half of the
  # sharded encoder kernel.
  kernel = ref.state.params["enc"]["kernel"]
  assert tuple(kernel.sharding.spec) == (None, None, None, "data") and kernel.shape[-1] == 8
  for pid in range(NUM_PROCESSES):
    assert (tmp_path / "mh" / "checkpoints" / "3" / "variables" / f"ocdbt.process_{pid}").is_dir()
  with ckpt_lib.Checkpointer(tmp_path / "mh" / "checkpoints") as ck:
    variables, _ = ck.restore_variables(worker.STEPS)
  for (path, a), b in zip(
    jax.tree_util.tree_leaves_with_path(variables["params"]),
    jax.tree.leaves(jax.device_get(ref.state.params)),
    strict=True,
  ):
    np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=ATOL, err_msg=str(path))
  assert sorted(os.listdir(tmp_path / "mh_part" / "checkpoints")) == ["2"]
  resumed = loop.train(worker.config(), tmp_path / "mh_part", components=ref_comps)
  assert resumed.step == worker.STEPS
  _assert_close(worker.state_leaves(resumed.state), ref.state, "2-process checkpoint resumed in 1")


def test_launch_environment_is_passed_to_jax_distributed(monkeypatch):
  from semdepth_jax.train import mesh as mesh_lib

  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  monkeypatch.setattr(mesh_lib.maybe_initialize_distributed, "_done", False, raising=False)
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(name, raising=False)
  assert mesh_lib.maybe_initialize_distributed() is False and calls == []
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "4")
  with pytest.raises(ValueError, match=r"JAX_PROCESS_ID: expected an index in \[0, .*=4\), got 4"):
    mesh_lib.maybe_initialize_distributed()
  monkeypatch.setenv("JAX_PROCESS_ID", "x")
  with pytest.raises(ValueError, match="JAX_PROCESS_ID: expected an integer >= 0, got 'x'"):
    mesh_lib.maybe_initialize_distributed()
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  assert mesh_lib.maybe_initialize_distributed() is True
  assert calls == [{"num_processes": 4, "process_id": 3}]
  # Cluster auto-detection (config.distributed=True, no variables): jax chooses both.
  monkeypatch.setattr(mesh_lib.maybe_initialize_distributed, "_done", False)
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(name)
  assert mesh_lib.maybe_initialize_distributed(force=True) is True
  assert calls[-1] == {"num_processes": None, "process_id": None}


def test_multi_process_run_does_not_build_a_dataset(tmp_path, monkeypatch):
  monkeypatch.setattr(loop.jax, "process_count", lambda: 2)
  with pytest.raises(FileNotFoundError, match="a run of 2 processes does not build it") as e:
    loop.ensure_dataset("synthetic_city/tiny", str(tmp_path / "tfds"))
  assert "semdepth data build --dataset synthetic_city/tiny" in str(e.value)
  assert not (tmp_path / "tfds").exists() or not any((tmp_path / "tfds").rglob("*.array_record*"))
