"""The timm card's recipe for each of its seven models.

    python train.py --config=configs/card.py:vit_base_patch16_224 --workdir=DIR

The card lists for vit_base_patch16_224 a run on ImageNet (90 epochs, batch
4096, lr 0.0008, 10k warmup steps, weight decay 0.03, SGD with momentum,
cosine, clipping, dropout 0), and this recipe is that list as the card reads.
It is not a published from-scratch recipe: the card's weights were
pre-trained on ImageNet-21k and fine-tuned, and its metadata stitches rows of
the ViT paper together. lr 0.0008 is the JFT-300M pre-training value of B/16
(with Adam); 90 epochs and weight decay 0.03 the ImageNet-21k pre-training
row (Adam); batch 4096 and the 10k warmup steps the caption of its Table 3;
SGD with momentum, cosine decay and clipping at 1.0 the fine-tuning table
(batch 512, no weight decay). No published run trains a ViT from scratch on
ImageNet-1k with SGD at lr 8e-4, and here the warmup is 36% of the run. To
train from scratch to a published result use `configs/bv_plain.py`
(big_vision's ViT-S/16: 76.5% top-1 in 90 epochs) or `configs/augreg.py`.

Its 384 and ViT-L entries are the fine-tuning runs (batch 512, momentum 0.9,
weight decay 0) from the ImageNet-21k checkpoints, so those recipes need
--config.pretrained. vit_small_patch16_224 lists only its image size and
crop; it gets the same list as vit_base_patch16_224.

Every recipe computes in bfloat16 (parameters and optimizer state stay
float32) and fits the card's hardware: the from-scratch ones (batch 4096) a
v3-32, the fine-tuning ones (batch 512) a v3-8 (`common.FIT_V3_8`).
"""
from configs.common import base_config, fit_v3_8

IMAGENET_TRAIN = 1_281_167
CARD = {
    'vit_small_patch16_224': dict(image_size=224, crop_pct=0.9, scratch=True),
    'vit_base_patch16_224': dict(image_size=224, crop_pct=0.9, scratch=True),
    'vit_base_patch16_384': dict(image_size=384, crop_pct=1.0),
    'vit_base_patch32_384': dict(image_size=384, crop_pct=1.0),
    'vit_large_patch16_224': dict(image_size=224, crop_pct=0.9),
    'vit_large_patch16_384': dict(image_size=384, crop_pct=1.0),
    'vit_base_resnet50_384': dict(image_size=384, crop_pct=1.0),
}


def get_config(model: str = 'vit_base_patch16_224'):
  if model not in CARD:
    raise ValueError(f'configs/card.py:{model}: the card has {sorted(CARD)}')
  recipe = CARD[model]
  c = base_config()
  c.model = model
  c.model_overrides = {'crop_pct': recipe['crop_pct'], 'dropout_rate': 0.0}
  c.image_size = recipe['image_size']
  c.dtype = 'bfloat16'  # computed in bf16 on TPUs and GPUs; parameters stay float32
  c.optimizer = 'sgd'
  c.momentum = 0.9
  c.grad_clip_norm = 1.0
  if recipe.get('scratch'):
    c.batch_size = 4096
    c.total_steps = 90 * IMAGENET_TRAIN // 4096      # 90 epochs
    c.warmup_steps = 10_000
    c.lr = 0.0008
    c.weight_decay = 0.03
  else:  # the card's fine-tuning entries: batch 512, no weight decay
    c.batch_size = 512
    c.total_steps = 20_000
    c.warmup_steps = 500
    c.lr = 0.01
    c.weight_decay = 0.0
    fit_v3_8(c)
  c.eval_batch_size = 512
  c.checkpoint_every = 1000
  c.eval_every = 2000
  c.log_every = 100
  return c
