"""Step 1 of the method: find faces (detect) and cut them as a model expects (crop)."""
