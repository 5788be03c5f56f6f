"""Evaluation: metrics with confidence intervals, the decision (positive class, threshold, calibration), scoring a
model on labelled data, and the cross-validated comparison of models."""
