"""Product-image inference: serving apart from training, evaluation and export.

Layout:

``inference.serving``
    What the workers run: image decoding and validation (``decode``),
    preprocessing (``preprocess``), the ONNX Runtime engine (``engine``) and
    its execution providers (``providers``), the model manifest
    (``manifest``), label/category mapping (``taxonomy``), the error hierarchy
    (``errors``), the serving benchmark (``bench``), and the package data:
    shipped models (``models/``) and taxonomy files (``data/``).
``inference.training``
    What runs on a desk: transfer learning (``trainer`` and its pieces),
    dataset loading (``dataset``), metrics (``metrics``), evaluation reports
    (``evaluate``) and the ONNX export of the shipped model (``export``).
``inference.samples``
    Shipped sample photos, used by the demo, the benchmark and the tests.

Training may import serving, never the reverse (``tests/unit/inference/
test_layering.py`` holds it). The whole package depends on numpy, OpenCV and
ONNX Runtime only, never on Faust, Kafka or Redis. Import the submodules you
need (``inference.serving.engine``...); the package ``__init__`` files load
nothing, so ``python -m inference.training.export`` also runs in an environment
that has PyTorch but not OpenCV.
"""
