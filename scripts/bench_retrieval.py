"""Retrieval benchmark: exact vs fast (shortlist + re-rank) evaluation on a synthetic pool, and a COCO-5K projection.

    .venv/bin/python scripts/bench_retrieval.py [--pool 500] [--k 10] [--train-images 2000] [--steps 300]
                                                [--checkpoint DIR] [--save DIR] [--threads N] [--split test]
                                                [--dual-weight W] [--sweep 0,1,2,4] [--json FILE]

Fine-tunes the tiny model for retrieval (or loads `--checkpoint`, a `PixelBertForRetrieval` saved with
`save_pretrained`), then evaluates both ways on a pool of `--pool` images with one caption each and prints
recalls, pairs scored and wall times, for two scores (chapter 13): the paper's cross-encoder alone, and the
cross-encoder plus `--dual-weight` times the dual logits. The exact cross-encoder matrix is computed once and
serves both scores (and every weight of `--sweep`, e.g. to choose the weight on the val split). The COCO-5K
projection multiplies the measured seconds per cross-encoder pair by the pair counts of 5,000 images x 25,000
captions.
"""
import argparse, json, time, torch
from pixelbert.config import PixelBertConfig
from pixelbert.metrics import recall_at_k
from pixelbert.processing import PixelBertProcessor
from pixelbert.synth import synth_retrieval_pool
from pixelbert.retrieval import (PixelBertForRetrieval, finetune_retrieval, encode_pool, exact_scores, dual_logits, fast_scores,
                                 DUAL_WEIGHT)

KEYS = ("tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=500); ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--train-images", type=int, default=2000); ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=24); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=None); ap.add_argument("--save", default=None)
    ap.add_argument("--dual-weight", type=float, default=DUAL_WEIGHT)
    ap.add_argument("--sweep", default=None, help="comma-separated dual weights to report exact and fast recalls for")
    ap.add_argument("--threads", type=int, default=None); ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    if a.dual_weight < 0: ap.error(f"--dual-weight must be at least 0, got {a.dual_weight}")
    sweep = [float(w) for w in a.sweep.split(",")] if a.sweep else []
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
    model.eval()
    pool = synth_retrieval_pool(a.split, a.pool, seed=a.seed, captions_per_image=1)
    ni, nt = len(pool.images), len(pool.captions)
    t0 = time.perf_counter(); enc = encode_pool(model, pool, proc); t_enc = time.perf_counter() - t0
    t0 = time.perf_counter(); cross = exact_scores(model, enc); t_cross = time.perf_counter() - t0
    t0 = time.perf_counter(); dual = dual_logits(model, enc); t_dual = time.perf_counter() - t0
    res = dict(pool_images=ni, pool_texts=nt, split=a.split, encode_seconds=t_enc, dual_seconds=t_dual, k=a.k,
               dual_weight=a.dual_weight, checkpoint=a.checkpoint)
    rows = {}
    for w in sorted({0.0, a.dual_weight, *sweep}):
        ex = recall_at_k(cross + w * dual, pool.img_of_text)
        t0 = time.perf_counter(); s, n = fast_scores(model, enc, a.k, dual_weight=w); t_fast = time.perf_counter() - t0
        rows[w] = dict(exact={**ex, "pairs": ni * nt, "seconds": t_enc + t_cross + (t_dual if w else 0)},
                       fast={**recall_at_k(s, pool.img_of_text), "pairs": n, "seconds": t_enc + t_fast})
    res["cross_only"], res["fused"] = rows[0.0], rows[a.dual_weight]
    res["sweep"] = [dict(dual_weight=w, **r) for w, r in rows.items()]
    print(f"\npool ({a.split}): {ni} images x {nt} captions; shortlist k={a.k}; threads={torch.get_num_threads()}")
    print(f"{'score':24} {'':6} {'TR@1':>6} {'TR@5':>6} {'TR@10':>6} {'IR@1':>6} {'IR@5':>6} {'IR@10':>6} {'pairs':>8} {'seconds':>8}")
    for w, r in rows.items():
        name = "cross-encoder alone" if w == 0 else f"cross + {w:g} x dual"
        for m in ("exact", "fast"):
            print(f"{name:24} {m:6} " + " ".join(f"{100 * r[m][k]:6.1f}" for k in KEYS) + f" {r[m]['pairs']:8d} {r[m]['seconds']:8.1f}")
            name = ""
        print(f"{'':24} fast-exact R@1: TR {100 * (r['fast']['tr_r1'] - r['exact']['tr_r1']):+.1f}, "
              f"IR {100 * (r['fast']['ir_r1'] - r['exact']['ir_r1']):+.1f} points")
    fu = res["fused"]
    print(f"fast scores {fu['exact']['pairs'] / fu['fast']['pairs']:.1f}x fewer pairs, "
          f"{fu['exact']['seconds'] / fu['fast']['seconds']:.1f}x faster (dual weight {a.dual_weight:g})")
    # projection for COCO 5K from the measured per-pair cost of the exact run (tiny model, this machine)
    per_pair = t_cross / (ni * nt)
    res["per_pair_seconds"] = per_pair
    cn_i, cn_t = 5000, 25000
    exact_pairs, fast_pairs = cn_i * cn_t, a.k * (cn_i + cn_t)  # upper bound: shortlists may overlap
    print(f"\nCOCO-5K projection (tiny model, this machine, {per_pair * 1e3:.3f} ms per cross-encoder pair):")
    print(f"  exact: {exact_pairs:,} pairs -> {exact_pairs * per_pair / 3600:.1f} h")
    print(f"  fast:  <= {fast_pairs:,} pairs -> {fast_pairs * per_pair / 60:.1f} min (+ dual embeddings, a few seconds)")
    if a.json:
        with open(a.json, "w") as f: json.dump(res, f, indent=1)

if __name__ == "__main__": main()
