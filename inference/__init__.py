"""Product-image inference: serving apart from training, evaluation and export.

- ``inference.serving``: what the workers run (decode, preprocess, the ONNX
  Runtime engine and its providers, manifest, taxonomy, errors, shipped models);
- ``inference.training``: what runs on a desk (training, evaluation, quantisation,
  the ONNX export);
- ``inference.samples``: shipped sample photos for the demo, benchmarks and tests.

Training may import serving, never the reverse, and nothing here imports Faust,
Kafka or Redis (``tests/unit/inference/test_layering.py``). The ``__init__`` files
load nothing, so ``python -m inference.training.export`` runs without OpenCV.
"""
