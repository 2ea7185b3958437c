"""Measured grounding: the pointing game (pixelbert.attention.pointing_game) for a pre-trained tiny Pixel-BERT
against the same model before training, per layer and for attention rollout, with the chance rate.

    python scripts/grounding.py --steps 800 --out runs/grounding       # pre-train with pixelbert-pretrain, then measure
    python scripts/grounding.py --model runs/grounding                   # measure a pixelbert-pretrain run (or its final/)
    python scripts/grounding.py --model DIR --json grounding.json        # any save_pretrained folder with its processor

The untrained model is built exactly as `pixelbert-pretrain` builds its starting point (same configuration, same
`--seed`), so the difference between the two columns is the pre-training alone. Evaluation uses the synthetic
world's `val` split (captions and VQA questions that name one object by its shape), disjoint from training.
"""
import argparse, json, sys, time
from pathlib import Path
import torch


def untrained_like(model, seed:int):
    "A `PixelBertModel` initialised as `pixelbert-pretrain --seed seed` initialises the pre-training model."
    from pixelbert.pretraining import PixelBertForPreTraining
    config = model.config.__class__(**model.config.to_dict())
    torch.manual_seed(seed)
    return PixelBertForPreTraining(config).pixelbert.eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', help='a pixelbert-pretrain run folder or a save_pretrained folder (skips pre-training)')
    ap.add_argument('--processor', default=None, help='processor folder (default: the model folder, then its parent)')
    ap.add_argument('--out', default='runs/grounding', help='run folder for pre-training (default: runs/grounding)')
    ap.add_argument('--steps', type=int, default=800, help='pre-training steps (default: 800)')
    ap.add_argument('--seed', type=int, default=0, help='run seed: initialisation of both models, data order')
    ap.add_argument('--batch-size', type=int, default=32)
    ap.add_argument('--n-images', type=int, default=2000, help='synthetic training images (5 captions each)')
    ap.add_argument('--itm-hard-negatives', type=float, default=0.5, help='share of ITM negatives that are false captions')
    ap.add_argument('--resume', action='store_true', help='continue an interrupted pre-training run in --out')
    ap.add_argument('--eval-images', type=int, default=150, help='val images whose captions and questions are scored')
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    ap.add_argument('--json', default=None, help='write the results here (default: MODEL_OR_OUT/grounding.json)')
    a = ap.parse_args(argv)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    from pixelbert.attention import load_model_and_processor, pointing_game, pointing_table, grounding_samples
    if a.threads: torch.set_num_threads(a.threads)
    t0 = time.time()
    model_dir = a.model
    if model_dir is None:
        from pixelbert.trainer import pretrain_cli
        rc = pretrain_cli(preset='tiny', steps=a.steps, out=a.out, seed=a.seed, resume=a.resume, batch_size=a.batch_size,
                          n_images=a.n_images, itm_hard_negatives=a.itm_hard_negatives, save_every=250, eval_batches=2,
                          no_progress=True, threads=a.threads)
        if rc: sys.exit(rc)
        model_dir = a.out
    trained, processor = load_model_and_processor(model_dir, a.processor)
    samples = grounding_samples('val', n_images=a.eval_images)
    results = {'untrained': pointing_game(untrained_like(trained, a.seed), processor, samples),
               'pre-trained': pointing_game(trained, processor, samples)}
    print(pointing_table(results))
    dest = Path(a.json) if a.json else Path(model_dir) / 'grounding.json'
    dest.write_text(json.dumps(dict(model=str(model_dir), seed=a.seed, eval_images=a.eval_images, **results), indent=1) + '\n')
    print(f"\nwrote {dest} ({time.time() - t0:.0f} s)")


if __name__ == '__main__':
    main()
