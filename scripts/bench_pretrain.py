#!/usr/bin/env python
"""CPU speed of pre-training (issue 4): tiny-preset pairs per second, and one `base` training step at 800 x 1333.

    .venv/bin/python scripts/bench_pretrain.py                 # both parts, about 2-4 minutes on an idle 2-core CPU
    .venv/bin/python scripts/bench_pretrain.py --part tiny --steps 30 --batch-size 32 --threads 2
    .venv/bin/python scripts/bench_pretrain.py --part base --batch-sizes 1,2
    .venv/bin/python scripts/bench_pretrain.py --part tiny --kernels fused,auto,fused,auto --pixels 0 --demo-model --precision bf16  # chapter 6's kernels, the demo's model

tiny: the `Trainer` of chapter 9 on the synthetic world, exactly as `pixelbert-pretrain --preset tiny` runs it
(same processor, collator, model and optimizers); the first `--warmup` steps are not timed. Reported: pairs per
second (whole steps: data loading, rendering, forward, backward, optimizer), seconds per step, and the process
CPU time per step (on a shared machine, CPU time per step is close to the idle wall time with one thread).
`--kernels` runs the tiny part once per attention kernel named (`config.attention_kernel`, chapter 6), in this
process one after the other, so that their ratio is measured in one run.

base: `PixelBertForPreTraining` with the `base` preset (ResNet-50 + BERT-base, vocabulary 30522, random weights:
nothing is downloaded) on images of exactly 800 x 1333 and 16-token captions, 100 sampled pixels; one full
training step (forward with MLM + ITM, backward, both optimizers) after one untimed step. Each batch size runs
in a fresh process; peak memory is the process's peak resident set size (`ru_maxrss`), and also its growth
over the model and optimizer state alone.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def tiny(a, kernel='auto'):
    import torch
    torch.set_num_threads(a.threads)
    from pixelbert.processing import PixelBertProcessor
    from pixelbert.pretraining import PixelBertForPreTraining, PretrainingCollator, pretraining_config
    from pixelbert.trainer import Trainer, TrainArgs, TRAIN_PRESETS, pretraining_data, read_log
    from pixelbert.cli import DemoConfig
    proc = PixelBertProcessor.from_preset('tiny')
    torch.manual_seed(0)
    over = dict(attention_kernel=kernel)
    if a.pixels >= 0: over['num_sampled_pixels'] = a.pixels or None
    if a.demo_model: over |= DemoConfig().model
    model = PixelBertForPreTraining(pretraining_config('tiny', proc.tokenizer, **over))
    data = pretraining_data('synthetic', 'train', n_images=a.n_images)
    tp = TRAIN_PRESETS['tiny']
    with tempfile.TemporaryDirectory() as out:
        args = TrainArgs(out=out, steps=a.warmup + a.steps, batch_size=a.batch_size, lr=tp['lr'], backbone_lr=tp['backbone_lr'],
                         log_every=1, save_every=10**9, progress=False, device='cpu', num_workers=a.workers,
                         precision=a.precision, channels_last=a.channels_last)
        trainer = Trainer(model, data, PretrainingCollator(proc), args)
        c0 = time.process_time()
        trainer.fit()
        cpu = time.process_time() - c0
        log = read_log(Path(out) / 'log.jsonl')
    timed = log[a.warmup:]
    seconds = timed[-1]['elapsed_s'] - log[a.warmup - 1]['elapsed_s'] if a.warmup else timed[-1]['elapsed_s']
    return dict(part='tiny', kernel=kernel, precision=a.precision, pixels=a.pixels, demo_model=a.demo_model, channels_last=a.channels_last,
                threads=a.threads, workers=a.workers, batch_size=a.batch_size, timed_steps=len(timed),
                pairs_per_s=round(len(timed) * a.batch_size / seconds, 2), s_per_step=round(seconds / len(timed), 3),
                cpu_s_per_step_all_steps=round(cpu / len(log), 3), params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2))


def base_step(a):
    "One timed training step of the base preset in this (fresh) process."
    import torch
    torch.set_num_threads(a.threads)
    from pixelbert.processing import synthetic_tokenizer
    from pixelbert.pretraining import PixelBertForPreTraining, pretraining_config
    from pixelbert.trainer import TrainArgs, build_optimizers
    tok = synthetic_tokenizer()
    config = pretraining_config('base', tok, vocab_size=30522, backbone_weights=None)  # BERT's vocabulary size, random init
    b, t = a.batch_size, 16
    torch.manual_seed(0)
    model = PixelBertForPreTraining(config).train()
    opts = build_optimizers(model, TrainArgs())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 30522, (b, t), generator=g); ids[:, 0], ids[:, -1] = tok.cls_token_id, tok.sep_token_id
    batch = dict(input_ids=ids, attention_mask=torch.ones(b, t, dtype=torch.long), token_type_ids=torch.zeros(b, t, dtype=torch.long),
                 pixel_values=torch.randn(b, 3, 800, 1333, generator=g), pixel_mask=torch.ones(b, 800, 1333, dtype=torch.long))
    def step():
        out = model(**batch)
        out.loss.backward()
        for o in opts.values(): o.step(); o.zero_grad(set_to_none=True)
        return out
    rss0 = rss_mb()
    step()  # untimed: allocates the optimizer state
    rss_state = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    out = step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return dict(part='base', threads=a.threads, batch_size=b, image='800x1333', text_tokens=t,
                pixel_grid=model.pixelbert.visual.grid_size(800, 1333), sampled_pixels=config.num_sampled_pixels,
                sequences=int(out.itm_logits.shape[0]),
                step_s=round(wall, 2), step_cpu_s=round(cpu, 2), peak_rss_mb=round(rss_mb()), rss_after_first_step_mb=round(rss_state),
                rss_before_mb=round(rss0), params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--part', choices=['all', 'tiny', 'base', 'base-step'], default='all')
    p.add_argument('--steps', type=int, default=20, help='timed tiny steps')
    p.add_argument('--warmup', type=int, default=3, help='untimed tiny steps first')
    p.add_argument('--batch-size', type=int, default=32, help='tiny global batch (base-step: its batch)')
    p.add_argument('--batch-sizes', default='1,2', help='base batch sizes, each in a fresh process')
    p.add_argument('--n-images', type=int, default=2000, help='synthetic world size for tiny')
    p.add_argument('--workers', type=int, default=0, help='DataLoader workers for tiny')
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    p.add_argument('--kernels', default='auto', help="tiny: attention kernels to time in turn, e.g. 'fused,auto'")
    p.add_argument('--precision', default='auto', help="tiny: the Trainer precision: 'auto' (float32 on the CPU), 'fp32' or 'bf16' (the demo's choice on a CPU with bfloat16)")
    p.add_argument('--pixels', type=int, default=-1, help='tiny: sampled pixels (-1: the preset, 32; 0: all 64)')
    p.add_argument('--channels-last', action='store_true', help='tiny: the CNN in channels-last memory format')
    p.add_argument('--demo-model', action='store_true', help="tiny: the demo's model overrides (2D pixel positions, no dropout)")
    p.add_argument('--json', default=None, help='also write the results to this file')
    a = p.parse_args()
    if a.part == 'base-step':
        print(json.dumps(base_step(a)))
        return
    results = []
    if a.part in ('all', 'tiny'):
        for kernel in a.kernels.split(','):
            results.append(tiny(a, kernel)); print(json.dumps(results[-1]), flush=True)
    if a.part in ('all', 'base'):
        for b in [int(x) for x in a.batch_sizes.split(',')]:
            cmd = [sys.executable, __file__, '--part', 'base-step', '--batch-size', str(b), '--threads', str(a.threads)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode: sys.exit(f'base step with batch {b} failed:\n{r.stderr[-3000:]}')
            results.append(json.loads(r.stdout.strip().splitlines()[-1])); print(json.dumps(results[-1]), flush=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work on the machine slows every number)")
    if a.json: Path(a.json).write_text(json.dumps(results, indent=1) + '\n')


if __name__ == '__main__':
    main()
