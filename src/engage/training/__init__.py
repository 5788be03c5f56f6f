"""Training: one loop for every network and task, its augmentation, and cross-validation of a recipe."""
