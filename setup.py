"""Packaging for semdepth_jax (distribution ``semdepth-jax``)."""

import pathlib

import setuptools

_HERE = pathlib.Path(__file__).parent

setuptools.setup(
  name="semdepth-jax",
  version="0.1.0",
  description=(
    "Joint monocular depth estimation and semantic segmentation in JAX/Flax: "
    "SSegDep-Net, HybridNet, DeepLab-SID, Semantic-MD and DS-SIDENet in one codebase."
  ),
  long_description=(_HERE / "README.md").read_text(encoding="utf-8"),
  long_description_content_type="text/markdown",
  python_requires=">=3.11",
  packages=setuptools.find_packages(
    include=["semdepth_jax", "semdepth_jax.*", "data_builders", "data_builders.*", "configs"]
  ),
  package_data={
    "data_builders": ["*/README.md", "*/CITATIONS.bib", "*/TAGS.txt", "*/*.json"],
    # Places365 indoor/outdoor labels (MIT licence, CSAILVision/places365), paper 004's router.
    "semdepth_jax": ["resources/places365/*"],
  },
  install_requires=[
    # JAX-stack releases change APIs often: cap at the next minor series we have not tested.
    "jax>=0.10.2,<0.12",
    "flax>=0.12.8,<0.14",
    "optax>=0.2.8,<0.4",
    "orbax-checkpoint>=0.12.8,<0.14",
    "tensorflow-datasets>=4.9.10,<5",
    "grain>=0.2.18,<0.4",
    "array-record>=0.8.6",
    "ml-collections>=1.1.0",
    "numpy>=2.0,<3",
    "pillow>=10.0",
    "h5py>=3.10",
    # Pretrained weights without torch (semdepth convert-weights).
    "safetensors>=0.4",
    "scipy>=1.11",
    "tqdm>=4.66",
    "matplotlib>=3.8",
    # TensorBoard event files without TensorFlow.
    "tensorboardX>=2.6.2",
    # tfds needs these for package-folder builders and its testing utilities.
    "importlib_resources>=6.0",
    "dill>=0.3.8",
    # jax.export's serialisation of StableHLO artifacts (semdepth export).
    "flatbuffers>=24.3",
  ],
  extras_require={
    "dev": [
      "pytest>=8.0",
      "pytest-xdist>=3.5",
      "ruff>=0.6",
      "hypothesis>=6.100",
      "nbclient>=0.10",
      "nbformat>=5.10",
      "ipykernel>=6.29",
    ],
    "tf": ["tensorflow-cpu>=2.16"],
    # semdepth export --format onnx and predict --exported on .onnx files. jax2onnx 0.16-0.17 pin
    # orbax-checkpoint < 0.11.37 (below ours) although converting does not use it; pip then picks
    # jax2onnx 0.13.0, the newest without that pin, which converts with jax 0.10 (README "Export").
    "export": ["jax2onnx>=0.13", "onnx>=1.17", "onnxruntime>=1.20"],
    # Reference implementations for the parity tests and weight conversion from .pth files (CPU use).
    # These pins are the releases whose wheels CI machines hold locally (no multi-GB download).
    # segmentation-models-pytorch: paper 003's reference U-Net / DeepLabV3 (tests/parity); it installs
    # beside the pinned torch without replacing it.
    "parity": [
      "torch==2.14.1",
      "torchvision==0.29.1",
      "timm>=1.0",
      "segmentation-models-pytorch>=0.5",
    ],
  },
  entry_points={"console_scripts": ["semdepth=semdepth_jax.main:main"]},
)
