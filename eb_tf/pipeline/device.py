"""The device that step times belong to: `device_descriptor()` and `has_bf16()`.

Kernel speed on a width depends on the device: the GPU, or the CPU model, the
instruction-set flags its kernels use (AVX-512, AMX, NEON/SVE) and the core count. Step
times measured on one are cached under its descriptor (`eb_tf.pipeline.widths`,
`eb_tf.pipeline.layer_widths`) and never reused on another.

Example:

    from eb_tf.pipeline import device
    device.device_descriptor()   # 'cpu:Intel(R) Xeon(R) Processor [avx2 fma avx512f ...] x2'
    device.has_bf16()            # True on a GPU or a CPU with AVX512-BF16 or AMX-BF16
"""
import os
import platform
from typing import Optional

from eb_tf.compat import tf

__all__ = ["device_descriptor", "has_bf16"]

_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
          "amx_bf16", "amx_int8", "asimd", "sve")


def device_descriptor() -> str:
    """The device the step times belong to: the GPU's name, or the CPU model, the
    instruction-set flags that matter for its kernels, and the core count."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"gpu:{details.get('device_name', gpus[0].name)} x{len(gpus)}"
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return f"cpu:{model} [{' '.join(f for f in _FLAGS if f in flags)}] x{os.cpu_count()}"


def has_bf16(device: Optional[str] = None) -> bool:
    """Whether the device has fast bfloat16 units: a GPU, or a CPU with AVX512-BF16/AMX."""
    device = device or device_descriptor()
    tokens = set(device.replace("[", " ").replace("]", " ").split())
    return device.startswith("gpu:") or bool(tokens & {"avx512_bf16", "amx_bf16"})
