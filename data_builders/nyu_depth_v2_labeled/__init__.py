"""TFDS builder ``nyu_depth_v2_labeled`` (see ``nyu_depth_v2_labeled_dataset_builder``)."""
