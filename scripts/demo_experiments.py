"""Experiments that decide the demo's design: does pre-training pay off, and for which split of the budget?

    .venv/bin/python scripts/demo_experiments.py pretrain --out runs/exp/pt --steps 1200 --snapshots 400,800
    .venv/bin/python scripts/demo_experiments.py vqa --out runs/exp/vqa_pt800 --init runs/exp/pt/checkpoint-800 --steps 200
    .venv/bin/python scripts/demo_experiments.py vqa --out runs/exp/vqa_scratch --init scratch --steps 200
    .venv/bin/python scripts/demo_experiments.py vqa --out runs/exp/vqa_blind --init blind --steps 200

Every command prints and writes `result.json` with the accuracies, the process CPU time (both cores' worth:
`time.process_time()`) and the wall time, so that runs on a busy machine can be converted to idle wall time.
Threads default to 1 (a shared machine makes two busy-waiting threads much slower than one).
"""
import argparse, json, time, sys
from pathlib import Path
import torch

def clock(): return time.process_time(), time.perf_counter()

def processor_and_config(overrides):
    from pixelbert.processing import PixelBertProcessor
    from pixelbert.pretraining import pretraining_config
    proc = PixelBertProcessor.from_preset('tiny')
    return proc, pretraining_config('tiny', proc.tokenizer, **overrides)

def parse_overrides(s):
    out = {}
    for kv in filter(None, (s or '').split(',')):
        k, v = kv.split('=')
        out[k] = json.loads(v)
    return out

def pretrain(a):
    from pixelbert.synth import SynthCaptions
    from pixelbert.pretraining import PixelBertForPreTraining, PretrainingCollator, evaluate_pretraining
    from pixelbert.trainer import Trainer, TrainArgs
    ov = dict(itm_hard_negatives=a.hard, num_sampled_pixels=a.k, pixel_position_embedding=a.pos) | parse_overrides(a.model)
    proc, cfg = processor_and_config(ov)
    c0 = clock()
    train = SynthCaptions('train', n_images=a.images, seed=a.seed)
    torch.manual_seed(a.seed)
    model = PixelBertForPreTraining(cfg)
    if a.backbone: model.pixelbert.visual.backbone.load_state_dict(torch.load(a.backbone))
    snaps = [int(x) for x in a.snapshots.split(',')] if a.snapshots else []
    decay = tuple(float(x) for x in a.decay_at.split(',')) if a.decay_at else ()
    args = TrainArgs(out=a.out, steps=a.steps, batch_size=a.batch, lr=a.lr, backbone_lr=a.backbone_lr, warmup=a.warmup,
                     decay_at=decay, log_every=20, save_every=10**9, precision=a.precision, seed=a.seed, progress=False,
                     num_workers=a.workers)
    if snaps:  # checkpoints at every multiple of the snapshots' gcd, all kept
        import math
        args.save_every, args.keep_checkpoints = math.gcd(*snaps, a.steps), 0
    trainer = Trainer(model, train, PretrainingCollator(proc, whole_word_masking=a.wwm), args, save_extra=proc.save_pretrained)
    res = trainer.fit()
    c1 = clock()
    held = SynthCaptions('test', n_images=400, seed=a.seed)
    ev = evaluate_pretraining(model, held, PretrainingCollator(proc), batch_size=64, max_batches=6, seed=0)
    c2 = clock()
    out = dict(args=vars(a), train_cpu_s=c1[0] - c0[0], train_wall_s=c1[1] - c0[1], eval_cpu_s=c2[0] - c1[0],
               steps=res['step'], **ev)
    for s in snaps:  # accuracy of each snapshot too
        d = Path(a.out) / f'checkpoint-{s}'
        if d.is_dir():
            m = PixelBertForPreTraining.from_pretrained(d)
            out[f'eval_{s}'] = evaluate_pretraining(m, held, PretrainingCollator(proc), batch_size=64, max_batches=6, seed=0)
    Path(a.out, 'result.json').write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != 'args'}, indent=1))

def vqa(a):
    from pixelbert.synth import SynthVQA, question_only_baseline
    from pixelbert.vqa import AnswerVocab, vqa_config, PixelBertForVQA, finetune_vqa, evaluate_vqa, VQA_DECAY_AT
    from safetensors.torch import load_file
    c0 = clock()
    train = SynthVQA('train', n_images=a.images, seed=a.seed)
    test = SynthVQA('test', n_images=a.eval_images, seed=a.seed)
    vocab = AnswerVocab.build([s[2] for s in train.items])
    ov = dict(pixel_position_embedding=a.pos) | parse_overrides(a.model)
    if a.init not in ('scratch', 'blind'):
        from transformers import AutoConfig
        from pixelbert.model import PixelBertConfig
        base = PixelBertConfig.from_pretrained(a.init)
        proc, _ = processor_and_config({})
    else:
        proc, base = processor_and_config(ov)
    cfg = vqa_config(base, vocab)
    cfg.hidden_dropout_prob = a.dropout if a.dropout is not None else cfg.hidden_dropout_prob
    torch.manual_seed(a.seed)
    model = PixelBertForVQA(cfg)
    if a.init not in ('scratch', 'blind'):
        sd = load_file(str(Path(a.init) / 'model.safetensors'))
        own = {k[len('pixelbert.'):]: v for k, v in sd.items() if k.startswith('pixelbert.')}
        missing, unexpected = model.pixelbert.load_state_dict(own, strict=False)
        assert not unexpected and not missing, (missing, unexpected)
    decay = tuple(float(x) for x in a.decay_at.split(',')) if a.decay_at else VQA_DECAY_AT
    res = finetune_vqa(model, train, proc, use_pixels=a.init != 'blind', out=a.out, steps=a.steps, batch_size=a.batch,
                       lr=a.lr, backbone_lr=a.backbone_lr, warmup=a.warmup, decay_at=decay, precision=a.precision,
                       log_every=20, save_every=10**9, progress=False, seed=a.seed, num_workers=a.workers)
    c1 = clock()
    ev = evaluate_vqa(model, test, proc, use_pixels=a.init != 'blind')
    c2 = clock()
    prior = question_only_baseline(train.annotations(), test.annotations())
    out = dict(args=vars(a), train_cpu_s=c1[0] - c0[0], train_wall_s=c1[1] - c0[1], eval_cpu_s=c2[0] - c1[0],
               eval_wall_s=c2[1] - c1[1], accuracy=ev['accuracy'], per_type=ev['per_type'], n=ev['n'],
               prior_accuracy=prior['vqa_score'], last_log=res['log'][-1] if res['log'] else None)
    Path(a.out, 'result.json').write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != 'args'}, indent=1))


def probe(a):
    "MLM accuracy per word category on held-out captions, with the image and with a blank image; ITM on random / hard negatives."
    from pixelbert.synth import SynthCaptions, SHAPES, COLORS, SIZES, NUMBERS, PLURAL
    from pixelbert.pretraining import PixelBertForPreTraining, PretrainingCollator, mask_tokens
    proc, _ = processor_and_config({})
    m = PixelBertForPreTraining.from_pretrained(a.init).eval()
    tok = proc.tokenizer
    cats = {'color': set(COLORS), 'shape': set(SHAPES) | set(PLURAL.values()), 'size': set(SIZES),
            'number': set(NUMBERS) | {'0', '1', '2', '3', '4'}, 'relation': {'left', 'right', 'above', 'below'}}
    cat_of = {}
    for c, ws in cats.items():
        for w in ws:
            ids = tok(w, add_special_tokens=False)['input_ids']
            if len(ids) == 1: cat_of[ids[0]] = c
    ds = SynthCaptions('test', n_images=200, seed=0)
    col = PretrainingCollator(proc)
    g = torch.Generator().manual_seed(0)
    hits = {}
    with torch.no_grad():
        for s in range(0, 640, 64):
            b = col([ds[i] for i in range(s, s + 64)])
            ids, att = b['input_ids'], b['attention_mask']
            maskable = m.maskable(ids, att)
            # mask every content word once: one masked position per caption, chosen among content words
            for blank in (False, True):
                pv = b['pixel_values'] * 0 if blank else b['pixel_values']
                masked, labels = mask_tokens(ids, maskable, m.config.mask_token_id, m.config.vocab_size, 0.15, None, g)
                out = m(input_ids=masked, attention_mask=att, pixel_values=pv, pixel_mask=b['pixel_mask'], mlm_labels=labels, itm=False)
                for l, p in zip(out.mlm_labels.tolist(), out.mlm_logits.argmax(-1).tolist()):
                    k = (cat_of.get(l, 'other'), blank)
                    h, n = hits.get(k, (0, 0)); hits[k] = (h + (l == p), n + 1)
            # ITM: matched, random (shifted) and hard
            pos = m(**{k: b[k] for k in ('input_ids', 'attention_mask', 'pixel_values', 'pixel_mask')}, mlm=False, itm=False)
    res = {f"{c}{' (blank image)' if bl else ''}": round(h / n, 3) for (c, bl), (h, n) in sorted(hits.items())}
    # ITM accuracy split by negative kind
    itm = {}
    with torch.no_grad():
        b = col([ds[i] for i in range(0, 256)])
        enc = m.pixelbert
        def score(ids, att, pv, pm):
            o = enc(input_ids=ids, attention_mask=att, pixel_values=pv, pixel_mask=pm)
            l = m.itm(o.pooler_output); return (l[:, 1] - l[:, 0])
        sp = score(b['input_ids'], b['attention_mask'], b['pixel_values'], b['pixel_mask'])
        perm = torch.roll(torch.arange(256), 7)
        sr = score(b['input_ids'][perm], b['attention_mask'][perm], b['pixel_values'], b['pixel_mask'])
        sh = score(b['neg_input_ids'], b['neg_attention_mask'], b['pixel_values'], b['pixel_mask'])
        itm = dict(pos_acc=(sp > 0).float().mean().item(), random_neg_acc=(sr < 0).float().mean().item(),
                   hard_neg_acc=(sh < 0).float().mean().item(), pos_vs_random=(sp > sr).float().mean().item(),
                   pos_vs_hard=(sp > sh).float().mean().item())
    tp = token_probe(lambda pv, pm: m.pixelbert.encode_image(pv, pm), 200)
    print(json.dumps(dict(mlm=res, itm={k: round(v, 3) for k, v in itm.items()}, tokens={k: round(v, 3) for k, v in tp.items()})))

def token_probe(model_or_visual, n_images=300):
    "Linear probes (ridge, 70/30 split) for the colour and shape of the object in its most-covered pixel token."
    import numpy as np
    from pixelbert.synth import SynthCaptions, COLORS, SHAPES
    proc, _ = processor_and_config({})
    ds = SynthCaptions('val', n_images=n_images)
    X, yc, ys = [], [], []
    with torch.no_grad():
        for s in range(0, n_images, 50):
            scenes = ds.scenes[s:s + 50]
            b = proc(images=[sc.render(128) for sc in scenes])
            f = model_or_visual(b['pixel_values'], b['pixel_mask']).features
            for j, sc in enumerate(scenes):
                for oi, o in enumerate(sc.objects):
                    mask = torch.tensor(sc.object_mask(oi, 128), dtype=torch.float32)
                    c = int(torch.nn.functional.avg_pool2d(mask[None, None], 16)[0, 0].flatten().argmax())
                    X.append(f[j, c].float().numpy()); yc.append(list(COLORS).index(o.color)); ys.append(SHAPES.index(o.shape))
    X, yc, ys = np.array(X), np.array(yc), np.array(ys)
    tr = np.arange(len(X)) < int(0.7 * len(X))
    def probe(y, k):
        Y = np.eye(k)[y]; A = X[tr]
        W = np.linalg.solve(A.T @ A + np.eye(A.shape[1]), A.T @ Y[tr])
        return float(((X[~tr] @ W).argmax(1) == y[~tr]).mean())
    return dict(color_probe=probe(yc, 6), shape_probe=probe(ys, 4), n=len(X))

def backbone(a):
    from pixelbert.cli import pretrain_backbone
    from pixelbert.visual import VisualEncoder
    proc, cfg = processor_and_config(dict(pixel_position_embedding=True))
    c0 = clock()
    sd, log = pretrain_backbone(cfg, proc, a.out, n_images=a.images, steps=a.steps, batch_size=a.batch, lr=a.lr,
                                seed=a.seed, precision=a.precision, progress=False)
    c1 = clock()
    torch.save(sd, Path(a.out) / 'backbone.pt')
    torch.manual_seed(0)
    vis = VisualEncoder(cfg).eval(); vis.backbone.load_state_dict(sd)
    out = dict(args=vars(a), cpu_s=c1[0] - c0[0], wall_s=c1[1] - c0[1], last=log[-1], **token_probe(vis))
    Path(a.out, 'result.json').write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != 'args'}))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('what', choices=['pretrain', 'vqa', 'probe', 'backbone'])
    ap.add_argument('--out', required=True); ap.add_argument('--steps', type=int, default=1000)
    ap.add_argument('--batch', type=int, default=32); ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--backbone-lr', type=float, default=2e-2); ap.add_argument('--warmup', type=float, default=0.05)
    ap.add_argument('--decay-at', default=None, help="comma-separated fractions ('' for none; vqa default: the VQA schedule)")
    ap.add_argument('--images', type=int, default=None); ap.add_argument('--eval-images', type=int, default=500)
    ap.add_argument('--hard', type=float, default=0.5); ap.add_argument('--k', type=int, default=32)
    ap.add_argument('--pos', type=int, default=1); ap.add_argument('--wwm', action='store_true')
    ap.add_argument('--model', default='', help='config overrides k=json,k=json')
    ap.add_argument('--snapshots', default=''); ap.add_argument('--backbone', default=''); ap.add_argument('--init', default='scratch')
    ap.add_argument('--dropout', type=float, default=None)
    ap.add_argument('--precision', default='bf16'); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--workers', type=int, default=0); ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    if a.images is None: a.images = {'pretrain': 20000, 'backbone': 10000}.get(a.what, 1000)
    {'pretrain': pretrain, 'vqa': vqa, 'probe': probe, 'backbone': backbone}[a.what](a)

if __name__ == '__main__': main()
