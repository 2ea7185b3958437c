"""`pixelbert-pretrain` under `torchrun --nproc_per_node 2` on the CPU (gloo) equals one process with the same global
batch: one process accumulating two micro-batches of 4 pairs per step, against two processes with 4 pairs each.

The shards of a step are the same samples with the same random draws in both runs (dropout, masking, negatives and
pixel sampling are seeded from (seed, step, shard)), so the only difference left is the order in which the gradient
all-reduce adds floats. Only rank 0 writes: one log line per step, one final model.
"""
import os, shutil, socket, subprocess, sys, tempfile
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file

from pixelbert.trainer import read_log

STEPS = 4
COMMON = ['--preset', 'tiny', '--steps', str(STEPS), '--batch-size', '8', '--n-images', '40', '--eval-batches', '0',
          '--log-every', '1', '--save-every', '2', '--threads', '1', '--no-progress', '--device', 'cpu', '--seed', '5',
          '--tag-steps', '2']  # the tiny preset's tagging stage runs on rank 0 alone; DDP hands its CNN to rank 1
DRIVER = 'from pixelbert.trainer import pretrain_cli\nraise SystemExit(pretrain_cli())\n'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def driver():
    d = Path(tempfile.mkdtemp(prefix='pixelbert_test_ddp_'))
    (d / 'pretrain.py').write_text(DRIVER)  # fastcore's call_parse reads the command line only when run from a file
    yield str(d / 'pretrain.py')
    shutil.rmtree(d, ignore_errors=True)


def test_two_processes_equal_one(driver, tmp_path):
    one, two = tmp_path / 'one', tmp_path / 'two'
    p1 = subprocess.run([sys.executable, driver, *COMMON, '--micro-batch', '4', '--out', str(one)],
                        capture_output=True, text=True, timeout=600)
    assert p1.returncode == 0, p1.stderr[-3000:]
    env = os.environ | dict(OMP_NUM_THREADS='1')
    p2 = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nnodes', '1', '--nproc_per_node', '2',
                         '--master_addr', '127.0.0.1', '--master_port', str(free_port()), driver, *COMMON, '--out', str(two)],
                        capture_output=True, text=True, timeout=600, env=env)
    assert p2.returncode == 0, p2.stdout[-2000:] + p2.stderr[-3000:]
    a, b = load_file(str(one / 'final' / 'model.safetensors')), load_file(str(two / 'final' / 'model.safetensors'))
    assert a.keys() == b.keys()
    # batch-norm running statistics differ by design (each process sees its own shard; DDP keeps rank 0's): skip them
    params = [k for k in a if 'running_' not in k and 'num_batches_tracked' not in k]
    assert len(params) > 50
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in params)
    assert worst < 1e-4, worst
    changed = max((a[k].float() - load_file(str(one / 'checkpoint-2' / 'model.safetensors'))[k].float()).abs().max().item()
                  for k in params)
    assert changed > 100 * max(worst, 1e-7)  # the runs moved the weights far more than they differ
    # rank 0 alone writes: one line per step, and the per-step losses agree
    la, lb = read_log(one / 'log.jsonl'), read_log(two / 'log.jsonl')
    assert [r['step'] for r in lb] == list(range(1, STEPS + 1))
    for ra, rb in zip(la, lb):
        assert ra.keys() == rb.keys(), (ra, rb)
        for k in ('loss', 'mlm_loss', 'itm_loss', 'mlm_accuracy', 'itm_accuracy'):
            if k in ra: assert abs(ra[k] - rb[k]) < 1e-4, (k, ra, rb)  # MLM joins at step 2 (the tiny preset's curriculum)
    assert 'processes=2' in p2.stderr and p2.stderr.count('final model in') == 1
