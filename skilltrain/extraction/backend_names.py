"""Names and defaults of the extraction backends, importable without torch (for CLI help and argument parsing).

The defaults were chosen by ``benchmarks/bench_extract.py`` on unique sentences
(BENCHMARKS.md "Extraction"): the fastest backend whose RP@5 on TECH and HOUSE
stays within 0.3 points of ``torch-fp32`` (tests/test_extract_backends.py).
"""

#: int8 dynamic quantisation (ONNX Runtime) was measured and left out: it lost 0.8-1.1 RP@5 on HOUSE
BACKENDS = ("torch-fp32", "torch-bf16", "torch-fp16", "onnx-fp32")
DEFAULT_CPU_BACKEND = "onnx-fp32"
DEFAULT_GPU_BACKEND = "torch-fp32"  # fastest on an H200 (BENCHMARKS.md "Extraction"): half precision bought nothing
DEFAULT_CPU_BATCH = 32
DEFAULT_GPU_BATCH = 512
