"""big_vision's plain ViT-S/16 on ImageNet-1k: its `configs/vit_s16_i1k.py`
("Better plain ViT baselines for ImageNet-1k", Beyer, Zhai, Kolesnikov 2022).

    python train.py --config=configs/bv_plain.py --workdir=DIR --config.data_dir=TFDS_DIR
    python train.py --config=configs/bv_plain.py --workdir=DIR ... --config.total_epochs=300

Targets (the paper, top-1 on ImageNet validation): 76.5% after 90 epochs
(ReaL 83.1%, ImageNet-v2 64.2%), 78.5% after 150, 80.0% after 300; big_vision
trains the 90 epochs in 6h30 on a TPUv3-8, which this recipe fits
(`--compile_for=v3-8`). The released weights of these runs are registered
as vit_s16_i1k_90ep, _150ep and _300ep.

Each setting as big_vision's file has it:
- model: ViT-S/16, global average pooling, fixed 2-D sin-cos position
  embeddings, a tanh pre-logits layer of the width (rep_size=True), a
  zero-initialised head, tanh GELU, no dropout, no stochastic depth;
- optimizer: Adam b1 0.9, b2 0.999, eps 1e-8, first moment in bfloat16; lr
  1e-3 for batch 1024, not scaled with the batch; 10k linear warm-up steps
  then cosine to 0; clipping at global norm 1.0; weight decay 1e-4 on kernels
  in big_vision's unit, times the schedule (AdamW's 0.1 at lr 1e-3);
- loss: softmax cross-entropy, no label smoothing;
- input: `train[:99%]` of imagenet2012, inception crop of 5% to 100% of the
  area, flip, RandAugment(2, 10), Mixup with Beta(0.2, 0.2); batch 1024;
- length: 90 epochs of that split (111,477 steps; `total_epochs`, as
  big_vision's);
- evaluation every 2,500 steps: validation (`top1`), minival (the held-out
  `train[99%:]`), ReaL and ImageNet-v2 (`minival/top1`, `real/top1`,
  `v2/top1`), with big_vision's preprocessing (area resize of the shorter
  side to 256, centre crop 224, values in [-1, 1]).
Computed in float32 as big_vision's model is (TPU matrix units take
bfloat16 passes either way); `--config.dtype=bfloat16` halves the
activations' memory.
"""
from configs.common import BIG_VISION_VIT, base_config, big_vision_i1k


def get_config():
  c = base_config()
  big_vision_i1k(c)
  c.model = 'vit_s16_i1k_90ep'   # big_vision's S/16 (the 150 and 300 epoch ones are the same)
  c.model_overrides = dict(BIG_VISION_VIT, classifier='gap', posemb='sincos2d',
                           num_classes=1000)
  c.batch_size = 1024
  c.eval_batch_size = 1024
  c.total_epochs = 90
  c.loss = 'softmax_xent'
  c.randaug = (2, 10)
  c.mixup = 0.2
  c.dtype = 'float32'
  return c
