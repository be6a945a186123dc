r"""Routed depth of paper 004 (Ren et al. §3, docs/model_spec.md §5.4): route each image, then predict.

::

  semdepth predict --router coarse:runs/router --low runs/low --high runs/high --images photos/ --out p/
  semdepth predict --router scene:weights/places365 --low runs/low --high runs/high --images ... --out ...
  semdepth evaluate --router coarse:runs/router --low runs/low --high runs/high \
      --datasets replica:validation,kitti_depth:test

Stage 1, the router (``--router KIND:PATH``), decides the depth range of each image
(``semdepth_jax.routing``):

* ``scene:DIR`` - a Places365 scene classifier converted with
  ``semdepth convert-weights --arch resnet18_places365`` (the user's ``wideresnet18_places365.pth.tar``);
  the image is resized to 224 x 224 (bilinear, antialiased), normalised as the converted weights expect,
  and its top-``k`` categories (paper: 15) vote with the packaged indoor / outdoor list; more than ``k / 2``
  indoor votes route it to the low-range network.
* ``coarse:WORKDIR`` - a trained coarse DS-SIDENet (``configs/ds_sidenet.py:model=coarse``); the image is
  resized to its input size, and an image whose maximum predicted depth exceeds ``sigma`` (paper: 5.89 m)
  goes to the high-range network (``--router_statistic p95|median`` compares that percentile of the
  predicted depth instead of the maximum; ``semdepth_jax.routing.coarse_depth_rule``).

Stage 2 runs the chosen trained network (``--low`` / ``--high`` workdirs, any registry model with a depth
head) as ``semdepth predict`` does, so outputs are in metres at the size of the input image.

``predict`` writes each image's files as ``semdepth predict`` does (with the chosen network's dataset meta
for colours and PNG scale) plus ``routing.jsonl``: one JSON object per image with ``image``, ``decision``
(``low`` / ``high``), ``model`` (workdir of the chosen network) and the router's evidence (``low_votes``
and ``top_k``, or ``max_depth_m``, ``p95_depth_m``, ``median_depth_m``, ``statistic`` and ``sigma_m``).

``evaluate`` runs the router over dataset splits whose true range is the dataset's ``scene_type`` (indoor =
low, outdoor = high) and reports the router's accuracy, the indoor / outdoor confusion (rows: truth,
columns: decision) and, per dataset under its default depth protocol (``metrics.dataset_protocol``), the
depth metrics of the routed system, of the images routed to each network, and of the oracle (every image
sent to the network of its true range) for comparison.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from semdepth_jax import metrics, resize, routing

ROUTER_KINDS = ("scene", "coarse")
"""``--router`` kinds: Places365 scene vote, or coarse-depth maximum (module docstring)."""

SCENE_INPUT_SIZE = (224, 224)
"""Input of the Places365 classifier (CSAILVision's scripts resize to 224 x 224)."""

ROUTING_FILE = "routing.jsonl"
"""Per-image routing record written by :func:`predict_routed`."""


class RouterError(ValueError):
  """A router or routed-system argument is unusable; the message names the argument and the file."""


# ----------------------------------------------------------------------------------------------------------
# Routers: images (B, H, W, 3) float in [0, 1] -> {'is_low': bool (B,), evidence...}.


class SceneRouter:
  """Stage 1 (a): Places365 scene classification with the top-``k`` indoor / outdoor vote.

  Args:
    module: a classifier returning ``{'logits': (B, 365)}`` in Places365 class order (the registered
      ``resnet18_places365`` backbone).
    variables: its variables (``{'params': ..., 'batch_stats': ...}``).
    preprocessing: the classifier's input convention (``semdepth_jax.models.backbones.Preprocessing``).
    top_k: voting categories (paper: 15).
    source: where the weights come from (reported).

  Raises:
    RouterError: ``top_k`` outside [1, 365].
  """

  kind = "scene"

  def __init__(
    self,
    module: Any,
    variables: Mapping[str, Any],
    preprocessing: Any,
    *,
    top_k: int = routing.TOP_K,
    source: str = "",
  ):
    if not 1 <= int(top_k) <= routing.NUM_PLACES365:
      raise RouterError(f"--router_top_k: expected 1..{routing.NUM_PLACES365}, got {top_k}")
    self.module = module
    self.variables = {c: v for c, v in variables.items() if v}
    self.preprocessing = preprocessing
    self.top_k = int(top_k)
    self.source = source
    low_mask = jnp.asarray(routing.places365_low_range_mask())

    def fn(variables, images):
      from semdepth_jax.models import backbones

      x = resize.image(images.astype(jnp.float32), SCENE_INPUT_SIZE)
      x = backbones.normalise(x, self.preprocessing)
      logits = self.module.apply(variables, x, train=False)["logits"]
      vote = routing.scene_vote(logits, low_mask, self.top_k)
      return {"is_low": vote["is_low"], "low_votes": vote["low_votes"]}

    self._fn = jax.jit(fn)

  @classmethod
  def from_converted(
    cls, directory: str | os.PathLike, *, top_k: int = routing.TOP_K
  ) -> SceneRouter:
    """Loads a ``semdepth convert-weights --arch resnet18_places365`` output directory.

    Raises:
      RouterError: not a converted-weights directory, or not a 365-way classifier.
    """
    from semdepth_jax.models import backbones
    from semdepth_jax.weights import convert

    try:
      variables, metadata = convert.load_converted(directory)
    except convert.WeightsFileError as e:
      raise RouterError(f"--router scene:{directory}: {e}") from None
    module = convert.build_from_metadata(metadata)
    n = int(getattr(module, "num_classes", 0) or 0)
    if n != routing.NUM_PLACES365:
      raise RouterError(
        f"--router scene:{directory}: expected a {routing.NUM_PLACES365}-way Places365 classifier "
        f"(convert-weights --arch resnet18_places365), got {metadata.get('architecture')!r} with {n} "
        "outputs"
      )
    prep = (
      convert.preprocessing_from_metadata(metadata)
      if metadata.get("preprocessing")
      else backbones.get_backbone_entry(metadata["architecture"]).preprocessing()
    )
    return cls(module, variables, prep, top_k=top_k, source=str(directory))

  def __call__(self, images: jax.Array) -> dict[str, np.ndarray]:
    """Routes (B, H, W, 3) float images in [0, 1]: ``is_low`` bool (B,), ``low_votes`` int (B,)."""
    return jax.device_get(self._fn(self.variables, images))

  def evidence(self, out: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
    """JSON-able evidence of image ``i``: its indoor votes out of ``top_k``."""
    return {"low_votes": int(out["low_votes"][i]), "top_k": self.top_k}


class CoarseRouter:
  """Stage 1 (b): a statistic of a coarse network's predicted depth against ``sigma``.

  Args:
    trained: the coarse network (``semdepth_jax.predict.TrainedModel``; any model with a depth head).
    sigma: metres; an image whose predicted-depth ``statistic`` exceeds it goes to the high-range network
      (paper: 5.89 m).
    statistic: ``max`` (paper), ``p95`` or ``median`` of the predicted depth map
      (``semdepth_jax.routing.coarse_depth_rule``).

  Raises:
    RouterError: a non-positive ``sigma``, an unknown ``statistic`` or a model without a depth head.
  """

  kind = "coarse"

  def __init__(self, trained: Any, *, sigma: float = routing.SIGMA_M, statistic: str = "max"):
    if not float(sigma) > 0:
      raise RouterError(f"--router_sigma: expected metres > 0, got {sigma}")
    if statistic not in routing.STATISTICS:
      raise RouterError(
        f"--router_statistic: expected one of {', '.join(routing.STATISTICS)}, got {statistic!r}"
      )
    self.trained = trained
    self.sigma = float(sigma)
    self.statistic = statistic
    self.source = str(trained.workdir)
    inf = trained.inference_model()
    size = inf.input_size

    def fn(variables, images):
      x = resize.image(images.astype(jnp.float32), size)
      preds = inf.at_input_size(variables, x)
      if "depth" not in preds:
        raise RouterError(f"--router coarse:{trained.workdir}: the model has no depth output")
      rule = routing.coarse_depth_rule(preds["depth"], self.sigma, self.statistic)
      is_high = rule.pop("is_high")
      return {"is_low": ~is_high, **rule}

    self._fn = jax.jit(fn)

  def __call__(self, images: jax.Array) -> dict[str, np.ndarray]:
    """Routes (B, H, W, 3) float images in [0, 1].

    Returns:
      ``is_low`` bool (B,) and ``max_depth``, ``p95_depth``, ``median_depth`` float32 (B,) metres.
    """
    return jax.device_get(self._fn(self.trained.variables, images))

  def evidence(self, out: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
    """JSON-able evidence of image ``i``: its predicted-depth statistics, the rule's statistic and threshold."""
    ev = {f"{k}_depth_m": round(float(out[f"{k}_depth"][i]), 4) for k in routing.STATISTICS}
    return {**ev, "statistic": self.statistic, "sigma_m": self.sigma}


def load_router(
  spec: str,
  *,
  top_k: int = routing.TOP_K,
  sigma: float = routing.SIGMA_M,
  statistic: str = "max",
) -> SceneRouter | CoarseRouter:
  """``--router KIND:PATH`` -> a router (module docstring).

  Raises:
    RouterError: a malformed spec or an unusable path (the message names it).
  """
  kind, sep, path = str(spec).partition(":")
  if not sep or kind not in ROUTER_KINDS or not path:
    raise RouterError(
      f"--router: expected KIND:PATH with KIND one of {', '.join(ROUTER_KINDS)} (e.g. "
      f"coarse:runs/router), got {spec!r}"
    )
  if not os.path.isdir(path):
    raise RouterError(f"--router {spec}: {path} is not a directory")
  if kind == "scene":
    return SceneRouter.from_converted(path, top_k=top_k)
  from semdepth_jax import predict

  return CoarseRouter(predict.load_trained(path), sigma=sigma, statistic=statistic)


# ----------------------------------------------------------------------------------------------------------
# The routed system.


class RoutedSystem:
  """Router + low-range and high-range networks (paper 004's two-stage robust SIDE).

  Args:
    router: a :class:`SceneRouter` or :class:`CoarseRouter` (anything with ``__call__(images)`` returning
      ``is_low`` and ``evidence(out, i)``).
    low: the low-range (indoor) network, ``semdepth_jax.predict.TrainedModel``.
    high: the high-range (outdoor) network, ``semdepth_jax.predict.TrainedModel``.
    mode: ``'resize'`` or ``'tile'`` (as ``semdepth predict``).
    tta: ``None`` / ``'none'`` or ``'flip'``.

  Raises:
    RouterError: a network without a depth head, or one that needs ground-truth labels to run.
  """

  def __init__(
    self, router: Any, low: Any, high: Any, *, mode: str = "resize", tta: str | None = None
  ):
    from semdepth_jax import predict

    self.router = router
    self.networks = {routing.LOW: low, routing.HIGH: high}
    self._dense: dict[str, Callable] = {}
    for name, trained in self.networks.items():
      inf = trained.inference_model(mode=mode, tta=tta)
      try:
        predict._check_model_runs(inf, trained.variables)
      except ValueError as e:
        raise RouterError(f"--{name} {trained.workdir}: {e}") from None
      h, w = inf.input_size
      shapes = jax.eval_shape(inf.dense, trained.variables, jnp.zeros((1, h, w, 3), jnp.float32))
      if "depth" not in shapes:
        raise RouterError(f"--{name} {trained.workdir}: the model has no depth output")
      self._dense[name] = jax.jit(inf.dense)

  def route(self, images: jax.Array) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Stage 1 on (B, H, W, 3) float images in [0, 1]: ``(is_low bool (B,), router outputs)``."""
    out = self.router(images)
    return np.asarray(out["is_low"], bool).reshape(-1), out

  def dense(self, network: str, images: jax.Array) -> dict[str, np.ndarray]:
    """Stage 2 with one network: ``depth`` (B, H, W) metres (and ``probs`` if it segments)."""
    trained = self.networks[network]
    return jax.device_get(self._dense[network](trained.variables, images))


def predict_routed(
  system: RoutedSystem,
  images: Sequence[str | os.PathLike],
  out_dir: str | os.PathLike,
  *,
  ply: bool = False,
  intrinsics: Sequence[float] | None = None,
  ply_color: str = "rgb",
  ply_binary: bool = True,
  log: Callable[[str], Any] | None = None,
) -> Any:
  """Routes and predicts image files; writes ``semdepth predict``'s files and ``routing.jsonl``.

  Args:
    system: the :class:`RoutedSystem`.
    images: files and/or folders (as ``semdepth predict``).
    out_dir: output folder.
    ply: also write ``<stem>.ply`` point clouds.
    intrinsics: (fx, fy, cx, cy) in pixels of the input images (default: the chosen network's dataset
      meta, scaled to the image).
    ply_color: ``'rgb'`` or ``'class'``.
    ply_binary: binary (default) or ASCII PLY.
    log: ``print``-like callable for one line per image.

  Returns:
    ``semdepth_jax.predict.PredictResult`` (``step`` is the low-range network's step).
  """
  from semdepth_jax import predict

  if ply and intrinsics is None:
    for name, trained in system.networks.items():
      if trained.meta.intrinsics is None:
        raise ValueError(
          f"--ply needs camera intrinsics: dataset {trained.meta.name!r} of the {name}-range network has "
          "none in its meta info; pass --intrinsics fx,fy,cx,cy (pixels of the input images)"
        )
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  with open(out / ROUTING_FILE, "w", encoding="utf-8") as record:

    def run(path, x):
      is_low, rout = system.route(x)
      decision = routing.LOW if is_low[0] else routing.HIGH
      trained = system.networks[decision]
      evidence = system.router.evidence(rout, 0)
      entry = {
        "image": str(path),
        "decision": decision,
        "model": trained.workdir,
        "router": system.router.kind,
      }
      record.write(json.dumps({**entry, **evidence}) + "\n")
      record.flush()
      ev = ", ".join(f"{k}={v}" for k, v in evidence.items())
      return (
        system.dense(decision, x),
        trained.meta,
        f"; {decision} range ({ev}) -> {trained.workdir}",
      )

    outputs, errors = predict._predict_files(
      run,
      images,
      out,
      ply=ply,
      intrinsics=intrinsics,
      ply_color=ply_color,
      ply_binary=ply_binary,
      log=log,
    )
  outputs = {f: [*written, str(out / ROUTING_FILE)] for f, written in outputs.items()}
  return predict.PredictResult(
    outputs=outputs, errors=errors, step=system.networks[routing.LOW].step
  )


# ----------------------------------------------------------------------------------------------------------
# Routed evaluation.


def parse_datasets(text: str) -> list[tuple[str, str]]:
  """``name:split,name:split`` (split default ``test``) -> ``[(name, split), ...]``.

  Raises:
    RouterError: an empty list or an empty name.
  """
  out = []
  for item in str(text).split(","):
    item = item.strip()
    if not item:
      continue
    name, _, split = item.rpartition(":") if ":" in item else (item, "", "test")
    if not name:
      raise RouterError(f"--datasets: expected NAME[:SPLIT], got {item!r}")
    out.append((name, split or "test"))
  if not out:
    raise RouterError(f"--datasets: expected NAME[:SPLIT][,NAME[:SPLIT]...], got {text!r}")
  return out


def evaluate_routed(
  system: RoutedSystem,
  datasets: Sequence[tuple[str, str]],
  *,
  data_dir: str | None = None,
  batch_size: int = 4,
  max_batches: int = 0,
) -> dict[str, Any]:
  """Router accuracy, indoor / outdoor confusion and per-subset depth metrics (module docstring).

  Args:
    system: the :class:`RoutedSystem`.
    datasets: ``(tfds name, split)`` pairs; the true range of every image is its dataset's ``scene_type``.
    data_dir: TFDS data dir.
    batch_size: images per batch (the split's stored size; padding examples are not counted).
    max_batches: stop each split after this many batches (0 = all).

  Returns:
    ``{'router': {...}, 'accuracy': float, 'confusion': {'labels', 'matrix'}, 'num_examples': int,
    'datasets': {name:split: {'truth', 'accuracy', 'routed_low', 'routed_high', 'protocol',
    'depth': {'routed', 'routed_low', 'routed_high', 'oracle'}}}}``; depth entries are
    ``metrics.ProtocolEvaluator.result()`` dicts (NaN where a subset is empty).

  Raises:
    KeyError: unknown dataset. ValueError: a split the dataset does not have.
  """
  from semdepth_jax.data import pipeline
  from semdepth_jax.data.meta import get_meta

  labels = (routing.LOW, routing.HIGH)
  confusion = np.zeros((2, 2), np.int64)
  per: dict[str, Any] = {}
  for name, split in datasets:
    meta = get_meta(name)
    base = split.split("[", 1)[0]
    if base not in meta.splits:
      raise ValueError(
        f"dataset {meta.name!r} has no split {split!r}; splits: {', '.join(meta.splits)}"
      )
    truth_low = meta.scene_type == "indoor"
    protocol = metrics.dataset_protocol(meta)
    evs = {
      k: metrics.ProtocolEvaluator(protocol)
      for k in ("routed", "routed_low", "routed_high", "oracle")
    }
    counts = np.zeros(2, np.int64)
    iterator = pipeline.make_eval_iterator(
      name, data_dir=data_dir, split=split, batch_size=batch_size
    )
    try:
      for b, batch in enumerate(iterator):
        if max_batches and b >= max_batches:
          break
        mask = np.asarray(batch["mask"], bool)
        x = jnp.asarray(batch["image"], jnp.float32)
        gt = np.asarray(batch["depth"], np.float32)
        is_low, _ = system.route(x)
        d_low = np.asarray(system.dense(routing.LOW, x)["depth"])
        d_high = np.asarray(system.dense(routing.HIGH, x)["depth"])
        routed = np.where(is_low[:, None, None], d_low, d_high)
        evs["routed"].add(routed, gt, mask)
        evs["routed_low"].add(d_low, gt, mask & is_low)
        evs["routed_high"].add(d_high, gt, mask & ~is_low)
        evs["oracle"].add(d_low if truth_low else d_high, gt, mask)
        counts += [int(np.sum(mask & is_low)), int(np.sum(mask & ~is_low))]
    finally:
      close = getattr(iterator, "close", None)
      if callable(close):
        close()
    confusion[0 if truth_low else 1] += counts
    n = int(counts.sum())
    per[f"{name}:{split}"] = {
      "truth": routing.LOW if truth_low else routing.HIGH,
      "scene_type": meta.scene_type,
      "num_examples": n,
      "routed_low": int(counts[0]),
      "routed_high": int(counts[1]),
      "accuracy": float(counts[0 if truth_low else 1] / n) if n else float("nan"),
      "protocol": protocol.name,
      "depth": {k: ev.result() for k, ev in evs.items()},
    }
  total = int(confusion.sum())
  return {
    "router": {
      "kind": system.router.kind,
      "source": system.router.source,
      **(
        {"top_k": system.router.top_k}
        if system.router.kind == "scene"
        else {"sigma_m": system.router.sigma, "statistic": system.router.statistic}
      ),
    },
    "networks": {k: v.workdir for k, v in system.networks.items()},
    "num_examples": total,
    "accuracy": float(np.trace(confusion) / total) if total else float("nan"),
    "confusion": {
      "rows": "truth",
      "columns": "decision",
      "labels": list(labels),
      "matrix": confusion.tolist(),
    },
    "datasets": per,
  }


def format_markdown(report: Mapping[str, Any]) -> str:
  """The routed evaluation report as Markdown tables (router, confusion, depth per dataset and subset)."""
  r = report["router"]
  lines = [
    "# Routed evaluation",
    "",
    f"Router: {r['kind']} ({r['source']}); "
    + ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("kind", "source")),
    f"Networks: low = {report['networks']['low']}, high = {report['networks']['high']}",
    "",
    f"Router accuracy: {report['accuracy']:.4f} over {report['num_examples']} images",
    "",
    "| truth \\ decision | low | high |",
    "|---|---|---|",
  ]
  for label, row in zip(report["confusion"]["labels"], report["confusion"]["matrix"], strict=True):
    lines.append(f"| {label} | {row[0]} | {row[1]} |")
  keys = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1")
  for ds, entry in report["datasets"].items():
    lines += [
      "",
      f"## {ds} (truth: {entry['truth']} range; protocol {entry['protocol']}; "
      f"router accuracy {entry['accuracy']:.4f})",
      "",
      "| subset | images | " + " | ".join(keys) + " |",
      "|---|---|" + "---|" * len(keys),
    ]
    for subset, res in entry["depth"].items():
      vals = " | ".join(
        "-" if res.get(k) is None or not np.isfinite(res.get(k)) else f"{res[k]:.4f}" for k in keys
      )
      lines.append(f"| {subset} | {res.get('num_images', 0)} | {vals} |")
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------
# CLI: ``semdepth predict --router ...`` and ``semdepth evaluate --router ...``.


def add_arguments(p: Any, *, evaluate: bool = False) -> None:
  """Adds the routed-system options to the ``predict`` or ``evaluate`` parser."""
  g = p.add_argument_group(
    "routed system (paper 004)",
    "route each image with --router, then run --low or --high (replaces --workdir)",
  )
  g.add_argument(
    "--router",
    default=None,
    metavar="KIND:PATH",
    help="scene:DIR (converted Places365 ResNet-18) or coarse:WORKDIR (a coarse DS-SIDENet run)",
  )
  g.add_argument(
    "--low", default=None, metavar="WORKDIR", help="low-range (indoor) network's workdir"
  )
  g.add_argument(
    "--high", default=None, metavar="WORKDIR", help="high-range (outdoor) network's workdir"
  )
  g.add_argument(
    "--router_top_k", type=int, default=routing.TOP_K, help="scene router: voting categories (15)"
  )
  g.add_argument(
    "--router_sigma", type=float, default=routing.SIGMA_M, help="coarse router: metres (5.89)"
  )
  g.add_argument(
    "--router_statistic",
    default="max",
    choices=routing.STATISTICS,
    help="coarse router: statistic of the predicted depth compared with sigma (paper: max)",
  )
  if evaluate:
    g.add_argument(
      "--datasets",
      default=None,
      metavar="NAME[:SPLIT],...",
      help="datasets to route (true range = each dataset's indoor/outdoor scene type)",
    )


def load_system(args: Any) -> RoutedSystem:
  """The :class:`RoutedSystem` of parsed ``--router``, ``--low``, ``--high`` arguments.

  Raises:
    RouterError: a missing or unusable argument (the message names it).
    FileNotFoundError: a workdir without config or checkpoint.
  """
  from semdepth_jax import predict

  for other in ("workdir", "exported"):
    if getattr(args, other, None):
      raise RouterError(
        f"--{other} and --router exclude each other (a routed system uses --low and --high)"
      )
  for name in ("low", "high"):
    if not getattr(args, name, None):
      raise RouterError(f"--router needs --{name} WORKDIR (the {name}-range network)")
  router = load_router(
    args.router,
    top_k=args.router_top_k,
    sigma=args.router_sigma,
    statistic=getattr(args, "router_statistic", "max"),
  )
  low, high = predict.load_trained(args.low), predict.load_trained(args.high)
  return RoutedSystem(router, low, high, mode=getattr(args, "mode", "resize"), tta=args.tta)


def _refuse_conv_switches(args: Any) -> None:
  """``--pointwise_conv`` / ``--volume_conv`` (``predict.add_conv_arguments``) are for ``--workdir``."""
  if getattr(args, "pointwise_conv", None) or getattr(args, "volume_conv", None):
    raise RouterError(
      "--pointwise_conv / --volume_conv apply to --workdir; with --router each network uses its own "
      "run's config"
    )


def run_predict(args: Any) -> int:
  """``semdepth predict --router ...``: 0 = all images done, 1 = some failed, 2 = usage error."""
  import sys

  from semdepth_jax import predict
  from semdepth_jax.train.checkpoint import CheckpointDamagedError

  try:
    _refuse_conv_switches(args)
    system = load_system(args)
    intrinsics = predict.parse_intrinsics(args.intrinsics) if args.intrinsics else None
    result = predict_routed(
      system,
      args.images,
      args.out,
      ply=args.ply,
      intrinsics=intrinsics,
      ply_color=args.ply_color,
      ply_binary=not args.ply_ascii,
      log=print,
    )
  except (ValueError, FileNotFoundError, KeyError, CheckpointDamagedError) as e:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    print(f"semdepth predict: error: {msg}", file=sys.stderr)
    return 2
  for msg in result.errors.values():
    print(f"semdepth predict: error: {msg}", file=sys.stderr)
  print(
    f"routed and predicted {len(result.outputs)} image(s) into {args.out} "
    f"({ROUTING_FILE} has each decision); {len(result.errors)} failed"
  )
  return 1 if result.errors else 0


def run_evaluate(args: Any) -> int:
  """``semdepth evaluate --router ...``: 0 on success, 2 on a user error (message on stderr)."""
  import sys

  from semdepth_jax.train.checkpoint import CheckpointDamagedError

  try:
    _refuse_conv_switches(args)
    if not args.datasets:
      raise RouterError("--router needs --datasets NAME[:SPLIT],... (the images to route)")
    datasets = parse_datasets(args.datasets)
    system = load_system(args)
    report = evaluate_routed(
      system,
      datasets,
      data_dir=args.data_dir,
      batch_size=int(args.batch_size or 4),
      max_batches=int(args.max_batches or 0),
    )
  except (ValueError, FileNotFoundError, KeyError, CheckpointDamagedError) as e:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    print(f"semdepth evaluate: error: {msg}", file=sys.stderr)
    return 2
  out = pathlib.Path(
    args.out or os.path.join(system.networks[routing.LOW].workdir, "eval", "routed")
  )
  out.mkdir(parents=True, exist_ok=True)
  text = format_markdown(report)
  (out / "metrics.json").write_text(
    json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8"
  )
  (out / "metrics.md").write_text(text, encoding="utf-8")
  print(text)
  print(f"wrote {out / 'metrics.json'}\nwrote {out / 'metrics.md'}")
  return 0


__all__ = [
  "ROUTER_KINDS",
  "ROUTING_FILE",
  "CoarseRouter",
  "RoutedSystem",
  "RouterError",
  "SceneRouter",
  "add_arguments",
  "evaluate_routed",
  "format_markdown",
  "load_router",
  "parse_datasets",
  "load_system",
  "predict_routed",
  "run_evaluate",
  "run_predict",
]
