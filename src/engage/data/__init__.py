"""Data sets: readers for the forms users have, the face dataset file, pre-processing, subject splits, and the
bundled sample photos."""
