"""moodwire inference: tokenization, model runners, training, export and benchmarks.

Serving code (``runner``, ``tokenization``, ``artifacts``, ``contract``) needs only
numpy, tokenizers and onnxruntime; training and export import torch lazily.
"""
