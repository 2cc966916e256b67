"""How close to the hardware's limit a run trains: model FLOPs per step, the device's peak, utilisation.

Model FLOP utilisation (MFU, as in the PaLM paper, Chowdhery et al. 2022) is the FLOPs
the model's math needs per second over the device's peak; recomputation does not count
as useful work, so GradCache's extra no-graph forward is left out on purpose. Per text of
``n`` real tokens an encoder with ``P`` non-embedding parameters, ``l`` layers and width
``d`` needs ``2 P n + 4 l d n^2`` FLOPs forward (matmuls and attention scores/values) and
twice that backward. The peak is the GPU's dense figure for its dtype where we know the
chip, else (CPU, unknown GPU) a matmul rate measured on this machine with the worker's
threads, so "utilisation" on a CPU means "of what torch's GEMM reaches here".
"""

from __future__ import annotations

import time

import torch

from skilltrain.training.gradcache import TokenGroup

#: dense bf16/fp16 tensor-core TFLOP/s by device-name fragment (vendor data sheets, SXM parts)
GPU_PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "V100": 125.0}


def model_shape(transformer: torch.nn.Module) -> tuple[int, int, int]:
    """(non-embedding parameters, layers, hidden width) of a Hugging Face encoder."""
    params = sum(p.numel() for name, p in transformer.named_parameters() if "embeddings" not in name)
    config = transformer.config
    return params, int(config.num_hidden_layers), int(config.hidden_size)


def train_flops(shape: tuple[int, int, int], groups: list[TokenGroup]) -> float:
    """Forward + backward model FLOPs of encoding ``groups`` (real tokens only, padding excluded)."""
    params, layers, width = shape
    lengths = torch.cat([g.attention_mask.sum(1) for g in groups]).double()
    forward = 2 * params * lengths.sum() + 4 * layers * width * (lengths**2).sum()
    return 3.0 * float(forward)


def measured_matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 1024, seconds: float = 0.3) -> float:
    """FLOP/s of square ``size`` matmuls on ``device`` with the current torch threads (best of a short run)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == 0.0:
        t0 = time.perf_counter()
        (a @ b).sum().item()  # .item(): wait for the GPU
        best = max(best, 2 * size**3 / (time.perf_counter() - t0))
    return best


def peak_flops(device: torch.device, bf16: bool) -> tuple[float, str]:
    """(FLOP/s, where the figure comes from) for this device and compute dtype."""
    if device.type == "cuda" and bf16:
        name = torch.cuda.get_device_name(device)
        for fragment, tflops in GPU_PEAK_BF16_TFLOPS.items():
            if fragment in name:
                return tflops * 1e12, f"{name} bf16 dense peak"
    dtype = torch.bfloat16 if device.type == "cuda" and bf16 else torch.float32
    size = 4096 if device.type == "cuda" else 1024
    return measured_matmul_flops(device, dtype, size), f"measured {str(dtype).split('.')[-1]} matmul on {device.type} ({torch.get_num_threads()} threads)"
