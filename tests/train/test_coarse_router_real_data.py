"""Paper 004's coarse router, trained at ``size=tiny``, routes real indoor and outdoor images (../shared/data).

Builds replica (frames 0-59 train) and ``synthetic_city/tiny`` into a temporary folder, trains
``configs/ds_sidenet.py:model=coarse,loss=reg,size=tiny,steps=600`` on their mixture (seed 0, through the real
config / loop / pipeline, as ``benchmarks/coarse_router_accuracy.py`` does), loads it as
``semdepth_jax.routed.CoarseRouter`` with the paper's rule (maximum predicted depth > 5.89 m -> high range)
and routes, one image at a time at its stored size, the Replica validation frames (60-80; indoor: low) and
every KITTI and CamVid image of the shared data (outdoor: high).

Setting and threshold from ``python benchmarks/coarse_router_accuracy.py --size tiny --seeds 3 --steps 600
--loss reg --outdoor synthetic_city/tiny`` (2-core VM, loaded: 180-600 s per seed): on seeds 0, 1 and 2 the
max rule routed Replica val 21/21, KITTI 4/4 and CamVid 367/367 correctly; predicted maxima: Replica val
2.46-4.17 m, KITTI 14.8-80.0 m, CamVid 26.4-95.5 m (sigma 5.89 m). The test requires 90 % per set.

Left out, with the reason: NYU (the router trained on one Replica room sends most NYU rooms high, and even
ground-truth depth exceeds 5.89 m in 4 of its 5 frames with depth: ``--oracle``) and SHIFT (2 frames; routed
inconsistently across seeds). Those sets are why the issue's ">= 90 % on every real set" is still open.
"""

import os

import numpy as np
import pytest

from semdepth_jax import predict, routed, routing
from semdepth_jax.train import loop

pytestmark = [pytest.mark.real_data, pytest.mark.slow]

OUTDOOR = "synthetic_city/tiny"
STEPS = 600
MIN_ACCURACY = 0.9
"""Required fraction routed correctly per set (module docstring)."""
ROUTED = ("replica_val", "kitti", "camvid")


@pytest.fixture(scope="module")
def data_dir(shared_data, tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tfds"))
  loop.ensure_dataset("replica", d, manual_dir=shared_data / "replica_office0")
  loop.ensure_dataset(OUTDOOR, d)
  return d


def test_tiny_coarse_router_routes_real_indoor_low_and_outdoor_high(
  data_dir, shared_data, tmp_path, record_property
):
  from benchmarks import coarse_router_accuracy as bench

  workdir = str(tmp_path / "router")
  bench.train_router(0, "tiny", workdir, data_dir, STEPS, OUTDOOR, "reg")
  router = routed.CoarseRouter(predict.load_trained(workdir), sigma=routing.SIGMA_M)
  for name, truth, folders in bench.SETS:
    if name not in ROUTED:
      continue
    files = bench.image_files(str(shared_data), folders, name)
    decisions, maxima = [], []
    for f in files:
      img = predict.read_image(f)
      out = router(np.asarray(img[None], np.float32) / 255.0)
      decisions.append(routing.decision(out["is_low"])[0])
      maxima.append(float(out["max_depth"][0]))
    acc = float(np.mean([d == truth for d in decisions]))
    record_property(f"{name}_accuracy", acc)
    print(
      f"{name} ({truth}, {len(files)} images): accuracy {acc:.3f}, max depth median "
      f"{np.median(maxima):.2f} m [{min(maxima):.2f}, {max(maxima):.2f}]"
    )
    assert len(files) == {"replica_val": 21, "kitti": 4, "camvid": 367}[name]
    assert acc >= MIN_ACCURACY, (name, acc, os.path.basename(files[0]))
