"""Minimal pairs for a pre-trained model: does its ITM head prefer each held-out caption to the caption's false twins?

    python scripts/itm_twins.py --model runs/demo/pretrain/final --json runs/itm_twins.json

Each held-out caption of the synthetic world (`SynthCaptions('test')`) has up to three false twins with one colour,
shape, size, count or relation changed. `pixelbert.pretraining.evaluate_twins` puts the caption and each twin on the
caption's image and counts how often the ITM head gives the true caption the higher match probability, per kind of
edit (chance 0.5, a tie counting half). The same is measured for an untrained model of the same configuration, the
floor. `pixelbert-demo` reports it too, as `pretrain.itm_twins`; the demo's k=32 run kept in demo_results/k32_run/
predates that, so its figures (demo_results/itm_twins.json) come from this script.
"""
import argparse, json, time
from pathlib import Path
import torch
from pixelbert.processing import PixelBertProcessor
from pixelbert.pretraining import PixelBertForPreTraining, evaluate_twins
from pixelbert.synth import SynthCaptions

ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument('--model', required=True, help='a pre-training final/ folder (model + processor)')
ap.add_argument('--images', type=int, default=300, help='held-out scenes, 5 captions each')
ap.add_argument('--max-items', type=int, default=1000, help='captions to score')
ap.add_argument('--seed', type=int, default=0, help='world seed')
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--json', help='write the figures here')
a = ap.parse_args(); torch.set_num_threads(a.threads)
t0 = time.perf_counter()
proc = PixelBertProcessor.from_pretrained(a.model)
model = PixelBertForPreTraining.from_pretrained(a.model)
torch.manual_seed(a.seed)
untrained = PixelBertForPreTraining(model.config)
held = SynthCaptions('test', n_images=a.images, seed=a.seed)
res = dict(model=a.model, args=vars(a))
for name, m in (('pretrained', model), ('untrained', untrained)):
    r = evaluate_twins(m, held, proc, max_items=a.max_items)
    res[name] = r
    print(f"{name:10s} " + '  '.join(f"{k} {v:.3f}" for k, v in r.items() if k != 'pairs') + f"   pairs {r['pairs']}", flush=True)
res['seconds'] = round(time.perf_counter() - t0, 1)
if a.json:
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=1) + '\n')
