"""Pre-training on frozen, cached pixel tokens: which recipe teaches colour and shape words to read the image?

    python scripts/cached_pretraining.py --out runs/cached/base.json
    python scripts/cached_pretraining.py --content 1 --out runs/cached/content.json      # mask one content word per caption
    python scripts/cached_pretraining.py --hard 0.5 --out runs/cached/hard.json         # half the ITM negatives: own image, false twin
    python scripts/cached_pretraining.py --pool 2 --content 1 --out runs/cached/pool2.json  # 16 pixel tokens instead of 64
    python scripts/cached_pretraining.py --color-first 600 --content 1 --out runs/cached/color_first.json  # ITM against colour swaps first
    python scripts/cached_pretraining.py --first-objects 1:600 --content 1 --mlm-after 0 --mlm-ramp 0.1 --out runs/cached/one_first.json  # one-object scenes first

The visual encoder of a pre-trained model (`--visual`, e.g. the demo's `pretrain/final`) is frozen and its pixel tokens
computed once; a fresh transformer and heads then pre-train on them with the demo's recipe (ITM alone for the first
`--mlm-after` of the run, then MLM ramped in; AdamW `--lr`, 5% warm-up, 10x decay at 80%; k sampled pixels from the
model's configuration). Every `--every` steps it prints held-out ITM accuracy and, for each kind of content word
(colour, shape, size, number, relation), how often one masked word of that kind is restored with the caption's own
image and with another caption's image (`_wrong_image`): the gap is what the word takes from the image. The ITM head
also ranks each held-out caption against its colour-swapped false twin on the caption's image (`itm_color_swap`,
chance 0.5): the plainest test of whether a colour word is bound to its object. At the end it
fine-tunes VQA on cached tokens from the result (`scripts/vqa_plateau.py`'s loop, `--vqa-steps` at `--vqa-lr`) and
writes everything to `--out`. One thread by default: two runs fit this 2-core machine side by side (about 12 min each).
"""
import argparse, json, time, sys, collections
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from pixelbert.processing import PixelBertProcessor
from pixelbert.pretraining import PixelBertForPreTraining, mask_tokens, focus_mask
from pixelbert.visual import VisualOutput
from pixelbert.synth import SynthCaptions, SynthVQA, COLORS, SHAPES, SIZES, NUMBERS, PLURAL
ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument('--visual', default='runs/demo/pretrain/final', help='a pre-training final/ folder: its visual encoder and processor')
ap.add_argument('--steps', type=int, default=1500); ap.add_argument('--every', type=int, default=250)
ap.add_argument('--images', type=int, default=5000); ap.add_argument('--batch', type=int, default=32)
ap.add_argument('--lr', type=float, default=3e-4)
ap.add_argument('--content', type=float, default=0.0, help='share of captions that get one content word masked on top of the 15%%')
ap.add_argument('--mlm-after', type=float, default=0.4); ap.add_argument('--mlm-ramp', type=float, default=0.2)
ap.add_argument('--hard', type=float, default=0.0, help='share of ITM negatives that pair the image with a false twin of its caption')
ap.add_argument('--vqa-steps', type=int, default=500)
ap.add_argument('--vqa-lr', type=float, default=3e-4)
ap.add_argument('--vqa-images', type=int, default=1000, help='VQA training images, 3 questions each (the demo: 1000)')
ap.add_argument('--test-images', type=int, default=300, help='held-out images of the caption and VQA tests')
ap.add_argument('--pool', type=int, default=1, help='max-pool the token grid by this factor (2: 16 tokens)')
ap.add_argument('--color-first', type=int, default=0, help="the first S steps: ITM alone on captions that have a colour-swapped false twin, with that twin as every negative")
ap.add_argument('--first-objects', default='', help="N:S: the first S steps draw captions of scenes with at most N objects only (e.g. 1:600)")
ap.add_argument('--focus', default='', help="KIND:S: the first S steps are MLM alone on one masked word of KIND (color, shape, size, number, relation, or several joined by +) per caption that has one, no ITM (e.g. color:800, color+shape:800)")
ap.add_argument('--out', required=True); ap.add_argument('--threads', type=int, default=1)
a = ap.parse_args(); torch.set_num_threads(a.threads)
most, first_steps = 0, 0
focus_kind, focus_steps = '', 0
if a.focus:
    try: focus_kind, focus_steps = a.focus.split(':')[0], int(a.focus.split(':')[1])
    except (ValueError, IndexError): ap.error(f"--focus takes KIND:S, e.g. color:800; got {a.focus!r}")
    kinds = ('color', 'shape', 'size', 'number', 'relation')
    if bad := [k for k in focus_kind.split('+') if k not in kinds]: ap.error(f"--focus: unknown word kind(s) {bad}; choose from {list(kinds)}")
if a.first_objects:
    try: most, first_steps = (int(x) for x in a.first_objects.split(':'))
    except ValueError: ap.error(f"--first-objects takes N:S (objects, steps), e.g. 1:600; got {a.first_objects!r}")
t0 = time.perf_counter()
proc = PixelBertProcessor.from_pretrained(a.visual); tok = proc.tokenizer
pre = PixelBertForPreTraining.from_pretrained(a.visual).eval()
cfg = pre.config; cfg.itm_hard_negatives = a.hard
torch.manual_seed(0)
m = PixelBertForPreTraining(cfg)
m.pixelbert.visual.load_state_dict(pre.pixelbert.visual.state_dict())
for p in m.pixelbert.visual.parameters(): p.requires_grad_(False)

def cache(scenes):
    "Pixel tokens (n, p, d) of `scenes` from the frozen visual encoder (max-pooled by `--pool`), and their grid."
    out = []
    with torch.no_grad():
        for s in range(0, len(scenes), 200):
            b = proc(images=[sc.render(128) for sc in scenes[s:s+200]])
            v = pre.pixelbert.encode_image(b['pixel_values'], b['pixel_mask'])
            f = v.features
            if a.pool > 1:  # max-pool the token grid
                h = v.grid[0]; f = torch.nn.functional.max_pool2d(f.reshape(f.shape[0], h, h, -1).permute(0,3,1,2), a.pool).flatten(2).transpose(1,2)
            out.append(f)
    f = torch.cat(out); g = int(f.shape[1] ** .5)
    return f, (g, g)

train, test = SynthCaptions('train', n_images=a.images, seed=0), SynthCaptions('test', n_images=a.test_images, seed=0)
ftr, grid = cache(train.scenes); fte, _ = cache(test.scenes)
print(f"cached {len(ftr)}+{len(fte)} images, grid {grid}, {time.perf_counter()-t0:.0f}s", flush=True)
cur = {}  # the feature table the current batch indexes: `pixel_values` carries scene indices, not pixels
def enc(pv, pm=None):
    "Stands in for `encode_image`: look the batch's scenes up in the cached tokens."
    f = cur['f'][pv.long()]
    return VisualOutput(features=f, mask=torch.ones(f.shape[:2], dtype=torch.bool), grid=grid)
m.pixelbert.encode_image = enc

content_ids = torch.zeros(len(tok), dtype=torch.bool)
words = {'color': list(COLORS), 'shape': list(SHAPES) + [PLURAL[s] for s in SHAPES], 'size': list(SIZES),
         'number': list(NUMBERS), 'relation': ['left', 'right', 'above', 'below']}
kind_ids = {k: torch.tensor(tok.convert_tokens_to_ids(v)) for k, v in words.items()}
for v in kind_ids.values(): content_ids[v] = True
focus_table = torch.zeros(len(tok), dtype=torch.bool)  # `--focus`: the ids of the chosen kinds' words
for k in focus_kind.split('+') if focus_kind else []: focus_table[kind_ids[k]] = True

def color_twin(cap, negs):
    "The false twin of `cap` that differs from it in one colour word only, or None."
    w = cap.split()
    for ng in negs:
        v = ng.split()
        d = [i for i, (x, y) in enumerate(zip(w, v)) if x != y] if len(v) == len(w) else []
        if len(d) == 1 and w[d[0]] in COLORS and v[d[0]] in COLORS: return ng
    return None

def color_twins(ds):
    "Caption index -> its colour-swapped twin, for every caption of `ds` that has one."
    out = {}
    for j in range(len(ds)):
        i, k = divmod(j, ds.captions_per_image); cap, ng, _ = ds.captions(i)[k]
        if (tw := color_twin(cap, ng)) is not None: out[j] = tw
    return out

def batch_of(ds, idx, feats, twins=None):
    "A pre-training batch of captions `idx` of `ds` (with each caption's first false twin, or its `twins` entry), its images as scene indices."
    caps, negs, imgs = [], [], []
    for j in idx:
        i, k = divmod(j, ds.captions_per_image); cap, ng, _ = ds.captions(i)[k]
        caps.append(cap); negs.append(twins[j] if twins is not None else ng[0] if ng else cap); imgs.append(i)
    t = tok(caps, padding=True, return_tensors='pt'); n = tok(negs, padding=True, return_tensors='pt')
    cur['f'] = feats
    return dict(input_ids=t['input_ids'], attention_mask=t['attention_mask'], pixel_values=torch.tensor(imgs),
                image_group=torch.tensor(imgs), neg_input_ids=n['input_ids'], neg_attention_mask=n['attention_mask'])

def content_mask(b, g):
    "BERT's masking of the batch, plus (`--content`) one content word of each chosen caption always replaced by [MASK]."
    ids, att = b['input_ids'], b['attention_mask']
    masked, labels = mask_tokens(ids, m.maskable(ids, att), cfg.mask_token_id, cfg.vocab_size, cfg.mlm_probability, None, g)
    if a.content > 0:
        cand = content_ids[ids] & att.bool()
        sc = torch.rand(ids.shape, generator=g).masked_fill(~cand, 2.0)
        pick = sc.argmin(1); has = cand.any(1) & (torch.rand(len(ids), generator=g) < a.content)
        rows = torch.nonzero(has).flatten(); cols = pick[rows]
        labels[rows, cols] = ids[rows, cols]; masked[rows, cols] = cfg.mask_token_id
    return masked, labels

@torch.no_grad()
def evaluate():
    "Held-out ITM accuracy, and per word kind: one such word masked per caption, restored with its own / another image."
    m.eval(); res = {}
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(test), generator=g)[:512].tolist()
    hits = collections.defaultdict(list); itm = []
    for s in range(0, len(idx), 128):
        b = batch_of(test, idx[s:s+128], fte)
        o = m(**{k: v for k, v in b.items() if not k.startswith('neg')}, mlm=False, generator=g)
        itm.append(o.itm_accuracy.item())
        ids = b['input_ids']
        for kind, kid in kind_ids.items():
            isk = torch.isin(ids, kid)
            rows = torch.nonzero(isk.any(1)).flatten()
            if len(rows) == 0: continue
            col = torch.where(isk[rows], torch.rand(isk[rows].shape, generator=g), torch.tensor(-1.)).argmax(1)
            for shuffled in (False, True):
                x = ids[rows].clone(); x[torch.arange(len(rows)), col] = cfg.mask_token_id
                pv = b['pixel_values'][rows]; pv = pv.roll(1) if shuffled else pv
                h = m.pixelbert(input_ids=x, attention_mask=b['attention_mask'][rows], pixel_values=None, image_embeds=enc(pv).features,
                                image_mask=torch.ones(len(rows), grid[0]*grid[1], dtype=torch.bool), image_grid=grid).last_hidden_state
                pred = m.mlm(h[torch.arange(len(rows)), col]).argmax(-1)
                hits[(kind, shuffled)] += (pred == ids[rows, col]).tolist()
    # ITM between each held-out caption and its colour-swapped twin, on the caption's image: does the true one score higher?
    js = [j for j in idx if j in test_twins][:256]
    if js:
        b = batch_of(test, js, fte, test_twins)
        def p_match(ids, att):
            h = m.pixelbert(input_ids=ids, attention_mask=att, pixel_values=None, image_embeds=enc(b['pixel_values']).features,
                            image_mask=torch.ones(len(js), grid[0]*grid[1], dtype=torch.bool), image_grid=grid).pooler_output
            return m.itm(h).softmax(-1)[:, 1]
        pt, pf = p_match(b['input_ids'], b['attention_mask']), p_match(b['neg_input_ids'], b['neg_attention_mask'])
        res['itm_color_swap'] = round(((pt > pf).float() + 0.5 * (pt == pf).float()).mean().item(), 3)  # a tie is half right
        res['color_swap_pairs'] = len(js)
    m.train()
    res['itm'] = round(sum(itm)/len(itm), 3)
    for (kind, sh), v in sorted(hits.items()): res[f"{kind}{'_wrong_image' if sh else ''}"] = round(sum(v)/len(v), 3)
    return res

params = [p for p in m.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)
g = torch.Generator().manual_seed(0)
warm, start, ramp = int(.05*a.steps), int(a.mlm_after*a.steps), int(a.mlm_ramp*a.steps)
curve = []
test_twins = color_twins(test)
twins = color_twins(train) if a.color_first else {}
twin_keys = list(twins)  # the captions the colour phase draws from
if a.color_first: print(f"first {a.color_first} steps: ITM on {len(twins)} captions against their colour-swapped twins", flush=True)
small = list(range(len(train)))
if first_steps:
    small = [j for j in range(len(train)) if len(train.scenes[j // train.captions_per_image].objects) <= most]
    if not small: ap.error(f"no training scene has at most {most} objects")
    print(f"first {first_steps} steps: {len(small)} captions of scenes with at most {most} object{'s' if most != 1 else ''}", flush=True)
for step in range(1, a.steps + 1):
    lr = a.lr * min(1, step / max(warm, 1)) * (0.1 if step > 0.8 * a.steps else 1)
    for pg in opt.param_groups: pg['lr'] = lr
    colour_phase = step <= a.color_first
    if colour_phase: idx = [twin_keys[j] for j in torch.randint(len(twin_keys), (a.batch,), generator=g).tolist()]
    elif step <= first_steps: idx = [small[j] for j in torch.randint(len(small), (a.batch,), generator=g).tolist()]
    else: idx = torch.randint(len(train), (a.batch,), generator=g).tolist()
    b = batch_of(train, idx, ftr, twins if colour_phase else None)
    m.config.itm_hard_negatives = 1.0 if colour_phase else a.hard
    if step <= focus_steps:
        masked, labels = focus_mask(b['input_ids'], focus_table, cfg.mask_token_id, b['attention_mask'], generator=g); b['input_ids'] = masked
        kw = dict(mlm_labels=labels, itm=False)
    elif colour_phase or step < start: kw = dict(mlm=False)
    else:
        masked, labels = content_mask(b, g); b['input_ids'] = masked
        kw = dict(mlm_labels=labels, mlm_weight=min(1.0, (step - start + 1) / (ramp + 1)))
    if not a.hard and not colour_phase: b.pop('neg_input_ids'); b.pop('neg_attention_mask')
    o = m(**b, generator=g, **kw)
    opt.zero_grad(); o.loss.backward(); opt.step()
    if step % a.every == 0 or step == a.steps:
        r = evaluate(); r['step'] = step; r['s'] = round(time.perf_counter() - t0); curve.append(r); print(r, flush=True)

# VQA on cached tokens from this transformer
import vqa_plateau as VP
from pixelbert.vqa import AnswerVocab
vtr, vte = SynthVQA('train', n_images=a.vqa_images, seed=0), SynthVQA('test', n_images=a.test_images, seed=0)
vocab = AnswerVocab.build([q[2] for q in vtr.items])
def vcache(ds):
    f, _ = cache(ds.scenes); return {i: f[i] for i in range(len(f))}
del m.pixelbert.encode_image
vq = VP.train_cached(m, proc, vocab, vtr, vte, vcache(vtr), vcache(vte), lambda ds, q: True, a.vqa_steps, a.vqa_lr, 125, 32, False)
Path(a.out).parent.mkdir(parents=True, exist_ok=True)
json.dump(dict(args=vars(a), curve=curve, vqa=vq, seconds=round(time.perf_counter()-t0)), open(a.out, 'w'), indent=1)
