"""Errors of training and evaluation, in the ``inference`` error hierarchy."""

from __future__ import annotations

from inference.serving.errors import InferenceError

__all__ = ["DatasetError", "TrainError"]


class TrainError(InferenceError):
    """Training or evaluation cannot go on (``train.*`` codes); never retriable."""


class DatasetError(TrainError):
    """The data set cannot be read: layout, missing images, unknown classes."""
