"""Test support that ships with the package: the partitioned ONNX backend and random
placement problems."""
