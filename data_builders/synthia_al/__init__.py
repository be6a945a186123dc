"""TFDS builder ``synthia_al`` (see ``synthia_al_dataset_builder``)."""
