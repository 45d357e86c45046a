"""Runs exported models as a server would: with one runtime and numpy, and
nothing of the model's code (flax, vit_jax and the other runtime cannot even
be imported here).

    python serve.py jax|onnxruntime JOB.json

JOB: {"inputs": NPZ, "out": NPZ, "runs": [{"key", "model", "input", "batches"}]}:
each model runs on the first B rows of its input for each B of `batches`;
the output holds `KEY/B` (the model's output) and `KEY/info` (what the
runtime reads from the file: input shape, platforms, custom calls, metadata).
"""
import importlib.abc
import json
import re
import sys

RUNTIME = sys.argv[1]
ALLOWED = {'jax': {'jax', 'jaxlib'}, 'onnxruntime': {'onnxruntime'}}[RUNTIME]
BLOCKED = {'flax', 'vit_jax', 'jax', 'jaxlib', 'onnxruntime'} - ALLOWED


class NoModelCode(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in BLOCKED:
      raise ImportError(f'{name} is not available to this server')
    return None


sys.meta_path.insert(0, NoModelCode())

import numpy as np  # noqa: E402


def jax_runner(path: str):
  import jax
  with open(path, 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  text = exported.mlir_module()
  info = {'input_shape': str(exported.in_avals[0].shape), 'platforms': exported.platforms,
          'custom_calls': sorted(set(re.findall(r'custom_call @(\w+)', text))),
          'bf16_ops': text.count('bf16')}
  return (lambda x: np.asarray(exported.call(x))), info


def onnx_runner(path: str):
  import onnxruntime as ort
  session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
  meta = session.get_modelmeta().custom_metadata_map
  info = {'input_shape': str(session.get_inputs()[0].shape), 'input': session.get_inputs()[0].name,
          'output': session.get_outputs()[0].name, 'metadata': meta.get('vit_jax')}
  return (lambda x: session.run(None, {'images': x})[0]), info


def main() -> None:
  with open(sys.argv[2]) as f:
    job = json.load(f)
  inputs = np.load(job['inputs'])
  out = {}
  for run in job['runs']:
    call, info = (jax_runner if RUNTIME == 'jax' else onnx_runner)(run['model'])
    for b in run['batches']:
      out[f'{run["key"]}/{b}'] = call(inputs[run['input']][:b])
    info['modules'] = sorted({m.split('.')[0] for m in sys.modules} & (BLOCKED | ALLOWED))
    out[f'{run["key"]}/info'] = np.array(json.dumps(info))
  np.savez(job['out'], **out)


if __name__ == '__main__':
  main()
