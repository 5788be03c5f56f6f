"""Input and output: reading images and videos, finding what the user pointed at, and files that are never
half-written."""
