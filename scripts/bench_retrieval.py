"""Retrieval benchmark: exact vs fast (shortlist + re-rank) evaluation on a synthetic pool, and a COCO-5K projection.

    .venv/bin/python scripts/bench_retrieval.py [--pool 500] [--k 10] [--train-images 2000] [--steps 300]
                                                [--checkpoint DIR] [--save DIR] [--threads N]

Fine-tunes the tiny model for retrieval (or loads `--checkpoint`, a `PixelBertForRetrieval` saved with
`save_pretrained`), then evaluates both ways on a test pool of `--pool` images with one caption each and prints
recalls, pairs scored and wall times. The COCO-5K projection multiplies the measured seconds per cross-encoder
pair (and per dual embedding) by the pair counts of 5,000 images x 25,000 captions.
"""
import argparse, json, time, torch
from pixelbert.config import PixelBertConfig
from pixelbert.processing import PixelBertProcessor
from pixelbert.synth import synth_retrieval_pool
from pixelbert.retrieval import PixelBertForRetrieval, finetune_retrieval, evaluate_retrieval

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=500); ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--train-images", type=int, default=2000); ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=24); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=None); ap.add_argument("--save", default=None)
    ap.add_argument("--threads", type=int, default=None); ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    proc = PixelBertProcessor.from_preset("tiny")
    if a.checkpoint: model = PixelBertForRetrieval.from_pretrained(a.checkpoint)
    else:
        model = PixelBertForRetrieval(PixelBertConfig.from_preset("tiny", vocab_size=len(proc.tokenizer)))
        train = synth_retrieval_pool("train", a.train_images, seed=a.seed, captions_per_image=2)
        t0 = time.perf_counter()
        hist = finetune_retrieval(model, train, proc, steps=a.steps, batch_size=a.batch_size, seed=a.seed, progress=True)
        print(f"fine-tuned {a.steps} steps in {time.perf_counter() - t0:.0f} s; last: {hist[-1]}")
        if a.save: model.save_pretrained(a.save)
    pool = synth_retrieval_pool("test", a.pool, seed=a.seed, captions_per_image=1)
    res = evaluate_retrieval(model, pool, proc, mode="both", k=a.k)
    ex, fa = res["exact"], res["fast"]
    print(f"\npool: {res['pool_images']} images x {res['pool_texts']} captions; shortlist k={a.k}; threads={torch.get_num_threads()}")
    print(f"{'':6} {'TR@1':>6} {'TR@5':>6} {'TR@10':>6} {'IR@1':>6} {'IR@5':>6} {'IR@10':>6} {'pairs':>8} {'seconds':>8}")
    for name, r in (("exact", ex), ("fast", fa)):
        print(f"{name:6} " + " ".join(f"{100 * r[k]:6.1f}" for k in ("tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10"))
              + f" {r['pairs']:8d} {r['seconds']:8.1f}")
    print(f"fast scores {ex['pairs'] / fa['pairs']:.1f}x fewer pairs, {ex['seconds'] / fa['seconds']:.1f}x faster; "
          f"R@1 difference TR {100 * (fa['tr_r1'] - ex['tr_r1']):+.1f}, IR {100 * (fa['ir_r1'] - ex['ir_r1']):+.1f} points")
    # projection for COCO 5K from the measured per-pair cost of the exact run (tiny model, this machine)
    per_pair = (ex["seconds"] - res["encode_seconds"]) / ex["pairs"]
    ni, nt = 5000, 25000
    exact_pairs, fast_pairs = ni * nt, a.k * (ni + nt)  # upper bound: shortlists may overlap
    print(f"\nCOCO-5K projection (tiny model, this machine, {per_pair * 1e3:.3f} ms per cross-encoder pair):")
    print(f"  exact: {exact_pairs:,} pairs -> {exact_pairs * per_pair / 3600:.1f} h")
    print(f"  fast:  <= {fast_pairs:,} pairs -> {fast_pairs * per_pair / 60:.1f} min (+ dual embeddings, a few seconds)")
    if a.json:
        with open(a.json, "w") as f: json.dump(dict(res, per_pair_seconds=per_pair, k=a.k), f, indent=1)

if __name__ == "__main__": main()
