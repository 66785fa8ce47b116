"""Running a saved model: on ONNX Runtime without torch, or on PyTorch (``runners``); ONNX Runtime sessions and
threads (``ort``); the ONNX export (``export``, needs torch)."""
