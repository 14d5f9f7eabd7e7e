"""The model zoo: PyTorch builders exported to ONNX, gpt-large, synthetic graphs (see zoo.py)."""
