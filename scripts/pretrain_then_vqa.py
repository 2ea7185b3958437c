"""The demo's pre-training stage, then its VQA run from the result: one `DemoConfig` variant, end to end (chapter 17, "Focused masking").

    python scripts/pretrain_then_vqa.py --out runs/focus_first --seed 1 --backbone runs/demo/backbone \\
        --set mlm_focus=colors focus_steps=300 focus_after=0 focus_itm=False mlm_after=0.43 mlm_ramp=0

`demo_pretrain` of `DemoConfig(seed=S, **settings)` (the CNN tag-trained first, or copied from `--backbone`, a demo run's
`backbone/` folder, so that variants start from the same CNN), then `demo_vqa`'s run from the pre-trained encoder (the
demo's 250 steps on 3,000 questions, scored on 1,500 test questions). Writes `OUT/result.json`: the held-out pre-training
accuracies (MLM, ITM, ITM on false twins), VQA accuracy overall and per type, and the seconds of each part. Float32 by default
(`--precision`), one thread (`--threads`): two runs fit a 2-core machine side by side (about 20 minutes each there).

With `--model DIR` (a saved pre-training model, e.g. a demo run's `pretrain/final`), pre-training is skipped and only the
VQA run is made, from that model (chapter 17, "The pooler": `--set vqa_fresh_pooler=True` against the default, which
copies the pre-trained pooler):

    python scripts/pretrain_then_vqa.py --out runs/pooler_fresh --seed 1 --model runs/demo/pretrain/final --set vqa_fresh_pooler=True

`--tasks vqa,nlvr2,retrieval` makes the demo's NLVR2 and retrieval runs too (scored as the demo scores them), and
`--set model.KEY=VALUE` changes one field of the model's configuration (chapter 17, "A deeper CNN"):

    python scripts/pretrain_then_vqa.py --out runs/deep --seed 1 --set model.backbone=tiny_cnn_deep --tasks vqa,nlvr2,retrieval
"""
import argparse, dataclasses, json, shutil, time, typing
from pathlib import Path
import torch

def parse_settings(pairs:list) -> dict:
    "`key=value` strings -> `DemoConfig` overrides, each value converted to its field's type (`model.KEY=VALUE`: one entry of its model dict); unknown keys are an error."
    from pixelbert.cli import DemoConfig
    fields = {f.name: f for f in dataclasses.fields(DemoConfig)}
    out = {}
    for p in pairs:
        k, eq, v = p.partition('=')
        if not eq: raise ValueError(f"--set takes key=value pairs; got {p!r}")
        if k.startswith('model.'):  # a model configuration field on top of DemoConfig.model, e.g. model.backbone=tiny_cnn_deep
            from pixelbert.config import PixelBertConfig
            name = k[len('model.'):]
            if not hasattr(PixelBertConfig.from_preset('tiny'), name): raise ValueError(f"unknown model configuration field {name!r}")
            try: val = json.loads(v)
            except json.JSONDecodeError: val = v  # a bare string
            out['model'] = {**out.get('model', DemoConfig().model), name: val}
            continue
        if k not in fields: raise ValueError(f"unknown DemoConfig field {k!r}")
        t = str(fields[k].type)
        if v == 'None' and 'None' in t: out[k] = None
        elif t.startswith('bool'):
            if v not in ('True', 'False'): raise ValueError(f"{k} takes True or False; got {v!r}")
            out[k] = v == 'True'
        elif t.startswith('int'): out[k] = int(v)
        elif t.startswith('float'): out[k] = float(v)
        elif t.startswith('str'): out[k] = v
        else: raise ValueError(f"{k} ({t}) cannot be set from the command line")
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', required=True); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--backbone', default=None, help="a demo run's backbone/ folder to start from (default: tag-train the CNN)")
    ap.add_argument('--model', default=None, help="a saved pre-training model: skip pre-training, make the --tasks runs from it")
    ap.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='DemoConfig fields, e.g. mlm_focus=colors focus_steps=200, or model configuration fields, e.g. model.backbone=tiny_cnn_deep')
    ap.add_argument('--tasks', default='vqa', help="the demo's fine-tuning runs to make, comma-separated: vqa, nlvr2, retrieval")
    ap.add_argument('--quick', action='store_true', help="DemoConfig.quick's sizes (tests)")
    ap.add_argument('--precision', default='fp32'); ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    try: settings = parse_settings(a.set)
    except ValueError as e: ap.error(str(e))
    tasks = a.tasks.split(',')
    if not tasks or set(tasks) - {'vqa', 'nlvr2', 'retrieval'}: ap.error(f"--tasks: choose from vqa, nlvr2, retrieval; got {a.tasks!r}")
    torch.set_num_threads(a.threads)
    from pixelbert.cli import DemoConfig, demo_pretrain, demo_vqa, demo_nlvr2, demo_retrieval
    from pixelbert.processing import PixelBertProcessor
    cfg = (DemoConfig.quick if a.quick else DemoConfig)(seed=a.seed, **settings)
    out = Path(a.out)
    if a.model and a.backbone: ap.error("--model skips pre-training; --backbone has nothing to start")
    if a.model and 'model' in settings: ap.error("--model brings its own configuration; --set model.KEY=VALUE has nothing to change")
    if a.backbone and not (out / 'backbone').exists():
        if not (Path(a.backbone) / 'backbone.safetensors').is_file(): ap.error(f"--backbone {a.backbone}: no backbone.safetensors there")
        shutil.copytree(a.backbone, out / 'backbone')
    t0 = time.time()
    if a.model:
        from pixelbert.cli import find_model_dir, load_processor
        from pixelbert.pretraining import PixelBertForPreTraining
        try: mdir = find_model_dir(a.model)
        except (OSError, ValueError) as e: ap.error(f"--model: {e}")
        proc, model, ev = load_processor(mdir), PixelBertForPreTraining.from_pretrained(mdir), None
    else:
        proc = PixelBertProcessor.from_preset(cfg.preset)
        model, ev, _ = demo_pretrain(cfg, proc, out, torch.device('cpu'), a.precision, progress=False)
    t1 = time.time()
    res = dict(settings=settings, seed=a.seed, precision=a.precision, threads=a.threads, backbone=a.backbone, model=a.model,
               pretrain={k: ev[k] for k in ('mlm_accuracy', 'itm_accuracy', 'mlm_majority_accuracy', 'twins')} if ev else None,
               pretrain_seconds=round(t1 - t0))
    cpu = torch.device('cpu')
    for task in tasks:
        t = time.time()
        if task == 'vqa':
            v = demo_vqa(cfg, model, proc, out, cpu, a.precision, progress=False, kinds=('vqa',))['runs']['vqa']['eval']
            res['vqa'] = dict(accuracy=v['accuracy'], per_type=v.get('per_type'))
        elif task == 'nlvr2':
            e = demo_nlvr2(cfg, model, proc, out, cpu, a.precision, progress=False)['eval']
            res['nlvr2'] = {k: e[k] for k in ('accuracy', 'predicted_true', 'majority_accuracy') if k in e}
        else:
            e = demo_retrieval(cfg, model, proc, out, cpu, a.precision, progress=False)['eval']
            res['retrieval'] = {k: e[k] for k in ('tr_r1', 'tr_r5', 'tr_r10', 'ir_r1', 'ir_r5', 'ir_r10') if k in e}
        res[f'{task}_seconds'] = round(time.time() - t)
    (out / 'result.json').write_text(json.dumps(res, indent=1, default=str))
    print(json.dumps(res, default=str))

if __name__ == '__main__': main()
