"""The dense bf16 peak of a device, by the device_kind jax reports."""
import pytest

from vit_jax.utilization import bf16_peak_tflops


@pytest.mark.parametrize('kind, tflops', [
    ('TPU v2', 23.0), ('TPU v3', 61.5),          # two devices a chip: half its peak
    ('TPU v4', 275.0), ('TPU v5', 459.0), ('TPU v5p', 459.0), ('TPU v5 lite', 197.0),
    ('TPU v5e', 197.0), ('TPU v6 lite', 918.0),
    ('NVIDIA H100 80GB HBM3', 989.0), ('NVIDIA H100 PCIe', 756.0), ('NVIDIA H100 NVL', 835.0),
    ('NVIDIA H200', 989.0), ('NVIDIA H200 NVL', 835.0), ('NVIDIA GH200 480GB', 989.0),
    ('NVIDIA A100-SXM4-80GB', 312.0), ('NVIDIA A100-PCIE-40GB', 312.0),
    ('NVIDIA L4', 121.0), ('NVIDIA L40S', 362.0), ('NVIDIA B200', 2250.0),
    ('NVIDIA GB200', 2500.0)])
def test_known_kinds_have_their_datasheet_peak(kind, tflops):
  assert bf16_peak_tflops(kind) == tflops


@pytest.mark.parametrize('kind', ['cpu', 'TPU v4 lite', 'NVIDIA L40', 'NVIDIA GeForce RTX 3090',
                                  'Tesla V100-SXM2-16GB'])
def test_unknown_kinds_have_none(kind):
  assert bf16_peak_tflops(kind) is None
