"""Visualisation: colourised depth and labels, overlays, colour bars, legends, figures, image summaries.

Figures are PNGs via matplotlib Agg (example grids for ``semdepth data show``, prediction figures for
``semdepth predict``); TensorBoard image summaries go through ``tensorboardX``.

Colourisation functions are plain numpy (usable for TensorBoard image summaries and overlays); figure
functions build ``matplotlib.figure.Figure`` objects directly with the Agg canvas, never through
``pyplot``, so no GUI backend or global figure state is involved and nothing leaks between calls.

Depth is always shown with a *fixed* metric range (a dataset's ``DatasetMeta.depth_vis_range``), never
rescaled per frame, so colours mean the same distance in every image; invalid depth (``0``, negative or
non-finite) is drawn in ``INVALID_COLOR``. Class palettes and names come from
``semdepth_jax.data.meta``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from semdepth_jax.data.meta import IGNORE_INDEX, DatasetMeta

INVALID_COLOR = (0, 0, 0)
"""RGB of invalid depth pixels."""
IGNORE_COLOR = (0, 0, 0)
"""RGB of ignored (``ignore_index``) label pixels."""
DEFAULT_DEPTH_CMAP = "turbo"
"""Colour map for depth: its ends are dark blue / dark red, never black, so invalid pixels stand out."""

ROW_HEIGHT_IN = 2.0
"""Height of one example row of ``example_grid`` in inches (the PNG is ``n * ROW_HEIGHT_IN * dpi`` tall)."""
LEGEND_ROWS = 10
"""Legend entries per legend column in ``example_grid``."""
LEGEND_COLUMNS = 3
"""At most this many legend columns per row in ``example_grid`` (further classes are counted as "+k more")."""


def _cmap(name: str):
  import matplotlib

  return matplotlib.colormaps[name]


def colourise_depth(
  depth_m: np.ndarray,
  vmin: float,
  vmax: float,
  cmap: str = DEFAULT_DEPTH_CMAP,
  invalid_color: tuple[int, int, int] = INVALID_COLOR,
) -> np.ndarray:
  """Maps metric depth to RGB with a fixed range.

  ``t = clip((d - vmin) / (vmax - vmin), 0, 1)`` indexes the colour map (``vmin`` -> first colour);
  depths outside the range saturate at the ends. Pixels with ``d <= 0`` or non-finite ``d`` get
  ``invalid_color``.

  Args:
    depth_m: (H, W) or (H, W, 1) depth in metres.
    vmin: near end of the range in metres (e.g. ``meta.depth_vis_range[0]``).
    vmax: far end in metres, > vmin.
    cmap: matplotlib colour map name.
    invalid_color: RGB of invalid pixels.

  Returns:
    uint8 (H, W, 3).

  Raises:
    ValueError: ``vmax <= vmin`` or depth is not 2-D.
  """
  if not vmax > vmin:
    raise ValueError(f"depth range must have vmax > vmin, got ({vmin}, {vmax})")
  d = np.asarray(depth_m, np.float32)
  if d.ndim == 3 and d.shape[-1] == 1:
    d = d[..., 0]
  if d.ndim != 2:
    raise ValueError(f"depth must be (H, W) or (H, W, 1), got {d.shape}")
  valid = np.isfinite(d) & (d > 0)
  t = np.clip((np.where(valid, d, vmin) - vmin) / (vmax - vmin), 0.0, 1.0)
  lut = (
    (np.asarray(_cmap(cmap)(np.linspace(0.0, 1.0, 256)))[:, :3] * 255.0).round().astype(np.uint8)
  )
  rgb = lut[np.rint(t * 255.0).astype(np.int64)]
  rgb[~valid] = np.asarray(invalid_color, np.uint8)
  return rgb


def colourise_labels(
  labels: np.ndarray,
  colors: Sequence[Sequence[int]],
  ignore_index: int = IGNORE_INDEX,
  ignore_color: tuple[int, int, int] = IGNORE_COLOR,
) -> np.ndarray:
  """Maps training ids to their palette colours.

  Args:
    labels: (H, W) or (H, W, 1) integer ids in ``[0, len(colors))`` or ``ignore_index``.
    colors: one (r, g, b) uint8 triple per class (``DatasetMeta.class_colors``).
    ignore_index: id drawn in ``ignore_color``.
    ignore_color: RGB of ignored pixels.

  Returns:
    uint8 (H, W, 3).

  Raises:
    ValueError: an id outside the palette that is not ``ignore_index`` (lists the ids).
  """
  lab = np.asarray(labels)
  if lab.ndim == 3 and lab.shape[-1] == 1:
    lab = lab[..., 0]
  lab = lab.astype(np.int64)
  palette = np.asarray(colors, np.uint8).reshape(-1, 3)
  ignored = lab == ignore_index
  bad = ~ignored & ((lab < 0) | (lab >= len(palette)))
  if bad.any():
    ids = np.unique(lab[bad]).tolist()
    raise ValueError(
      f"label ids {ids[:10]} are outside the palette of {len(palette)} classes "
      f"(ignore_index = {ignore_index})"
    )
  rgb = palette[np.where(ignored, 0, lab)] if len(palette) else np.zeros(lab.shape + (3,), np.uint8)
  rgb[ignored] = np.asarray(ignore_color, np.uint8)
  return rgb


def classes_present(labels: np.ndarray, ignore_index: int = IGNORE_INDEX) -> list[int]:
  """Class ids occurring in ``labels`` (``ignore_index`` excluded), most frequent first."""
  lab = np.asarray(labels).reshape(-1).astype(np.int64)
  lab = lab[lab != ignore_index]
  if lab.size == 0:
    return []
  ids, counts = np.unique(lab, return_counts=True)
  order = np.lexsort((ids, -counts))
  return [int(i) for i in ids[order]]


def legend_handles(
  class_ids: Sequence[int],
  class_names: Sequence[str],
  class_colors: Sequence[Sequence[int]],
) -> list:
  """``matplotlib.patches.Patch`` handles (colour + ``"id name"``) for ``ax.legend(handles=...)``."""
  from matplotlib.patches import Patch

  return [
    Patch(
      facecolor=np.asarray(class_colors[i], np.float64) / 255.0,
      edgecolor="black",
      linewidth=0.3,
      label=f"{i} {class_names[i]}",
    )
    for i in class_ids
  ]


def new_figure(width_in: float, height_in: float, dpi: int = 100):
  """A ``matplotlib.figure.Figure`` with an Agg canvas (no pyplot state)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(width_in, height_in), dpi=dpi)
  FigureCanvasAgg(fig)
  return fig


def save_figure(fig, path: str | os.PathLike) -> str:
  """Writes ``fig`` as PNG at its own size and dpi (no tight cropping) and releases it.

  Returns:
    The path written.
  """
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  fig.savefig(path, format="png", dpi=fig.dpi)
  fig.clear()
  return path


def depth_colorbar(fig, ax, vmin: float, vmax: float, cmap: str = DEFAULT_DEPTH_CMAP):
  """Draws a vertical colour bar for depth in metres into axes ``ax`` (label ``depth [m]``)."""
  from matplotlib.cm import ScalarMappable
  from matplotlib.colors import Normalize

  mappable = ScalarMappable(norm=Normalize(vmin=vmin, vmax=vmax), cmap=_cmap(cmap))
  cbar = fig.colorbar(mappable, cax=ax)
  cbar.set_label("depth [m]", fontsize=7)
  cbar.ax.tick_params(labelsize=6)
  return cbar


def _as_uint8_rgb(image: np.ndarray) -> np.ndarray:
  img = np.asarray(image)
  if img.dtype != np.uint8:
    img = (np.clip(img.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
  return img


def _text_panel(ax, text: str, shape) -> None:
  ax.set_box_aspect(shape[0] / shape[1])  # same box as an image panel of this example
  ax.set_facecolor((0.85, 0.85, 0.85))
  ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, transform=ax.transAxes)
  ax.set_xticks([])
  ax.set_yticks([])


def example_grid(
  examples: Sequence[Mapping[str, Any]],
  *,
  class_names: Sequence[str],
  class_colors: Sequence[Sequence[int]],
  depth_range: tuple[float, float],
  ignore_index: int = IGNORE_INDEX,
  cmap: str = DEFAULT_DEPTH_CMAP,
  titles: Sequence[str] | None = None,
  column_titles: Sequence[str] | None = None,
  dpi: int = 100,
):
  """One row per example: RGB | colourised depth + colour bar in metres | labels + legend.

  The legend lists the classes present in that example's labels (most frequent first, at most
  ``LEGEND_COLUMNS * LEGEND_ROWS`` entries). Examples without depth/labels (``has_depth`` / ``has_segmentation`` False)
  show a grey "no depth" / "no labels" panel. The figure is ``len(examples) * ROW_HEIGHT_IN`` inches tall;
  panel widths follow the first image's aspect ratio.

  Args:
    examples: dicts with ``image`` (H, W, 3) uint8 or float [0, 1], ``depth`` (H, W) metres,
      ``segmentation`` (H, W) or (H, W, 1) ids, optional flags and ``file_name``.
    class_names: names of the training ids.
    class_colors: RGB per training id.
    depth_range: fixed (near, far) metres of the depth colours.
    ignore_index: label id drawn black and left out of legends.
    cmap: depth colour map.
    titles: per-row titles (default: ``file_name``).
    column_titles: titles of the RGB, depth and label columns (default: "RGB", "depth (fixed a-b m,
      black = invalid)", "labels (black = ignore)").
    dpi: figure resolution.

  Returns:
    ``matplotlib.figure.Figure`` (save with ``save_figure``).

  Raises:
    ValueError: no examples.
  """
  n = len(examples)
  if n == 0:
    raise ValueError("example_grid needs at least one example")
  h0, w0 = np.shape(examples[0]["image"])[:2]
  panel_w = ROW_HEIGHT_IN * w0 / h0
  presents = [
    classes_present(ex["segmentation"], ignore_index)
    if bool(ex.get("has_segmentation", True)) and "segmentation" in ex
    else []
    for ex in examples
  ]
  # Legend column width from its longest entry (~0.05 in per character at 6 pt, plus the swatch).
  legend_w = 1.0
  for present in presents:
    shown = present[: LEGEND_COLUMNS * LEGEND_ROWS]
    if shown:
      chars = max(len(f"{i} {class_names[i]}") for i in shown)
      legend_w = max(legend_w, math.ceil(len(shown) / LEGEND_ROWS) * (0.3 + 0.05 * chars))
  cbar_w = 0.12
  # RGB, depth, colour bar (+ its tick labels), labels, legend.
  widths = [panel_w, panel_w, cbar_w, 0.4, panel_w, legend_w]
  fig = new_figure(sum(widths) + 0.2, n * ROW_HEIGHT_IN, dpi=dpi)
  grid = fig.add_gridspec(
    n, len(widths), width_ratios=widths, left=0.01, right=0.99, top=1 - 0.25 / n / ROW_HEIGHT_IN * 1.2,
    bottom=0.02 / n, wspace=0.04, hspace=0.18,
  )  # fmt: skip
  vmin, vmax = depth_range
  if column_titles is None:
    column_titles = (
      "RGB",
      f"depth (fixed {vmin:g}-{vmax:g} m, black = invalid)",
      "labels (black = ignore)",
    )
  for r, ex in enumerate(examples):
    title = titles[r] if titles is not None else _name(ex)
    ax = fig.add_subplot(grid[r, 0])
    ax.imshow(_as_uint8_rgb(ex["image"]), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel(title, fontsize=7)
    if r == 0:
      ax.set_title(column_titles[0], fontsize=8)

    ax = fig.add_subplot(grid[r, 1])
    if bool(ex.get("has_depth", True)) and "depth" in ex:
      ax.imshow(colourise_depth(ex["depth"], vmin, vmax, cmap), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      depth_colorbar(fig, fig.add_subplot(grid[r, 2]), vmin, vmax, cmap)
    else:
      _text_panel(ax, "no depth", np.shape(ex["image"]))
    if r == 0:
      ax.set_title(column_titles[1], fontsize=8)

    ax = fig.add_subplot(grid[r, 4])
    leg_ax = fig.add_subplot(grid[r, 5])
    leg_ax.axis("off")
    if bool(ex.get("has_segmentation", True)) and "segmentation" in ex:
      seg = ex["segmentation"]
      ax.imshow(colourise_labels(seg, class_colors, ignore_index), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      present = presents[r]
      shown = present[: LEGEND_COLUMNS * LEGEND_ROWS]
      if shown:
        handles = legend_handles(shown, class_names, class_colors)
        extra = len(present) - len(shown)
        leg_ax.legend(
          handles=handles,
          loc="center left",
          fontsize=6,
          ncol=math.ceil(len(shown) / LEGEND_ROWS),
          frameon=False,
          handlelength=1.0,
          columnspacing=0.6,
          borderaxespad=0.0,
          title=f"+{extra} more" if extra else None,
          title_fontsize=6,
        )
    else:
      _text_panel(ax, "no labels", np.shape(ex["image"]))
    if r == 0:
      ax.set_title(column_titles[2], fontsize=8)
  return fig


def dataset_grid(
  examples: Sequence[Mapping[str, Any]], meta: DatasetMeta, *, dpi: int = 100, **kwargs
):
  """``example_grid`` with the palette, class names, ignore index and depth range of ``meta``."""
  return example_grid(
    examples,
    class_names=meta.class_names,
    class_colors=meta.class_colors,
    depth_range=meta.depth_vis_range,
    ignore_index=meta.ignore_index,
    dpi=dpi,
    **kwargs,
  )


def dataset_legend(meta: DatasetMeta, class_ids: Sequence[int] | None = None) -> list:
  """Legend handles (``legend_handles``) of ``meta``'s classes ``class_ids`` (default: all classes)."""
  ids = range(meta.num_classes) if class_ids is None else class_ids
  return legend_handles(list(ids), meta.class_names, meta.class_colors)


def overlay_labels(
  image: np.ndarray,
  labels: np.ndarray,
  colors: Sequence[Sequence[int]],
  *,
  alpha: float = 0.5,
  ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
  """Blends class colours over an RGB image: ``(1 - alpha) * rgb + alpha * colour``, rounded.

  Args:
    image: (H, W, 3) uint8, or float in [0, 1].
    labels: (H, W) or (H, W, 1) class ids; ``ignore_index`` pixels keep the image unchanged.
    colors: RGB per class id (``DatasetMeta.class_colors``).
    alpha: colour weight in [0, 1].
    ignore_index: id left uncoloured.

  Returns:
    uint8 (H, W, 3).

  Raises:
    ValueError: ids outside the palette (see ``colourise_labels``), or sizes that differ.
  """
  img = _as_uint8_rgb(image)
  lab = np.asarray(labels)
  if lab.ndim == 3 and lab.shape[-1] == 1:
    lab = lab[..., 0]
  if lab.shape != img.shape[:2]:
    raise ValueError(f"labels {lab.shape} and image {img.shape[:2]} must have the same (H, W)")
  col = colourise_labels(lab, colors, ignore_index).astype(np.float32)
  blend = (1.0 - alpha) * img.astype(np.float32) + alpha * col
  out = np.where((lab == ignore_index)[..., None], img.astype(np.float32), blend)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def depth_colorbar_image(
  depth_m: np.ndarray,
  vmin: float,
  vmax: float,
  cmap: str = DEFAULT_DEPTH_CMAP,
  *,
  min_height: int = 160,
  dpi: int = 100,
) -> np.ndarray:
  """Colourised depth with a vertical colour bar in metres on its right (one uint8 image).

  The depth is drawn with ``colourise_depth`` at the fixed range (invalid pixels black). Images lower than
  ``min_height`` pixels are enlarged by the smallest integer factor ``k`` that reaches it (nearest
  neighbour: every depth pixel becomes a k x k block) so the bar's labels stay legible; larger images are
  kept at 1:1.

  Args:
    depth_m: (H, W) depth in metres.
    vmin: near end of the fixed range, metres.
    vmax: far end, metres (> vmin).
    cmap: colour map.
    min_height: see above.
    dpi: resolution of the bar's text for images up to 300 px tall; taller images scale it with their
      height.

  Returns:
    uint8 (k H, k W + bar width, 3); the left (k H, k W) block is the colourised depth.
  """
  rgb = colourise_depth(depth_m, vmin, vmax, cmap)
  k = max(1, math.ceil(min_height / rgb.shape[0]))
  if k > 1:
    rgb = np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)
  H = rgb.shape[0]
  # Text grows with tall images (dpi proportional to the height beyond 300 px), so the bar stays in scale.
  dpi = dpi * max(1.0, H / 300.0)
  bar_w = int(round(0.72 * dpi))
  fig = new_figure(bar_w / dpi, H / dpi, dpi=dpi)
  margin = min(0.1, 0.1 * dpi / H)  # room for half a tick label above and below the bar
  depth_colorbar(fig, fig.add_axes((0.06, margin, 0.2, 1.0 - 2 * margin)), vmin, vmax, cmap)
  fig.canvas.draw()
  bar = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
  fig.clear()
  return np.concatenate([rgb, bar[:H]], axis=1)


def prediction_figure(
  image: np.ndarray,
  meta: DatasetMeta,
  *,
  depth: np.ndarray | None = None,
  labels: np.ndarray | None = None,
  title: str = "",
  dpi: int = 100,
):
  """Side-by-side figure of one prediction: RGB | depth + colour bar | labels + legend.

  ``example_grid`` with one row, the palette, class names and fixed depth range of ``meta``; a missing
  head (``None``) shows a grey "no depth" / "no labels" panel.

  Args:
    image: (H, W, 3) uint8 or float in [0, 1].
    meta: dataset meta info.
    depth: (H, W) predicted depth in metres, or None.
    labels: (H, W) predicted class ids, or None.
    title: row title (e.g. the file stem).
    dpi: figure resolution (the row is ``ROW_HEIGHT_IN`` inches tall).

  Returns:
    ``matplotlib.figure.Figure`` (save with ``save_figure``).
  """
  ex: dict[str, Any] = {"image": image, "has_depth": depth is not None}
  ex["has_segmentation"] = labels is not None
  if depth is not None:
    ex["depth"] = depth
  if labels is not None:
    ex["segmentation"] = labels
  vmin, vmax = meta.depth_vis_range
  return dataset_grid(
    [ex],
    meta,
    dpi=dpi,
    titles=[title],
    column_titles=("input", f"predicted depth (fixed {vmin:g}-{vmax:g} m)", "predicted labels"),
  )


# ----------------------------------------------------------------------------------------------------------
# TensorBoard image summaries.

SUMMARY_GAP = 2
"""White pixels between the panels of a summary image."""


def _to_numpy(x) -> np.ndarray:
  import jax

  return np.asarray(jax.device_get(x))


def summary_images(
  batch: Mapping[str, Any],
  outputs: Mapping[str, Any],
  meta: DatasetMeta,
  *,
  max_images: int = 3,
  cmap: str = DEFAULT_DEPTH_CMAP,
) -> dict[str, np.ndarray]:
  """Images for TensorBoard: per example, RGB | GT depth | predicted depth | GT labels | predicted labels.

  Predictions are brought to the batch's image size (depth bilinear, labels = argmax of ``seg_logits``,
  nearest) and depth is drawn with ``meta.depth_vis_range`` (fixed, so colours compare across steps).
  Panels of heads the model lacks (or examples without depth / labels) are left out or grey.

  Args:
    batch: batch dict (numpy or jax): ``image`` (B, H, W, 3) in [0, 1], optional ``depth`` (B, H, W)
      metres, ``segmentation`` (B, H, W), ``has_depth``, ``has_segmentation``, ``mask`` (False rows are
      skipped).
    outputs: decoded predictions (``predict.InferenceModel.apply`` or a model's ``decode``): ``depth``
      (B, h, w[, 1]) metres and/or ``seg_logits`` / ``seg_probs`` (B, h, w, C) class scores.
    meta: dataset meta info (palette, ignore index, depth range).
    max_images: at most this many examples.
    cmap: depth colour map.

  Returns:
    ``{"examples/<i>": uint8 (H, W_total, 3)}`` for ``add_image(..., dataformats="HWC")``.
  """
  from semdepth_jax import metrics

  image = _to_numpy(batch["image"])
  B, H, W = image.shape[:3]
  mask = _to_numpy(batch["mask"]) if "mask" in batch else np.ones(B, bool)
  has_d = _to_numpy(batch["has_depth"]) if "has_depth" in batch else np.ones(B, bool)
  has_s = _to_numpy(batch["has_segmentation"]) if "has_segmentation" in batch else np.ones(B, bool)
  pred_d = pred_l = None
  if "depth" in outputs:
    d = _to_numpy(outputs["depth"]).astype(np.float32)
    d = d[..., 0] if d.ndim == 4 else d
    pred_d = metrics.resize_prediction(d, (H, W), method="bilinear")
  scores = outputs.get("seg_logits", outputs.get("seg_probs"))
  if scores is not None:
    lab = np.argmax(_to_numpy(scores), axis=-1)
    pred_l = metrics.resize_prediction(lab, (H, W), method="nearest")
  vmin, vmax = meta.depth_vis_range
  grey = np.full((H, W, 3), 128, np.uint8)
  gap = np.full((H, SUMMARY_GAP, 3), 255, np.uint8)
  out = {}
  for i in [i for i in range(B) if mask[i]][:max_images]:
    panels = [_as_uint8_rgb(image[i])]
    if "depth" in batch:
      gt = _to_numpy(batch["depth"][i])
      panels.append(colourise_depth(gt, vmin, vmax, cmap) if has_d[i] else grey)
    if pred_d is not None:
      panels.append(colourise_depth(pred_d[i], vmin, vmax, cmap))
    if "segmentation" in batch:
      gt = _to_numpy(batch["segmentation"][i])
      ok = has_s[i]
      panels.append(colourise_labels(gt, meta.class_colors, meta.ignore_index) if ok else grey)
    if pred_l is not None:
      panels.append(colourise_labels(pred_l[i], meta.class_colors, meta.ignore_index))
    row = []
    for p in panels:
      row += [p, gap]
    out[f"examples/{i}"] = np.concatenate(row[:-1], axis=1)
  return out


def write_image_summaries(
  writer, step: int, images: Mapping[str, np.ndarray], prefix: str = ""
) -> None:
  """Writes ``images`` (from ``summary_images``) with ``writer.add_image(tag, img, step, dataformats='HWC')``.

  Args:
    writer: a ``tensorboardX.SummaryWriter`` (or anything with that ``add_image``); None = no-op.
    step: global step.
    images: tag -> uint8 (H, W, 3).
    prefix: prepended to every tag (e.g. ``"eval/"``).
  """
  if writer is None:
    return
  for tag, img in images.items():
    writer.add_image(prefix + tag, np.asarray(img, np.uint8), int(step), dataformats="HWC")


def _name(example: Mapping[str, Any]) -> str:
  name = example.get("file_name", "")
  return name.decode("utf-8") if isinstance(name, bytes) else str(name)
