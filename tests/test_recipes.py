"""The paper's recipes (`pixelbert/recipes/*.yaml`, `pixelbert.gpu`): every field understood, and every recipe run end to end.

Each recipe runs on the synthetic world written in the real data sets' formats and layouts (`write_synthetic`),
with `data_root` pointing there and the model shrunk to tiny sizes (width 32, one layer, a tiny CNN, 64-pixel
images) for two optimizer steps: the readers, the answer vocabulary, the trainer with the recipe's optimizer
and schedule settings, saving and evaluation all run as they would on real data. Pre-training starts its text
side from a BERT checkpoint saved here (the recipes name `bert-base-uncased`, which cannot be downloaded in
tests), fine-tuning from the pre-trained folder.
"""
import json, math
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file

from pixelbert.gpu import (list_recipes, load_recipe, check_recipe, recipe_fields, recipe_train_args, run_recipe,
                           merge_recipe, TASKS)

RECIPES = ['pretrain_base', 'pretrain_large', 'vqa_base', 'vqa_large', 'nlvr2_base', 'retrieval_base']
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, visual_conv_dim=32,
            backbone='tiny_cnn', backbone_weights=None, freeze_backbone_bn=False, image_shortest_edge=64, image_longest_edge=64)
QUIET = dict(num_workers=0, progress=False, precision='fp32', channels_last=False)


def test_shipped_recipes():
    assert set(RECIPES) <= set(list_recipes())
    for name in list_recipes():
        r = load_recipe(name)  # raises on any field the code does not understand
        assert check_recipe(r) == [] and r['task'] in TASKS


@pytest.mark.parametrize('section,field', [('train', 'learning_rate'), ('model', 'hidden_dim'), ('pretraining', 'mlm_prob'),
                                           ('schedule', 'warmup_epochs')])
def test_unknown_fields_refused(section, field):
    r = merge_recipe(load_recipe('pretrain_base'), {section: {field: 1}})
    with pytest.raises(ValueError, match=f'{section}.{field}: not a field'):
        check_recipe(r)


def test_retrieval_train_fields_are_finetune_retrieval_arguments():
    assert 'n_neg' in recipe_fields('retrieval')['train'] and 'backbone_lr' not in recipe_fields('retrieval')['train']
    with pytest.raises(ValueError, match='train.backbone_lr'):
        check_recipe(merge_recipe(load_recipe('retrieval_base'), {'train': {'backbone_lr': 1e-2}}))


def test_paper_schedule():
    "40 epochs of 5.6M pairs at 4096 per step on 64 GPUs of 32 pairs: the decay points at epochs 25 and 35."
    a = recipe_train_args(load_recipe('pretrain_base'), 5_600_000, world_size=64)
    assert a.steps == math.ceil(40 * 5_600_000 / 4096) and a.grad_accum == 2 and a.batch_size == 4096
    assert [round(f * 40) for f in a.decay_at] == [25, 35]
    assert (a.lr, a.backbone_lr, a.weight_decay, a.backbone_weight_decay) == (1e-4, 1e-2, 1e-2, 5e-4)
    v = recipe_train_args(load_recipe('vqa_base'), 443_757, world_size=8)
    assert [round(f * 18) for f in v.decay_at] == [12, 16] and v.batch_size == 256 and v.grad_accum == 1


def test_missing_data_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='captions_train2017.json'):
        run_recipe('pretrain_base', tmp_path / 'out', data_root=tmp_path, steps=1, device='cpu',
                   overrides=dict(model=TINY, processor=dict(tokenizer='synthetic'), init=dict(text=None)))


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    from transformers import BertConfig, BertModel
    from pixelbert.data import write_synthetic
    from pixelbert.processing import synthetic_tokenizer
    root = tmp_path_factory.mktemp('recipes')
    write_synthetic(root / 'world', n_images=12, image_size=64)
    tok = synthetic_tokenizer(); tok.save_pretrained(root / 'tok')
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(root / 'bert')
    return root


def small(world, **extra):
    return dict(model=TINY, processor=dict(tokenizer=str(world / 'tok')), train=dict(batch_size=8, log_every=1, **QUIET),
                schedule=dict(micro_batch=4), eval=dict(batch_size=8), **extra)


@pytest.fixture(scope='module')
def pretrained(world):
    "pretrain_base end to end; learning rates 0 so that the final text weights must equal the BERT checkpoint's."
    o = small(world, init=dict(text=str(world / 'bert')))
    o['train'].update(lr=0.0, backbone_lr=0.0); o['eval']['max_batches'] = 1
    res = run_recipe('pretrain_base', world / 'pre', data_root=world / 'world', overrides=o, steps=2, device='cpu')
    return res, world / 'pre'


def test_pretrain_base(pretrained, world):
    res, out = pretrained
    assert res['steps'] == 2 and res['grad_accum'] == 2 and res['n_train'] == 2 * 12 * 5  # COCO + Visual Genome captions
    assert 0 <= res['val']['mlm_accuracy'] <= 1 and res['val']['pairs'] > 0
    final = load_file(str(out / 'final' / 'model.safetensors'))
    bert = load_file(str(world / 'bert' / 'model.safetensors'))
    key = next(k for k in bert if k.endswith('word_embeddings.weight'))
    assert torch.equal(final['pixelbert.embeddings.word_embeddings.weight'], bert[key])  # init.text was applied
    assert json.loads((out / 'metrics.json').read_text())['recipe'] == 'pretrain_base'
    assert (out / 'final' / 'preprocessor_config.json').is_file()


def test_pretrain_large(world):
    res = run_recipe('pretrain_large', world / 'large', data_root=world / 'world', overrides=small(world, init=dict(text=None)),
                     steps=1, device='cpu')
    assert res['steps'] == 1 and (world / 'large' / 'final' / 'model.safetensors').is_file()


@pytest.mark.parametrize('name', ['vqa_base', 'vqa_large', 'nlvr2_base', 'retrieval_base'])
def test_finetune_from_pretrained(name, pretrained, world):
    _, pre = pretrained
    o = small(world, init=dict(model=str(pre / 'final')))
    if name == 'retrieval_base': o['train'] = dict(batch_size=8, log_every=1); o.pop('schedule')
    res = run_recipe(name, world / name, data_root=world / 'world', overrides=o, steps=2, device='cpu')
    assert res['init'] == str(pre / 'final') and res['steps'] == 2
    if name.startswith('vqa'): assert 0 <= res['val']['accuracy'] <= 1 and res['answers'] > 3
    elif name == 'nlvr2_base': assert 0 <= res['val']['accuracy'] <= 1
    else: assert 0 <= res['val']['exact']['tr_r1'] <= 1 and res['val']['pool_images'] == 12
    assert (world / name / 'final' / 'model.safetensors').is_file()
