"""Inference: the Predictor (images, videos, cameras), face tracking and smoothing, result records, drawings,
and `engage predict` as a job."""
