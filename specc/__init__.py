"""specc: a declarative model-spec compiler (.nnspec -> PyTorch, Triton, ONNX)."""

__version__ = "0.1.0"
