"""TFDS builder ``synthia_rand_cityscapes`` (see ``synthia_rand_cityscapes_dataset_builder``)."""
