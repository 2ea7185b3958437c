"""The paper's pre-training ablation on the synthetic world: what each pre-training task and pixel sampling give.

    python scripts/ablations.py --out runs/ablations --backbone-from runs/demo/backbone     # every variant
    python scripts/ablations.py --out runs/ablations --variants itm,mlm                      # some of them
    python scripts/ablations.py --out runs/ablations --table nbs/ablation_results/results.json  # collect + print
    python scripts/ablations.py --out runs/ablations --rerun-retrieval                       # only the retrieval stage again

Each variant is the demo's pipeline (`pixelbert.cli.DemoConfig`, the README's main job) with one thing changed;
see `pixelbert.ablations.ABLATIONS`. `--backbone-from` starts every variant from the same tag-trained CNN (a
`pixelbert-demo` run's `backbone/` folder), so the variants differ only in pre-training.
"""
import argparse, json, shutil, sys
from pathlib import Path
import torch


def nlvr2_shares(csv, quick:bool) -> dict:
    "Share predicted True and the constant-answer accuracy, from a variant's NLVR2 predictions file (results written before run_ablation kept them)."
    from pixelbert.cli import DemoConfig
    from pixelbert.synth import SynthNLVR2
    from pixelbert.nlvr2 import nlvr2_metrics
    cfg = DemoConfig.quick() if quick else DemoConfig()
    test = SynthNLVR2('test', n=cfg.eval_nlvr2_pairs, seed=cfg.seed)
    said = dict(line.split(',') for line in Path(csv).read_text().split())
    assert len(said) == len(test), f"{csv}: {len(said)} predictions for {len(test)} test pairs"
    ids = [test.identifier(i) for i in range(len(test))]
    if not set(ids) <= said.keys():  # predictions written before the synthetic identifiers took the official form
        ids = [f"synth-test-{i}-0" for i in range(len(test))]
    m = nlvr2_metrics(ids, [said[i] == 'True' for i in ids], [bool(test[i].label) for i in range(len(test))])
    return {k: round(m[k], 4) for k in ('predicted_true', 'majority_accuracy')}


def main(argv=None):
    from pixelbert.ablations import ABLATIONS, run_ablation, ablation_table, rerun_retrieval
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default='runs/ablations', help='one folder per variant inside (default: runs/ablations)')
    ap.add_argument('--variants', default=','.join(ABLATIONS), help=f"comma-separated, of {', '.join(ABLATIONS)}")
    ap.add_argument('--backbone-from', default=None, help="a demo run's backbone/ folder to start every variant from")
    ap.add_argument('--quick', action='store_true', help='DemoConfig.quick(): every stage on tiny data (a smoke test)')
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: as torch chooses)')
    ap.add_argument('--rerun-retrieval', action='store_true', help="redo only the retrieval stage of finished variants, from their saved pre-trained models")
    ap.add_argument('--table', default=None, help='collect the variants found in --out into this JSON file and print the table')
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    out = Path(a.out)
    if a.table:
        found = {v: json.loads((out/v/'result.json').read_text()) for v in ABLATIONS if (out/v/'result.json').exists()}
        for v, r in found.items():
            if 'predicted_true' not in r['nlvr2']: r['nlvr2'].update(nlvr2_shares(out/v/'nlvr2'/'test_predictions.csv', r['quick']))
        Path(a.table).parent.mkdir(parents=True, exist_ok=True)
        Path(a.table).write_text(json.dumps(found, indent=1) + '\n')
        print(ablation_table(found))
        return
    for v in a.variants.split(','):
        if v not in ABLATIONS: sys.exit(f"unknown variant {v!r}; choose from {', '.join(ABLATIONS)}")
        if a.backbone_from:
            dst = out/v/'backbone'
            if not dst.exists(): shutil.copytree(a.backbone_from, dst)
        res = (rerun_retrieval if a.rerun_retrieval else run_ablation)(v, out/v, quick=a.quick)
        print(json.dumps({k: res[k] for k in ('variant', 'seconds', 'pretrain', 'vqa', 'nlvr2', 'retrieval', 'grounding')}), flush=True)


if __name__ == '__main__': main()
