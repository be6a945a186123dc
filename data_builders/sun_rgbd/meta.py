"""Meta info of ``sun_rgbd`` (37 classes = NYU-40 ids 1..37; configs only pick the depth folder)."""

from semdepth_jax.data.meta import NYU40_CLASS_NAMES, DatasetMeta, generated_palette

METAS = (
  DatasetMeta(
    name="sun_rgbd",
    class_names=NYU40_CLASS_NAMES[:37],
    # The NYU-40 palette's first 37 colours, so a class looks the same as in nyu_depth_v2_labeled.
    class_colors=generated_palette(len(NYU40_CLASS_NAMES), seed_hue=0.1)[:37],
    has_depth=True,
    has_segmentation=True,
    min_depth=1e-3,
    # The toolbox clamps depth at 8 m (read3dPoints.m), so 8.0 marks "8 m or more": excluded by the
    # exclusive evaluation bound.
    max_depth=8.0,
    depth_vis_range=(0.5, 8.0),
    eval_crop=None,
    # Sizes vary by sensor (e.g. kv1 NYU 561 x 427, kv2 730 x 530, realsense 681 x 531, xtion
    # 640 x 480); this is the Kinect v2 size, the largest group.
    native_size=(530, 730),
    intrinsics=None,  # per image, from each folder's intrinsics.txt; stored per example.
    splits=("train", "test"),
    scene_type="indoor",
    depth_note=(
      "depth_bfx/ (default) or depth/ PNG uint16 v: ((v >> 3) | (v << 13)) mod 2^16 / 1000 m, "
      "clamped to 8 m (SUNRGBDtoolbox read3dPoints.m, docs/model_spec.md §9.3); 0 = invalid."
    ),
    citation_key="song2015sunrgbd",
  ),
)
