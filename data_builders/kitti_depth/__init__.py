"""TFDS builder ``kitti_depth`` (see ``kitti_depth_dataset_builder``)."""
