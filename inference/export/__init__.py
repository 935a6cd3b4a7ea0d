"""Export: a trained run to the served ONNX artefacts (quantization, parity, vocabulary trim)."""
