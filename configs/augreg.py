"""AugReg's ViT on ImageNet-1k from scratch: big_vision's `configs/vit_i1k.py`
("How to train your ViT? Data, Augmentation, and Regularization in Vision
Transformers", Steiner et al. 2021) for S/16 and B/16 at its augmentation
levels.

    python train.py --config=configs/augreg.py:MODEL,LEVEL --workdir=DIR --config.data_dir=TFDS_DIR

MODEL is S/16 or B/16; LEVEL one of none, light1, light2, medium1, medium2,
strong1, strong2 (default: vit_i1k.py's choice for the model, medium2), each
the RandAugment and Mixup of vit_i1k.py's tables:

| level | RandAugment (N, M) | Mixup Beta(a, a) |
|---|---|---|
| none | - | - |
| light1 | (2, 0) (not nothing: its ops still run) | - |
| light2 | (2, 10) | 0.2 |
| medium1 | (2, 15) | 0.2 |
| medium2 | (2, 15) | 0.5 |
| strong1 | (2, 20) | 0.5 |
| strong2 | (2, 20) | 0.8 |

Targets: AugReg released one ImageNet-1k model of each (their file names
give the settings), fine-tuned after the 300 epochs for 20k steps at lr 0.01
on ImageNet (a fine-tune that is not part of this recipe), and timm
evaluates those (its results tables, top-1 / ReaL / v2, crop 0.9, bicubic):
- `S/16,medium2` (S_16-i1k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.0-sd_0.0):
  78.84 / 84.51 / 66.59%;
- `B/16,strong2` (B_16-i1k-300ep-lr_0.001-aug_strong2-wd_0.1-do_0.1-sd_0.1):
  79.15 / 84.39 / 66.34%.
No other level has a published number in those sources.

The rest is vit_i1k.py's: the model with a class token ('tok' pooling),
learned position embeddings added before the class token, a tanh pre-logits
layer of the width, a zero-initialised head whose bias starts at -6.9, tanh
GELU; sigmoid cross-entropy (big_vision's sigmoid_xent); batch 4096, 300
epochs of `train[:99%]`; Adam (0.9, 0.999, first moment in bfloat16), lr
1e-3, 10k warm-up steps then cosine, clipping at 1.0, weight decay 1e-4 in
big_vision's unit (the file names' wd 0.1 is the same decay: 0.1 times the
lr); inception crop of 5-100% and flip; evaluations as `bv_plain.py`. B/16
adds the regularization AugReg's B/16 was trained with, dropout 0.1 and
stochastic depth 0.1 (vit_i1k.py leaves it out; big_vision's model has no
stochastic depth). Sized for a v3-32 (batch 4096: 128 images a core).
"""
from configs.common import BIG_VISION_VIT, base_config, big_vision_i1k

# the architecture of each model (registry names of its shape) and its regularization
MODELS = {
    'S/16': dict(model='deit_small_patch16_224', dropout_rate=0.0, drop_path_rate=0.0),
    'B/16': dict(model='vit_base_patch16_224', dropout_rate=0.1, drop_path_rate=0.1),
}
# vit_i1k.py's RANDAUG_DEF and MIXUP_DEF: (RandAugment (N, M) or (), Mixup a)
LEVELS = {
    'none': ((), 0.0),
    'light1': ((2, 0), 0.0),
    'light2': ((2, 10), 0.2),
    'medium1': ((2, 15), 0.2),
    'medium2': ((2, 15), 0.5),
    'strong1': ((2, 20), 0.5),
    'strong2': ((2, 20), 0.8),
}
DEFAULT_LEVEL = {'S/16': 'medium2', 'B/16': 'medium2'}  # vit_i1k.py's aug_setting


def parse(arg: str) -> tuple[str, str]:
  """(model, level) of 'MODEL[,LEVEL]'; anything else a ValueError naming the choices."""
  model, _, level = (arg or '').partition(',')
  if model not in MODELS:
    raise ValueError(f'configs/augreg.py:{arg}: unknown model {model!r}; choose one of '
                     f'{", ".join(MODELS)} (configs/augreg.py:MODEL,LEVEL)')
  level = level or DEFAULT_LEVEL[model]
  if level not in LEVELS:
    raise ValueError(f'configs/augreg.py:{arg}: unknown AugReg level {level!r}; choose one '
                     f'of {", ".join(LEVELS)}')
  return model, level


def get_config(arg: str = 'B/16'):
  model, level = parse(arg)
  arch = MODELS[model]
  randaug, mixup = LEVELS[level]
  c = base_config()
  big_vision_i1k(c)
  c.model = arch['model']
  c.model_overrides = dict(BIG_VISION_VIT, classifier='token', posemb='learn',
                           head_bias_init=-6.9, num_classes=1000,
                           dropout_rate=arch['dropout_rate'],
                           drop_path_rate=arch['drop_path_rate'])
  c.batch_size = 4096
  c.eval_batch_size = 1024
  c.total_epochs = 300
  c.loss = 'sigmoid_xent'
  c.randaug = randaug
  c.mixup = mixup
  c.dtype = 'float32'
  return c
