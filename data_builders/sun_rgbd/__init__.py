"""TFDS builder ``sun_rgbd`` (see ``sun_rgbd_dataset_builder``)."""
