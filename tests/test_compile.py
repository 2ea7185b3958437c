"""`torch.compile` and the input checks: the value checks of the embeddings and the visual encoder (token ids in range,
mask values, no empty image) read numbers back from the device, which splits a compiled graph at each one. They step
aside while dynamo traces (`torch.compiler.is_compiling()`); in eager mode they still raise (tests/test_model.py).

Chapter 16's GPU run (nbs/gpu_results) was measured before this change: 21 graph breaks there, 12 of them `.item()`.
"""
import torch
import torch._dynamo as dynamo

from pixelbert.gpu import bench_config, synthetic_batch
from pixelbert.pretraining import PixelBertForPreTraining


def test_input_checks_do_not_break_the_graph():
    cfg = bench_config('base', num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                       visual_conv_dim=32, image_shortest_edge=64, image_longest_edge=96)
    batch = synthetic_batch(cfg, 2, 8)
    torch.manual_seed(0)
    model = PixelBertForPreTraining(cfg).train()
    dynamo.reset()
    ex = dynamo.explain(model)(**batch)
    where = [f"{f.filename.rsplit('/', 1)[-1]}:{f.name}" for r in ex.break_reasons for f in r.user_stack]
    assert not [w for w in where if 'check_text_ids' in w or 'check_pixel_inputs' in w], where
    dynamo.reset()
