"""Image decoding and validation, preprocessing, the ONNX Runtime engine and model manifests.

Usable on its own (a notebook, a batch job, another server): it depends on numpy,
OpenCV and ONNX Runtime only, never on Faust, Kafka or Redis. Import the
submodules you need (``inference.engine``, ``inference.decode``...); importing the
package itself loads nothing heavy, so ``python -m inference.export`` also runs in
an environment that has PyTorch but not OpenCV.
"""
