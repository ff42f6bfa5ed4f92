"""What the workers run: decode, preprocess, the ONNX Runtime engine, manifests, taxonomy.

Never imports :mod:`inference.training`. Import the submodules you need
(``inference.serving.engine``...); this file loads nothing.
"""
