"""Which NLVR2 statements can the tiny model learn? Fine-tune on a subset of the synthetic statements, score per kind.

    python scripts/nlvr2_probe.py --model runs/demo/pretrain/final --kinds side_exists,both_exists --desc color \
        --lr 3e-4 --steps 400 --out runs/nlvr2_probe/color --json runs/nlvr2_probe/color.json

The demo's NLVR2 model answers every test pair the same way. This script asks whether that is the task mix or the
model: it keeps only the statements of the given kinds (`--kinds`, e.g. `side_exists,both_exists`) and, with
`--desc color`, only those whose every noun phrase names a colour alone ("a red object"; `--desc shape`: a shape
alone), from a larger draw of `SynthNLVR2` (train and test, world seed 0). It fine-tunes `PixelBertForNLVR2` from the
pre-trained encoder (or from scratch with `--scratch`) with the demo's recipe (`pixelbert.cli.finetune_task`, float32,
CNN channels-last) and reports test accuracy per statement kind beside the commoner label's rate.
"""
import argparse, json, time
from pathlib import Path
import torch
from pixelbert.cli import task_model, load_encoder, finetune_task, evaluate_task
from pixelbert.processing import PixelBertProcessor
from pixelbert.pretraining import PixelBertForPreTraining
from pixelbert.synth import SynthNLVR2, NLVR2_TEMPLATES, _statement_descs as descs  # every description a statement form mentions

ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument('--model', required=True, help='a pre-training final/ folder (model + processor)')
ap.add_argument('--kinds', default='', help='comma-separated statement kinds to keep (default: all)')
ap.add_argument('--desc', choices=('', 'color', 'shape'), default='', help='keep statements whose descriptions name only this attribute')
ap.add_argument('--pairs', type=int, default=2000, help='training pairs kept')
ap.add_argument('--test', type=int, default=500, help='test pairs kept')
ap.add_argument('--steps', type=int, default=400)
ap.add_argument('--batch', type=int, default=16, help='pairs per step')
ap.add_argument('--lr', type=float, default=3e-4, help='AdamW learning rate (the demo: 1e-3)')
ap.add_argument('--backbone-lr', type=float, default=1e-2, help='SGD learning rate of the CNN')
ap.add_argument('--scratch', action='store_true', help='a randomly initialised encoder instead of the pre-trained one')
ap.add_argument('--seed', type=int, default=0, help='data order and initialisation of the head')
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--out', required=True, help='run folder (log.jsonl, final/)')
ap.add_argument('--json', help='write the figures here')
a = ap.parse_args(); torch.set_num_threads(a.threads)
kinds = set(a.kinds.split(',')) if a.kinds else None
if kinds and not kinds <= set(NLVR2_TEMPLATES) | {'and'}:
    ap.error(f"unknown statement kinds {sorted(kinds - set(NLVR2_TEMPLATES) - {'and'})}; known: {sorted([*NLVR2_TEMPLATES, 'and'])}")

def keep(form):
    if kinds and form[0] not in kinds: return False
    if a.desc == 'color': return all(d.color is not None and d.shape is None and d.size is None for d in descs(form))
    if a.desc == 'shape': return all(d.shape is not None and d.color is None and d.size is None for d in descs(form))
    return True

class Subset(torch.utils.data.Dataset):
    "The kept items of a `SynthNLVR2`, in order."
    def __init__(self, split, n):
        draw = n * (1 if kinds is None and not a.desc else 8 if not a.desc else 25)
        while True:  # item i of SynthNLVR2(split, n) does not depend on n: a larger draw extends a smaller one
            self.ds = SynthNLVR2(split, n=draw, seed=0)
            self.idx = [i for i, (_, _, form) in enumerate(self.ds.items) if keep(form)][:n]
            if len(self.idx) == n or draw >= 200 * n: break
            draw *= 2
        if len(self.idx) < n: print(f"{split}: only {len(self.idx)} of {n} pairs kept from {draw}", flush=True)
    def __len__(self): return len(self.idx)
    def __getitem__(self, i): return self.ds[self.idx[i]]

t0 = time.perf_counter()
train, test = Subset('train', a.pairs), Subset('test', a.test)
true_share = sum(train.ds.items[i][1] for i in train.idx) / len(train)
print(f"{len(train)} training pairs ({true_share:.3f} true), {len(test)} test pairs", flush=True)
pre = PixelBertForPreTraining.from_pretrained(a.model)
proc = PixelBertProcessor.from_pretrained(a.model)
torch.manual_seed(a.seed + 1)  # as the demo's NLVR2 stage
model = task_model('nlvr2', pre.config)
if not a.scratch: load_encoder(model, pre)
log = finetune_task('nlvr2', model, train, proc, a.out, a.steps, a.batch, a.lr, a.backbone_lr, 0.1, a.seed, 'cpu', 'fp32',
                    True, False, 20, channels_last=True)
res = evaluate_task('nlvr2', model, test, proc, batch_size=32)
out = dict(command='python scripts/nlvr2_probe.py ' + ' '.join(f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items()
                                                               if v not in (None, '', False) and k != 'scratch') + (' --scratch' if a.scratch else ''),
           n_train=len(train), train_true_share=round(true_share, 4), seconds=round(time.perf_counter() - t0, 1),
           **{k: res[k] for k in ('accuracy', 'predicted_true', 'majority_accuracy', 'n')},
           per_kind=res.get('per_kind', {}), train_log=[dict(step=r['step'], loss=round(r['loss'], 4), accuracy=round(r['accuracy'], 4))
                                                         for r in log if 'accuracy' in r])
print(f"test accuracy {res['accuracy']:.3f} (commoner label {res['majority_accuracy']:.3f}, predicted True {res['predicted_true']:.2f})")
for k, s in out['per_kind'].items():
    print(f"  {k:12s} {s['accuracy']:.3f}  (n={s['n']}, commoner label {s['majority_accuracy']:.3f}, predicted True {s['predicted_true']:.2f})")
if a.json:
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1) + '\n')
