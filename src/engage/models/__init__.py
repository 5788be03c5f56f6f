"""Models: the networks by name, test-time views, HOG+SVM, model files and cards, loading any model by name or
file, and ONNX."""
