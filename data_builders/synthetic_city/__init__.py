"""``synthetic_city``: the embedded default dataset (procedural street scenes, no download).

Import :mod:`data_builders.synthetic_city.synthetic_city_dataset_builder` to register the TFDS builder;
:mod:`data_builders.synthetic_city.render` is the numpy ray caster it uses.
"""
