"""Why ITM stays at chance on the tiny preset: a fast probe of the transformer side of pre-training (issue 4).

    .venv/bin/python scripts/itm_probe.py                                  # the default grid below, ~25 min on 2 cores
    .venv/bin/python scripts/itm_probe.py --lrs 1e-3,3e-4 --tokens 1 --steps 400
    .venv/bin/python scripts/itm_probe.py --tokens 64 --mlm --dropout 0.1  # the full pre-training objective

The CNN is trained first to tag synthetic images (`pixelbert.cli.pretrain_backbone`, the demo's stand-in for
ImageNet weights) and then frozen, so that its feature maps are computed once and each probe step costs only
the transformer: this isolates whether the *transformer* can learn image-text matching at a given learning
rate. `--tokens 1` gives the transformer one max-pooled image token (the easiest form of the task), `--tokens
16` a 4x4 grid (pool 4), `--tokens 64` the tiny preset's 8x8 grid. Everything above the CNN (extra conv,
projection, LayerNorm, transformer, heads) trains with AdamW at the given rate, with linear warm-up over 50
steps and clipping at 1.0, as `pixelbert-pretrain` does.

Alongside, a two-layer MLP on [max-pooled CNN features, bag of caption words] shows that the task is
learnable from the same features with the same negatives. Prints held-out ITM accuracy (chance 0.5: as many
shuffled negatives as positives) every `--eval-every` steps.
"""
import argparse, json, tempfile, time
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def features(cnn, proc, tok, split, n, pooled):
    "Frozen CNN feature maps (or their max over the map) of `n` scenes, and their captions tokenized."
    from pixelbert.synth import SynthCaptions
    ds = SynthCaptions(split, n)
    maps = []
    with torch.no_grad():
        for s in range(0, n, 100):
            px = proc.image_processor([ds.scenes[i].render(128) for i in range(s, min(n, s + 100))])['pixel_values']
            f = cnn(px)
            maps.append(f.amax((2, 3), keepdim=True) if pooled else f)
    caps, img = [], []
    for i in range(n):
        for cap, _, _ in ds.captions(i): caps.append(cap); img.append(i)
    t = tok(caps, padding='max_length', max_length=32, truncation=True, return_tensors='pt')
    return torch.cat(maps), t['input_ids'], t['attention_mask'], torch.tensor(img)


class Cached(nn.Module):
    "Stands in for `visual.backbone`: returns the precomputed feature maps of the current batch."
    def __init__(self, cnn): super().__init__(); self.out_channels, self.stride, self.name, self.maps = cnn.out_channels, cnn.stride, 'cached', None
    def forward(self, x): return self.maps


def probe_transformer(tr, va, tok, lr, a, side):
    from pixelbert.pretraining import PixelBertForPreTraining, pretraining_config
    torch.manual_seed(a.seed)
    over = dict(num_sampled_pixels=None, pixel_position_embedding=True, hidden_dropout_prob=a.dropout,
                attention_probs_dropout_prob=a.dropout, pool_size={1: 2, 16: 4, 64: 2}[a.tokens])
    m = PixelBertForPreTraining(pretraining_config('tiny', tok, **over))
    m.pixelbert.visual.backbone = Cached(m.pixelbert.visual.backbone)
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))
    def batch(d, idx):
        maps, ids, att, img = d
        m.pixelbert.visual.backbone.maps = maps[img[idx]]
        return dict(input_ids=ids[idx], attention_mask=att[idx], pixel_values=torch.zeros(len(idx), 3, side, side), image_group=img[idx])
    def evaluate():
        m.eval(); g = torch.Generator().manual_seed(1); hits = n = 0
        with torch.no_grad():
            for s in range(0, a.eval_pairs, 100):
                o = m(**batch(va, torch.arange(s, s + 100)), mlm=False, generator=g)
                hits += (o.itm_logits.argmax(-1) == o.itm_labels).sum().item(); n += len(o.itm_labels)
        m.train(); return hits / n
    g = torch.Generator().manual_seed(a.seed); curve = {}
    for step in range(1, a.steps + 1):
        o = m(**batch(tr, torch.randint(len(tr[1]), (a.batch_size,), generator=g)), mlm=a.mlm and step > a.itm_warmup, generator=g)
        opt.zero_grad(); o.loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); sched.step()
        if step % a.eval_every == 0:
            curve[step] = round(evaluate(), 3)
            print(f"  transformer lr={lr:g} tokens={a.tokens} mlm={a.mlm} (after {a.itm_warmup}) dropout={a.dropout}: step {step} held-out ITM {curve[step]}", flush=True)
    return curve


def probe_mlp(tr, va, tok, a):
    from pixelbert.pretraining import itm_negatives
    def bow(ids): x = torch.zeros(len(ids), len(tok)).scatter_(1, ids, 1.0); x[:, :5] = 0; return x  # no special tokens
    def rows(d, idx, g):
        maps, ids, _, img = d
        f, w = maps[img[idx]].amax((2, 3)), bow(ids[idx])  # maps are max-pooled already (1x1) or pooled here per batch
        nt, ni = itm_negatives(img[idx], 1.0, g)
        x = torch.cat([torch.cat([f, w], 1), torch.cat([f[ni], w[nt]], 1)])
        return x, torch.cat([torch.ones(len(idx)), torch.zeros(len(nt))]).long()
    torch.manual_seed(a.seed)
    net = nn.Sequential(nn.Linear(tr[0].shape[1] + len(tok), 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(a.seed); curve = {}
    for step in range(1, a.steps + 1):
        x, y = rows(tr, torch.randint(len(tr[1]), (a.batch_size,), generator=g), g)
        loss = F.cross_entropy(net(x), y); opt.zero_grad(); loss.backward(); opt.step()
        if step % a.eval_every == 0:
            with torch.no_grad():
                x, y = rows(va, torch.arange(a.eval_pairs), torch.Generator().manual_seed(1))
                curve[step] = round((net(x).argmax(1) == y).float().mean().item(), 3)
            print(f"  MLP probe: step {step} held-out ITM {curve[step]}", flush=True)
    return curve


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--lrs', default='1e-3,3e-4,1e-4', help='AdamW learning rates to compare')
    ap.add_argument('--tokens', type=int, default=1, choices=[1, 16, 64], help='image tokens the transformer sees')
    ap.add_argument('--mlm', action='store_true', help='train MLM alongside ITM (the full pre-training objective)')
    ap.add_argument('--dropout', type=float, default=0.0, help='hidden and attention dropout (the tiny preset: 0.1)')
    ap.add_argument('--steps', type=int, default=600); ap.add_argument('--batch-size', type=int, default=32)
    ap.add_argument('--eval-every', type=int, default=100); ap.add_argument('--eval-pairs', type=int, default=600)
    ap.add_argument('--n-train', type=int, default=3000, help='training scenes (5 captions each)')
    ap.add_argument('--n-val', type=int, default=300, help='held-out scenes')
    ap.add_argument('--tag-steps', type=int, default=300, help='steps of CNN tag training before the probe')
    ap.add_argument('--itm-warmup', type=int, default=0, help='with --mlm: steps of ITM alone before MLM joins')
    ap.add_argument('--cnn', default=None, help='load a tag-trained CNN state dict (.pt) instead of training one')
    ap.add_argument('--save-cnn', default=None, help='save the tag-trained CNN state dict here')
    ap.add_argument('--no-mlp', action='store_true'); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--json', default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    from pixelbert.config import PixelBertConfig
    from pixelbert.processing import PixelBertProcessor
    from pixelbert.visual import build_backbone
    from pixelbert.cli import pretrain_backbone
    proc = PixelBertProcessor.from_preset('tiny'); tok = proc.tokenizer
    t0 = time.time()
    if a.cnn: state = torch.load(a.cnn, weights_only=True); print(f"CNN from {a.cnn}", flush=True)
    else:
        with tempfile.TemporaryDirectory() as d:
            state, log = pretrain_backbone(PixelBertConfig.from_preset('tiny'), proc, d, steps=a.tag_steps, progress=False, seed=a.seed)
        print(f"CNN tag-trained for {a.tag_steps} steps in {time.time() - t0:.0f} s (last tag accuracy {log[-1].get('accuracy')})", flush=True)
        if a.save_cnn: torch.save(state, a.save_cnn)
    cnn = build_backbone('tiny_cnn', None, freeze_bn=False); cnn.load_state_dict(state); cnn.eval()
    pooled = a.tokens == 1
    tr = features(cnn, proc, tok, 'train', a.n_train, pooled); va = features(cnn, proc, tok, 'val', a.n_val, pooled)
    a.eval_pairs = min(a.eval_pairs, len(va[1]) // 100 * 100)
    side = 8 if pooled else 128
    res = dict(args=vars(a), transformer={})
    if not a.no_mlp:
        res['mlp'] = probe_mlp(tr, va, tok, a)  # it max-pools the maps itself: no second CNN pass
    for lr in [float(x) for x in a.lrs.split(',')]:
        t1 = time.time()
        res['transformer'][f'{lr:g}'] = probe_transformer(tr, va, tok, lr, a, side)
        print(f"  ({time.time() - t1:.0f} s)", flush=True)
    print('\nheld-out ITM accuracy (chance 0.5) by step')
    steps = list(range(a.eval_every, a.steps + 1, a.eval_every))
    print(f"{'':22}" + ''.join(f'{s:>7}' for s in steps))
    if 'mlp' in res: print(f"{'MLP probe':22}" + ''.join(f"{res['mlp'][s]:>7}" for s in steps))
    for lr, c in res['transformer'].items(): print(f"{'transformer lr=' + lr:22}" + ''.join(f'{c[s]:>7}' for s in steps))
    if a.json: open(a.json, 'w').write(json.dumps(res, indent=1))


if __name__ == '__main__': main()
