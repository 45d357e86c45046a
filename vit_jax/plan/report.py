"""The plan of one compiled step: memory per device against the HBM, FLOPs,
collectives, custom calls and a roofline bound, as JSON and as lines."""
from __future__ import annotations

import json
import re
import time
from typing import Any, Optional

import jax
import numpy as np

from vit_jax import storage
from vit_jax.plan import hlo
from vit_jax.plan.topology import Slice

GIB = 2 ** 30


def _shard_bytes(tree: Any) -> int:
  """Bytes per device of a tree of ShapeDtypeStructs with shardings (the
  largest shard, as every device holds one)."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += int(np.prod(shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
  return total


def _per_device(cost: Any) -> dict:
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return {k: float(v) for k, v in (cost or {}).items()}


def compile_step(lowered: Any, tpu: Slice, hbm: int, *, batch_size: int,
                 model_flops: float, arguments: Any, donated: Any,
                 settings: dict) -> dict:
  """Compile `lowered` for the slice and report it. A step that cannot fit
  is refused by XLA with the temporaries it needs: then the memory comes
  from that figure and the shardings, and what needs the executable is None."""
  start = time.perf_counter()
  report = {'topology': tpu.name, 'num_devices': None, 'device_kind': None,
            'hbm_bytes_per_device': hbm, 'settings': settings, 'batch_size': batch_size}
  try:
    compiled = lowered.compile()
  except Exception as e:  # noqa: BLE001 -- XLA's out-of-memory refusal is the answer
    found = re.search(r'HLO temporaries \(([\d.]+)([KMGT])\)', str(e))
    if not found:
      raise
    temp = int(float(found.group(1)) * 1024 ** ('KMGT'.index(found.group(2)) + 1))
    argument, alias = _shard_bytes(arguments), _shard_bytes(donated)
    memory = {'argument': argument, 'output': alias, 'alias': alias, 'temp': temp,
              'generated_code': 0}
    report.update(compile_s=time.perf_counter() - start, compiled=False,
                  compile_error=' '.join(str(e).split())[:300], flops_per_step=None,
                  collectives=None, custom_calls=None)
    return _finish(report, memory, tpu, model_flops, None)
  report['compile_s'] = time.perf_counter() - start
  stats = compiled.memory_analysis()
  memory = {'argument': stats.argument_size_in_bytes, 'output': stats.output_size_in_bytes,
            'alias': stats.alias_size_in_bytes, 'temp': stats.temp_size_in_bytes,
            'generated_code': stats.generated_code_size_in_bytes}
  text = compiled.as_text()
  cost = _per_device(compiled.cost_analysis())
  report.update(compiled=True, collectives=hlo.collectives(text),
                custom_calls=hlo.custom_call_targets(text))
  return _finish(report, memory, tpu, model_flops, (cost, text))


def _finish(report: dict, memory: dict, tpu: Slice, model_flops: float,
            compiled: Optional[tuple]) -> dict:
  devices = tpu.chips * tpu.generation.devices_per_chip
  memory['total'] = (memory['argument'] + memory['output'] - memory['alias'] + memory['temp']
                     + memory['generated_code'])
  report.update(num_devices=devices, device_kind=f'TPU {tpu.generation.name}', memory=memory,
                fits=memory['total'] <= report['hbm_bytes_per_device'],
                model_flops_per_step=model_flops)
  if compiled is None:
    report.update(step_time_lower_bound_s=None, img_per_sec_upper_bound=None)
    return report
  cost, _ = compiled
  flops = cost.get('flops', 0.0)
  report['flops_per_step'] = flops * devices
  # the roofline of one device: its share of the step's FLOPs at the chip's
  # published bf16 peak, or its bytes at the published HBM bandwidth
  bound = max(flops / tpu.peak_flops_per_device,
              cost.get('bytes accessed', 0.0) / tpu.hbm_bandwidth_per_device)
  report['step_time_lower_bound_s'] = bound
  report['img_per_sec_upper_bound'] = report['batch_size'] / bound if bound else None
  return report


def lines(report: dict) -> list[str]:
  """The report for people: memory per device, then what the step does."""
  m, hbm = report['memory'], report['hbm_bytes_per_device']
  verdict = 'fits' if report['fits'] else f'does NOT fit: {(m["total"] - hbm) / GIB:.2f} GiB over'
  out = [f'{report["step"]} step for {report["topology"]} ({report["num_devices"]} x '
         f'{report["device_kind"]}), global batch {report["batch_size"]}, '
         + ', '.join(f'{k} {v}' for k, v in report['settings'].items()),
         f'memory per device: {m["total"] / GIB:.2f} GiB of {hbm / GIB:.2f} GiB HBM, {verdict} '
         f'(arguments {m["argument"] / GIB:.2f}, outputs {m["output"] / GIB:.2f}, '
         f'donated {m["alias"] / GIB:.2f}, temporaries {m["temp"] / GIB:.2f}, '
         f'code {m["generated_code"] / GIB:.2f})']
  if report['compiled']:
    mf, f = report['model_flops_per_step'], report['flops_per_step']
    coll = ', '.join(f'{k} x{v["count"]} ({v["bytes"] / 2 ** 20:.1f} MiB)'
                     for k, v in report['collectives'].items()) or 'none'
    loop = ('; XLA counts the micro-batch loop once' if report['settings'].get('accum_steps', 1)
            > 1 else '')
    out += [f'FLOPs per step: model {mf / 1e12:.2f} T, compiled {f / 1e12:.2f} T '
            f'({f / mf:.2f}x{loop})',
            f'collectives: {coll}; custom calls: {", ".join(report["custom_calls"]) or "none"}',
            f'roofline bound (published bf16 peak and HBM bandwidth, not a measurement): '
            f'step >= {report["step_time_lower_bound_s"] * 1e3:.1f} ms, '
            f'<= {report["img_per_sec_upper_bound"]:,.0f} img/s',
            f'compiled in {report["compile_s"]:.1f} s']
  else:
    out.append(f'not compiled: {report["compile_error"]}')
  if report.get('suggestion'):
    s = report['suggestion']
    out.append(f'fits with {s["flags"]}: {s["total"] / GIB:.2f} GiB per device')
  elif not report['fits']:
    out.append('nothing tried fits: ' + '; '.join(report.get('tried', [])))
  return out


def write_json(report: dict, path: str) -> None:
  """A local file or a gs:// object."""
  storage.resolve(path).write_text(json.dumps(report, indent=1))
