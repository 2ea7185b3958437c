#!/usr/bin/env python
"""Speed benchmark of Pixel-BERT pre-training against a hand-written baseline (issue 7, item 4).

On a GPU (one command, about 8 minutes on an H100/H200; JSON is rewritten after every phase, so a run cut off
by a time limit keeps what it measured):

    python scripts/bench_gpu.py --out OUT

CPU smoke test (tiny sizes, a step or two of everything except torch.compile; what the tests run):

    python scripts/bench_gpu.py --device cpu --tiny --out OUT

What it measures, in this order (the issue's comparison first, diagnostics last):
1. training pairs/s, ms/step and peak memory of the `base` preset at 800 x 1333, 40 text tokens, 100 sampled
   pixels, batch 16, for `HandwrittenBaseline` (torchvision ResNet-50 + transformers BertModel) and for
   `PixelBertForPreTraining`: float32 eager, bf16 + channels-last;
2. bf16 + channels-last + torch.compile for the baseline and for ours (the issue's reference row);
3. inference: image-text scores with all pixels, pairs/s at batch 32 and ms per pair at batch 1 (bf16);
4. the input pipeline: COCO-sized JPEGs (640 x 480) of the synthetic world in shards, decoded, resized and
   tokenised in DataLoader workers by `PretrainingCollator`; the pipeline's own rate, and a 200-step training run
   of the `base` preset fed by it (busy fraction of the GPU, loss curve);
5. diagnostics, each a change to the compiled bf16 setting (eager on the CPU), to see where time goes: the CNN's
   stem and first stage frozen (Detectron's FREEZE_AT=2) for ours and for the baseline, ours without the padding
   masks before each convolution, and ours with `torch.backends.cudnn.benchmark`.
Phases that would start too late for the time budget are skipped and recorded as skipped.

`pixelbert.model` imports fastcore; on a machine without it, carry the repository's copy
(`.venv/lib/python3.*/site-packages/fastcore`, pure Python): this script adds that folder to the path.
Writes OUT/bench_gpu.json, OUT/bench_gpu.txt (the tables) and OUT/loss_curve.png (when matplotlib is there).
"""
import argparse, datetime, json, os, platform, sys, tempfile, time, traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_fastcore():
    "Import fastcore, falling back to the repository's virtual environment's copy (carried to a bare GPU machine)."
    try:
        import fastcore  # noqa: F401
        return 'installed'
    except ImportError: pass
    for sp in sorted(ROOT.glob('.venv/lib/python3*/site-packages')):
        if (sp / 'fastcore').is_dir():
            sys.path.append(str(sp))  # appended: this folder may hold nothing else on the GPU machine
            import fastcore  # noqa: F401
            return f'from {sp}'
    sys.exit("bench_gpu.py: pixelbert needs fastcore; pip install fastcore, or carry .venv/lib/python3.*/site-packages/fastcore")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--device', default=None, help='cuda (default when available) or cpu')
    p.add_argument('--tiny', action='store_true', help='tiny sizes and a step or two: a CPU smoke test')
    p.add_argument('--batch-size', type=int, default=16, help='pairs per training step (issue 7: 16)')
    p.add_argument('--steps', type=int, default=15, help='timed training steps per setting')
    p.add_argument('--warmup', type=int, default=5, help='untimed steps first (compilation happens there)')
    p.add_argument('--text-length', type=int, default=40)
    p.add_argument('--image', default='800x1333', help='H x W of the synthetic images before padding')
    p.add_argument('--inference-batch', type=int, default=32)
    p.add_argument('--pipeline-images', type=int, default=160, help='distinct images in the pipeline shards (5 captions each)')
    p.add_argument('--pipeline-steps', type=int, default=200, help='training steps fed by the shard loader (loss curve)')
    p.add_argument('--workers', type=int, default=None, help='DataLoader workers (default: CPU cores - 2, at most 14)')
    p.add_argument('--no-compile', action='store_true', help='skip the torch.compile settings')
    p.add_argument('--compile-on-cpu', action='store_true', help='also compile in --tiny CPU runs (slow: needs a C++ compiler)')
    p.add_argument('--budget-s', type=float, default=480, help='skip phases that would start after this many seconds')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads of the main process')
    return p.parse_args(argv)


class Bench:
    "Results, written to JSON after every phase."
    def __init__(self, out, args):
        self.out, self.args, self.t0 = Path(out), args, time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        self.r = dict(args=vars(args), training={}, inference={}, pipeline={}, diagnostics={}, notes=[], errors={})

    def elapsed(self): return time.time() - self.t0

    def save(self):
        self.r['seconds'] = round(self.elapsed(), 1)
        (self.out / 'bench_gpu.json').write_text(json.dumps(self.r, indent=1, default=str) + '\n')

    def log(self, *a): print(f'[{self.elapsed():6.1f} s]', *a, flush=True)

    def run(self, section, name, fn, need_s=0):
        "Run one measurement; record its result or its error; skip it when the budget is short."
        left = self.args.budget_s - self.elapsed()
        if left < need_s:
            self.r[section][name] = dict(error=f'skipped: {left:.0f} s of the budget left, {need_s} s needed')
            self.log(f'{section} / {name}: skipped (budget)'); self.save(); return None
        self.log(f'{section} / {name} ...')
        try: res = fn()
        except Exception as e:  # a failure (out of memory, a compile error) is a result too
            res = dict(error=f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:300])
            self.r['errors'][f'{section} / {name}'] = traceback.format_exc()[-3000:]
        self.r[section][name] = res
        self.log(f'{section} / {name}: ' + ', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                                                      for k, v in res.items() if k != 'log'))
        self.save()
        return res


def main(argv=None):
    args = parse_args(argv)
    fc = ensure_fastcore()
    import torch
    from pixelbert.gpu import (bench_config, synthetic_batch, HandwrittenBaseline, pixelbert_score, bench_training,
                               bench_inference, coco_like_samples, train_from_loader, format_table)
    from pixelbert.pretraining import PixelBertForPreTraining, PretrainingCollator, pretraining_config
    if args.threads: torch.set_num_threads(args.threads)
    dev = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    cuda = dev.type == 'cuda'
    B = Bench(args.out, args)
    B.r.update(device=torch.cuda.get_device_name(dev) if cuda else platform.processor() or 'cpu', torch=torch.__version__,
               cuda=torch.version.cuda, python=platform.python_version(), fastcore=fc, cpu_count=os.cpu_count(),
               date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))
    # PyTorch's defaults are kept (as in the baseline measurement): TF32 off for matmuls, on for cuDNN convolutions
    B.r['tf32'] = dict(matmul=torch.backends.cuda.matmul.allow_tf32, cudnn=torch.backends.cudnn.allow_tf32)
    H, W = (int(v) for v in args.image.lower().split('x'))
    if args.tiny:  # the base architecture (ResNet-50 + BERT-style transformer) at toy sizes
        over = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128, visual_conv_dim=64,
                    image_shortest_edge=128, image_longest_edge=192)
        H, W = 128, 192
        args.batch_size, args.steps, args.warmup, args.inference_batch = 2, 1, 1, 2
        args.pipeline_images, args.pipeline_steps = 4, 4
        args.workers = 2 if args.workers is None else args.workers
    else: over = dict(image_shortest_edge=H, image_longest_edge=W)
    workers = args.workers if args.workers is not None else max(1, min(14, (os.cpu_count() or 4) - 2))
    cfg = bench_config('base', **over)
    B.r['config'] = dict(preset='base', overrides=over, batch_size=args.batch_size, text_length=args.text_length,
                         image=[H, W], sampled_pixels=cfg.num_sampled_pixels, workers=workers)
    batch = synthetic_batch(cfg, args.batch_size, args.text_length, (H, W), device=dev)
    B.r['config']['padded_image'] = list(batch['pixel_values'].shape[-2:])
    builders = dict(baseline=lambda: HandwrittenBaseline(cfg), pixelbert=lambda: PixelBertForPreTraining(cfg))

    def train(name, prepare=None, cudnn_benchmark=False, **kw):
        def fn():
            torch.manual_seed(0)
            m = builders[name]().to(dev)
            note = prepare(m) if prepare else None
            old = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = cudnn_benchmark
            try:
                res = bench_training(m, batch, steps=args.steps, warmup=args.warmup, **kw)
                return dict(res, change=note) if note else res
            finally:
                torch.backends.cudnn.benchmark = old
                del m
                if cuda: torch.cuda.empty_cache()
        return fn
    compile_ok = not args.no_compile and (cuda or args.compile_on_cpu)

    eager = [('fp32 eager', dict()), ('bf16 channels-last', dict(bf16=True, channels_last=True))]
    for setting, kw in eager:
        for name in ('baseline', 'pixelbert'):
            B.run('training', f'{name} {setting}', train(name, **kw), need_s=30)

    # the compiled settings: the reference row (a failure is recorded, and the run goes on)
    for name in ('baseline', 'pixelbert'):
        key = f'{name} bf16 channels-last compile'
        if compile_ok: B.run('training', key, train(name, bf16=True, channels_last=True, compile=True), need_s=100)
        else:
            B.r['training'][key] = dict(error='skipped: ' + ('--no-compile' if args.no_compile else 'CPU run (pass --compile-on-cpu)'))

    # 2. inference
    ib = synthetic_batch(cfg, args.inference_batch, args.text_length, (H, W), seed=1, device=dev)
    def infer(name):
        def fn():
            torch.manual_seed(0)
            m = builders[name]().to(dev).eval()
            score = (lambda **b: pixelbert_score(m, **b)) if name == 'pixelbert' else m.score
            try: return bench_inference(score, ib, steps=args.steps, warmup=args.warmup, bf16=cuda)
            finally:
                del m
                if cuda: torch.cuda.empty_cache()
        return fn
    for name in ('baseline', 'pixelbert'):
        B.run('inference', f"{name} {'bf16' if cuda else 'fp32'}", infer(name), need_s=20)

    # 3. the input pipeline: shards of COCO-sized JPEGs -> workers (decode, resize, tokenise) -> training
    def pipeline():
        from pixelbert.shards import write_shards, ShardDataset, ShardLoader
        from pixelbert.processing import PixelBertProcessor, PixelBertImageProcessor, synthetic_tokenizer
        tok = synthetic_tokenizer()
        pcfg = pretraining_config('base', tok, backbone_weights=None, **over)
        proc = PixelBertProcessor(tok, PixelBertImageProcessor.for_config(pcfg))
        collate = PretrainingCollator(proc)
        size = (120, 160) if args.tiny else (480, 640)
        t0 = time.time()
        samples = coco_like_samples(args.pipeline_images, seed=0, size=size)
        tmp = Path(tempfile.mkdtemp(prefix='pixelbert_bench_'))
        n_shards = max(2 * workers, 4)
        idx = write_shards(samples, tmp / 'shards', samples_per_shard=max(1, -(-args.pipeline_images // n_shards)), quality=90)
        res = dict(images=args.pipeline_images, pairs=len(samples), shards=len(idx['shards']), workers=workers,
                   image_size=list(size), make_data_s=round(time.time() - t0, 1),
                   jpeg_kb=round(sum((tmp / 'shards' / s['name']).stat().st_size for s in idx['shards']) / 1024 / args.pipeline_images, 1))
        # cost per pair in one process: decoding, and collating (resize + normalise + pad + tokenise + mask ids)
        from pixelbert.shards import decode_image
        import io
        data = []
        for s in samples[:5 * 8:5]:
            b = io.BytesIO(); s.image.save(b, format='JPEG', quality=90); data.append(b.getvalue())
        t = time.perf_counter(); ims = [decode_image(d) for d in data]; res['decode_ms_per_image'] = 1000 * (time.perf_counter() - t) / len(data)
        from dataclasses import replace
        few = [replace(s, image=im) for s, im in zip(samples[:5 * 8:5], ims)]
        t = time.perf_counter(); collate(few); res['collate_ms_per_pair'] = 1000 * (time.perf_counter() - t) / len(few)
        per_pair = res['decode_ms_per_image'] + res['collate_ms_per_pair']
        res['pipeline_capacity_pairs_per_s'] = workers * 1000 / per_pair  # if every worker had a core of its own
        def loader():
            return ShardLoader(ShardDataset(tmp / 'shards', epochs=None, seed=0, buffer_size=200), batch_size=args.batch_size,
                               collate_fn=collate, num_workers=workers, pin_memory=cuda,
                               persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
        ld = loader(); it = iter(ld); next(it)  # workers started
        n = max(3, min(30, args.pipeline_steps // 4))
        t = time.perf_counter()
        for _ in range(n): next(it)
        res['loader_pairs_per_s'] = n * args.batch_size / (time.perf_counter() - t)
        del it, ld
        torch.manual_seed(0)
        model = PixelBertForPreTraining(pcfg).to(dev)
        run = train_from_loader(model, loader(), args.pipeline_steps, dev, bf16=cuda, channels_last=cuda)
        res.update(busy_fraction=run['busy_fraction'], ms_per_step_with_loader=run['ms_per_step'],
                   pairs_per_s_with_loader=1000 * args.batch_size / run['ms_per_step'], log=run['log'])
        try:
            import matplotlib; matplotlib.use('Agg')
            from pixelbert.trainer import plot_log
            plot_log([{k: v for k, v in r.items() if k.endswith('loss') or k == 'step'} for r in run['log']], B.out / 'loss_curve.png',
                     title=f"base preset, {'x'.join(map(str, batch['pixel_values'].shape[-2:]))} padded, synthetic world, "
                           f"{'bf16' if cuda else 'fp32'}, {B.r['device']}")
            res['loss_curve'] = 'loss_curve.png'
        except Exception as e: res['loss_curve'] = f'not drawn: {type(e).__name__}: {e}'
        import shutil; shutil.rmtree(tmp, ignore_errors=True)
        return res
    res = B.run('pipeline', 'shards -> workers -> training', pipeline, need_s=60)
    if res: B.r['pipeline'] = dict(res)

    # 5. diagnostics: one change each to the compiled bf16 setting (eager where compilation is off)
    def freeze_stem_and_layer1(m):
        "Freeze the CNN's first five children (conv1, bn1, relu, maxpool, layer1): Detectron's FREEZE_AT=2."
        kids = list(m.visual.backbone.children()) if hasattr(m, 'visual') else list(m.pixelbert.visual.backbone.children())
        n = 0
        for c in kids[:5]:
            for p in c.parameters(): p.requires_grad_(False); n += p.numel()
        return f'stem and layer1 frozen ({n / 1e6:.2f} M parameters)'
    def no_padding_masks(m):
        m.pixelbert.visual.mask_padding = False
        return 'padding not zeroed before each convolution (results then depend on the padding)'
    dkw = dict(bf16=True, channels_last=True, compile=compile_ok)
    tag = 'compile' if compile_ok else 'eager'
    for key, name, kw in [(f'pixelbert frozen stem+layer1 {tag}', 'pixelbert', dict(prepare=freeze_stem_and_layer1)),
                          (f'baseline frozen stem+layer1 {tag}', 'baseline', dict(prepare=freeze_stem_and_layer1)),
                          (f'pixelbert no padding masks {tag}', 'pixelbert', dict(prepare=no_padding_masks)),
                          (f'pixelbert cudnn.benchmark {tag}', 'pixelbert', dict(cudnn_benchmark=True))]:
        B.run('diagnostics', key, train(name, **kw, **dkw), need_s=80 if compile_ok else 10)


    # ratios and the closing table
    tr = B.r['training']
    ok = {k: v for k, v in tr.items() if 'error' not in v}
    ref = next((k for k in ('baseline bf16 channels-last compile', 'baseline bf16 channels-last') if k in ok), None)
    ours = max((k for k in ok if k.startswith('pixelbert')), key=lambda k: ok[k]['pairs_per_s'], default=None)
    if ref and ours:
        B.r['ratios'] = {f'{ours} / {ref}': ok[ours]['pairs_per_s'] / ok[ref]['pairs_per_s']}
        for k in ok:
            if k.startswith('baseline'): B.r['ratios'][f'{ours} / {k}'] = ok[ours]['pairs_per_s'] / ok[k]['pairs_per_s']
        for k, v in B.r['diagnostics'].items():
            if 'error' not in v: B.r['ratios'][f'{k} / {ref}'] = v['pairs_per_s'] / ok[ref]['pairs_per_s']
    if B.r['pipeline'] and 'busy_fraction' in B.r['pipeline']:
        B.r.setdefault('ratios', {})['gpu_busy_fraction_with_loader'] = B.r['pipeline']['busy_fraction']
    text = (f"device: {B.r['device']}  torch {B.r['torch']}  {B.r['date']}\n"
            f"base preset, batch {args.batch_size}, {args.text_length} tokens, image {H}x{W} "
            f"(padded {B.r['config']['padded_image']}), {cfg.num_sampled_pixels} sampled pixels\n\ntraining\n"
            + format_table(B.r['training']) + '\n\ninference\n' + format_table(B.r['inference'], reference=next(iter(B.r['inference']), None)))
    if B.r['pipeline']:
        p = B.r['pipeline']
        text += ('\n\npipeline\n' + '\n'.join(f'{k:32s} {v:.4g}' if isinstance(v, float) else f'{k:32s} {v}'
                                               for k, v in p.items() if k != 'log'))
    if B.r['diagnostics']:
        d = dict(B.r['diagnostics'])
        if ref: d = {ref: ok[ref], **d}  # printed beside the reference row, for the ratios
        text += '\n\ndiagnostics (one change each)\n' + format_table(d, reference=ref)
    if B.r.get('ratios'): text += '\n\nratios\n' + '\n'.join(f'{k:70s} {v:.3f}' for k, v in B.r['ratios'].items())
    (B.out / 'bench_gpu.txt').write_text(text + '\n')
    B.save()
    print('\n' + text)
    return B.r


if __name__ == '__main__':
    main()
