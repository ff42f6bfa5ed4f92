"""Transfer learning, evaluation and export: labelled photos in, a servable model directory out.

``trainer.train(TrainConfig(data=..., out=...))`` loads a class-per-folder tree
or a Grocery Store list file (``dataset``), extracts (cached) backbone features
of the serving view and of augmented views (``features``), trains a
classification head in numpy (``head``; optionally fine-tunes the backbone's
last blocks, ``torch_finetune``), and writes one ONNX model (backbone + head)
with its manifest (``compose``, ``package``). ``evaluate`` scores a model
directory through the serving engine, with the metrics of ``metrics``, which
training uses too. ``export`` exports the shipped ImageNet model (needs torch).

May import :mod:`inference.serving`, never the reverse. This file loads nothing,
so ``python -m inference.training.export`` needs neither OpenCV nor the trainer.
"""
