"""Why the demo's VQA model answers colour and shape questions like the question-only model: a diagnosis.

    python scripts/vqa_plateau.py --model runs/demo/pretrain/final --json runs/vqa_plateau.json

Three measurements on a pre-trained tiny Pixel-BERT (any `pixelbert-pretrain` / `pixelbert-demo` `final/` folder):

1. *Is colour in the pixel tokens?* A ridge probe (70/30 split) of the object's colour and shape from the pixel
   tokens of single-object VQA images, mean-pooled and max-pooled. A high max-pool score says the visual encoder
   hands the transformer what it needs; the question is whether attention learns to fetch it. A second probe
   reads every object (scenes of 1-4 objects) from the single token at its centre.
2. *Does attention learn to fetch it?* The visual encoder is frozen and its tokens computed once (so thousands of
   steps take minutes); the transformer and a new VQA head are trained with AdamW (`--lr`) on
   (a) the colour questions of single-object scenes only, (b) every question of the demo's VQA training set,
   each from the pre-trained transformer and from a freshly initialised one. Test accuracy per question type is
   printed every `--every` steps: a flat stretch at the answer prior followed by a jump is the plateau.
3. The answer prior (the most common training answer per question) for reference.

Everything runs on the synthetic world's VQA splits with the demo's sizes (`--images` training images, 3
questions each). Threads: `--threads` (default 1). `--single-steps 0 --all-steps 0` measures the probes alone.

With plenty of labelled data, how long does the plateau last? (chapter 15: two runs, one core each)

    python scripts/vqa_plateau.py --model runs/demo/pretrain/final --images 10000 --single-steps 0 --all-steps 4000 --every 250 --starts fresh --json F
    python scripts/vqa_plateau.py --model runs/demo/pretrain/final --images 10000 --single-steps 0 --all-steps 4000 --every 250 --starts pretrained --json F

Which questions, in what order? A third run, `custom`, trains on the questions `--types` and `--objects` choose (its test
questions too), with batches by `--schedule` (chapter 15 has four of them):

    python scripts/vqa_plateau.py --model runs/demo/pretrain/final --images 10000 --single-steps 0 --all-steps 0 --custom-steps 1500 --types color --starts fresh --every 100 --json F
    python scripts/vqa_plateau.py --model runs/demo/pretrain/final --images 10000 --single-steps 0 --all-steps 0 --custom-steps 1500 --schedule first:color:600 --starts fresh --every 100 --json F
"""
import argparse, collections, json, time
from pathlib import Path
import numpy as np
import torch


def token_features(model, proc, ds):
    "Pixel tokens (b, p, d) of every scene of `ds`, from the frozen visual encoder, keyed by scene index."
    feats = {}
    with torch.no_grad():
        for s in range(0, len(ds.scenes), 100):
            b = proc(images=[sc.render(ds.image_size) for sc in ds.scenes[s:s + 100]])
            f = model.pixelbert.encode_image(b['pixel_values'], b['pixel_mask']).features
            for k in range(f.shape[0]): feats[s + k] = f[k]
    return feats


def ridge_probe(X, y, k):
    "Held-out accuracy of a ridge classifier (70/30 split) of labels `y` in 0..k-1 from rows of `X`."
    X, y = np.asarray(X), np.asarray(y)
    tr = np.arange(len(X)) < int(0.7 * len(X))
    W = np.linalg.solve(X[tr].T @ X[tr] + np.eye(X.shape[1]), X[tr].T @ np.eye(k)[y[tr]])
    return float(((X[~tr] @ W).argmax(1) == y[~tr]).mean())


def probe(pairs):
    "Colour and shape of the one object of single-object scenes, from mean- and max-pooled pixel tokens; `pairs`: (tokens, scene)."
    from pixelbert.synth import COLORS, SHAPES
    colors, shapes = list(COLORS), list(SHAPES)
    rows = [(f.mean(0).numpy(), f.max(0).values.numpy(), colors.index(sc.objects[0].color), shapes.index(sc.objects[0].shape))
            for f, sc in pairs if len(sc.objects) == 1]
    mean, mx, yc, ys = zip(*rows)
    return dict(n=len(rows), color_mean_pool=ridge_probe(mean, yc, len(colors)), color_max_pool=ridge_probe(mx, yc, len(colors)),
                shape_mean_pool=ridge_probe(mean, ys, len(shapes)), shape_max_pool=ridge_probe(mx, ys, len(shapes)))


def object_probe(pairs):
    "Colour, shape and size of every object (scenes of 1-4 objects) from the one pixel token at the object's centre."
    from pixelbert.synth import COLORS, SHAPES, SIZES
    rows = []
    for f, sc in pairs:
        g = int(round(f.shape[0] ** .5))  # square token grid
        for o in sc.objects:
            rows.append((f[min(int(o.y * g), g - 1) * g + min(int(o.x * g), g - 1)].numpy(), list(COLORS).index(o.color),
                         SHAPES.index(o.shape), list(SIZES).index(o.size)))
    X, yc, ys, yz = zip(*rows)
    return dict(objects=len(rows), color=ridge_probe(X, yc, len(COLORS)), shape=ridge_probe(X, ys, len(SHAPES)),
                size=ridge_probe(X, yz, len(SIZES)))


def batches(items, schedule, batch, generator):
    "Step -> the training questions of that step: 'mixed' (drawn from all), 'blocked' (one question type per batch, types in\n    turn) or 'first:TYPE:N' (only questions of TYPE for the first N steps, then all)."
    by_type = collections.defaultdict(list)
    for q in items: by_type[q[3]].append(q)
    types = sorted(by_type)
    def pool(step):
        if schedule == 'mixed': return items
        if schedule == 'blocked': return by_type[types[step % len(types)]]
        kind, t, n = schedule.split(':')
        if kind != 'first' or t not in by_type: raise ValueError(f"schedule {schedule!r}: use mixed, blocked or first:TYPE:N with a type of {types}")
        return by_type[t] if step <= int(n) else items
    def draw(step):
        p = pool(step)
        return [p[i] for i in torch.randint(len(p), (batch,), generator=generator).tolist()]
    return draw


def train_cached(pre, proc, vocab, train, test, ftr, fte, keep, steps, lr, every, batch, fresh, seed=0, schedule='mixed', init_range=None):
    "Train transformer + VQA head on cached pixel tokens (batches by `schedule`, see `batches`); returns the test curve."
    from pixelbert.vqa import vqa_config, PixelBertForVQA
    from pixelbert.metrics import vqa_accuracy
    tr_items = [q for q in train.items if keep(train, q)]
    te_items = [q for q in test.items if keep(test, q)]
    cfg = vqa_config(pre.config, vocab)
    if init_range is not None: cfg.initializer_range = init_range  # std of the normal init of a fresh transformer and head
    torch.manual_seed(seed)
    m = PixelBertForVQA(cfg)
    if not fresh:
        own = {k[len('pixelbert.'):]: v for k, v in pre.state_dict().items() if k.startswith('pixelbert.')}
        m.pixelbert.load_state_dict(own)
    params = [p for n, p in m.named_parameters() if not n.startswith('pixelbert.visual')]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    tok = proc.tokenizer

    def forward(items, feats, labels=None):
        t = tok([q[1] for q in items], padding=True, return_tensors='pt')
        return m(t['input_ids'], t['attention_mask'], image_embeds=torch.stack([feats[q[0]] for q in items]), labels=labels)

    def evaluate():
        m.eval(); res = collections.defaultdict(list)
        with torch.no_grad():
            for s in range(0, len(te_items), 128):
                items = te_items[s:s + 128]
                for q, k in zip(items, forward(items, fte).logits.argmax(1).tolist()):
                    res[q[3]].append(vqa_accuracy(vocab.decode(k), q[2]))
        m.train()
        every_q = [x for v in res.values() for x in v]
        return sum(every_q) / len(every_q), {t: sum(v) / len(v) for t, v in sorted(res.items())}

    g, curve = torch.Generator().manual_seed(seed), []
    draw = batches(tr_items, schedule, batch, g)
    for step in range(1, steps + 1):
        items = draw(step)
        for pg in opt.param_groups: pg['lr'] = lr * min(1.0, step / 50)  # 50 warm-up steps, then constant
        loss = forward(items, ftr, torch.stack([vocab.soft_target(q[2], 10) for q in items])).loss
        opt.zero_grad(); loss.backward(); opt.step()
        if step % every == 0:
            acc, per = evaluate(); curve.append(dict(step=step, accuracy=round(acc, 3), per_type={t: round(v, 3) for t, v in per.items()}))
            print(f"    step {step:5d}  test {acc:.3f}  " + '  '.join(f"{t} {v:.2f}" for t, v in per.items()), flush=True)
    return dict(n_train=len(tr_items), n_test=len(te_items), curve=curve)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', required=True, help='a pre-training final/ folder (model + processor)')
    ap.add_argument('--images', type=int, default=1000, help='VQA training images, 3 questions each (the demo: 1000)')
    ap.add_argument('--test-images', type=int, default=300)
    ap.add_argument('--single-steps', type=int, default=800, help='steps on single-object colour questions')
    ap.add_argument('--all-steps', type=int, default=1600, help='steps on every question')
    ap.add_argument('--lr', type=float, default=3e-4); ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--every', type=int, default=100); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--starts', default='pretrained,fresh', help="which transformers to train: 'pretrained', 'fresh' or both")
    ap.add_argument('--custom-steps', type=int, default=0, help='steps of a third run on the questions chosen by --types and --objects')
    ap.add_argument('--types', default='all', help="question types of the custom run, e.g. 'color' or 'color,shape' ('all': every type)")
    ap.add_argument('--objects', default='1-4', help='objects per scene in the custom run, e.g. 2-2')
    ap.add_argument('--schedule', default='mixed', help="custom run's batches: mixed, blocked (one type per batch) or first:TYPE:N")
    ap.add_argument('--init-range', type=float, default=None, help="std of the fresh transformer's normal init (default: the model config's, BERT's 0.02)")
    ap.add_argument('--json', default=None, help='write every figure here')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from pixelbert.processing import PixelBertProcessor
    from pixelbert.pretraining import PixelBertForPreTraining
    from pixelbert.synth import SynthVQA, question_only_baseline
    from pixelbert.vqa import AnswerVocab
    proc, pre = PixelBertProcessor.from_pretrained(a.model), PixelBertForPreTraining.from_pretrained(a.model).eval()
    train, test = SynthVQA('train', n_images=a.images, seed=0), SynthVQA('test', n_images=a.test_images, seed=0)
    vocab = AnswerVocab.build([q[2] for q in train.items])
    t0 = time.perf_counter()
    ftr, fte = token_features(pre, proc, train), token_features(pre, proc, test)
    pairs = [(fte[i], sc) for i, sc in enumerate(test.scenes)] + [(ftr[i], sc) for i, sc in enumerate(train.scenes)]
    out = dict(model=a.model, args=vars(a), probe=probe(pairs), object_probe=object_probe(pairs),
               answer_prior=question_only_baseline(train.annotations(), test.annotations())['vqa_score'])
    print('1. probe of the frozen pixel tokens (single-object scenes):', {k: round(v, 3) if isinstance(v, float) else v for k, v in out['probe'].items()})
    print('   the token at each object\'s centre (every scene):', {k: round(v, 3) if isinstance(v, float) else v for k, v in out['object_probe'].items()})
    print(f"   answer prior (most common training answer per question): {out['answer_prior']:.3f}")
    single = lambda ds, q: q[3] == 'color' and len(ds.scenes[q[0]].objects) == 1
    lo, hi = map(int, a.objects.split('-'))
    custom = lambda ds, q: (a.types == 'all' or q[3] in a.types.split(',')) and lo <= len(ds.scenes[q[0]].objects) <= hi
    runs = [('single_object_color', single, a.single_steps, 'mixed'), ('all_questions', lambda ds, q: True, a.all_steps, 'mixed'),
            ('custom', custom, a.custom_steps, a.schedule)]
    for name, keep, steps, schedule in runs:
        if steps <= 0: continue
        for fresh in [s == 'fresh' for s in a.starts.split(',')]:
            label = f"{name}/{'fresh' if fresh else 'pretrained'}"
            print(f"2. {label}: {steps} steps, lr {a.lr}, {schedule} batches", flush=True)
            out[label] = train_cached(pre, proc, vocab, train, test, ftr, fte, keep, steps, a.lr, a.every, a.batch, fresh, schedule=schedule, init_range=a.init_range)
    out['seconds'] = round(time.perf_counter() - t0, 1)
    if a.json: Path(a.json).parent.mkdir(parents=True, exist_ok=True); Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == '__main__': main()
