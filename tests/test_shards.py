"""WebDataset shards (`pixelbert.shards`) through real DataLoader worker processes.

- ranks x workers read every record exactly once (even split), and still exactly once with uneven shards;
- the rank comes from torchrun's environment when not given;
- a loader stopped mid-stream and restarted from `state_dict()` (or from a step count) continues with the
  same batches, also when the state was saved by another rank;
- bad shards (cut mid-file, a sample without its image) raise errors naming the shard and member from
  inside a worker, or are skipped and counted when asked;
- batches made by `PretrainingCollator` in the workers (JPEG decoding, resizing, tokenising) feed the
  tiny model.
"""
import io, json, tarfile
from collections import Counter
from pathlib import Path
import pytest
import torch

from pixelbert.synth import SynthCaptions, SynthVQA
from pixelbert.shards import (ShardDataset, ShardLoader, ShardError, write_shards, shard_data_spec,
                              shard_loader_for_training, iter_shard)

N_IMAGES, CPI = 12, 3
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


@pytest.fixture(scope='module')
def captions():
    ds = SynthCaptions('train', n_images=N_IMAGES, seed=5, image_size=64, captions_per_image=CPI)
    return [ds[i] for i in range(len(ds))]


@pytest.fixture(scope='module')
def shards(tmp_path_factory, captions):
    out = tmp_path_factory.mktemp('shards')
    write_shards(captions, out / 'even', samples_per_shard=1)          # 12 shards
    write_shards(captions[:10 * CPI], out / 'uneven', samples_per_shard=2)  # 10 images -> 5 shards
    return out


def keys(batch): return [(s.image_id, s.caption) for s in batch]


def read_all(folder, R, W, **kw):
    "Everything ranks 0..R-1 read through a real DataLoader with W worker processes, per rank."
    per_rank = []
    for r in range(R):
        ld = ShardLoader(ShardDataset(folder, rank=r, world_size=R, **kw), batch_size=2, collate_fn=keys, num_workers=W)
        per_rank.append([k for b in ld for k in b])
    return per_rank


def test_union_even(shards, captions):
    per_rank = read_all(shards / 'even', R=2, W=3)
    seen = Counter(k for ks in per_rank for k in ks)
    assert set(seen) == {(s.image_id, s.caption) for s in captions}
    assert set(seen.values()) == {1}
    assert [len(ks) for ks in per_rank] == [N_IMAGES * CPI // 2] * 2


def test_union_uneven(shards, captions):
    "5 shards over 2 ranks x 2 workers: nothing twice, nothing lost, but ranks get different amounts."
    per_rank = read_all(shards / 'uneven', R=2, W=2)
    seen = Counter(k for ks in per_rank for k in ks)
    assert sum(seen.values()) == 10 * CPI and set(seen.values()) == {1}
    assert len(per_rank[0]) != len(per_rank[1])


def test_rank_from_torchrun_env(shards, monkeypatch):
    monkeypatch.setenv('RANK', '1'); monkeypatch.setenv('WORLD_SIZE', '4')
    ds = ShardDataset(shards / 'even')
    assert ds.rank_world() == (1, 4)
    assert ds.reader(num_workers=3, worker=2) == (5, 12)
    with pytest.raises(ValueError, match='cannot feed'):
        ShardDataset(shards / 'uneven').reader(num_workers=2, worker=0)  # 5 shards for 8 readers


def loader(folder, rank=0, world=2, **kw):
    ds = ShardDataset(folder, rank=rank, world_size=world, epochs=None, seed=11, buffer_size=6)
    return ShardLoader(ds, batch_size=3, collate_fn=keys, num_workers=2, **kw)


def take(ld, n):
    it = iter(ld)
    out = [next(it) for _ in range(n)]
    it.close()
    return out


def test_resume_streaming(shards):
    "Streaming over epochs: stop after 9 batches, resume from the state or from the batch count, same batches."
    full = take(loader(shards / 'uneven'), 25)
    first = loader(shards / 'uneven')
    part = take(first, 9)
    state = json.loads(json.dumps(first.state_dict()))  # it survives a JSON round trip (checkpoint files)
    again = loader(shards / 'uneven'); again.load_state_dict(state)
    assert part + take(again, 16) == full
    assert part + take(loader(shards / 'uneven', start_batch=9), 16) == full


def test_resume_other_rank(shards):
    "Rank 1 resuming from rank 0's saved state (same batch count) continues exactly as rank 1 would have."
    full1 = take(loader(shards / 'uneven', rank=1), 20)
    r0 = loader(shards / 'uneven', rank=0); take(r0, 8)
    r1 = loader(shards / 'uneven', rank=1); r1.load_state_dict(r0.state_dict())
    assert full1[:8] + take(r1, 12) == full1


def test_resume_refuses_other_settings(shards):
    ld = loader(shards / 'uneven'); take(ld, 2)
    st = ld.state_dict()
    other = ShardLoader(ShardDataset(shards / 'uneven', rank=0, world_size=2, epochs=None, seed=11, buffer_size=6),
                        batch_size=4, collate_fn=keys, num_workers=2)
    with pytest.raises(ValueError, match='batch_size'): other.load_state_dict(st)


def cut(src, dst):
    "Copy `src` cut in the middle of its last image (tar files are padded with zeros: a cut there loses nothing)."
    with tarfile.open(src) as tf: last = [m for m in tf.getmembers() if m.name.endswith('.jpg')][-1]
    dst.write_bytes(Path(src).read_bytes()[:last.offset_data + last.size // 2]); return dst


def test_truncated_shard_in_worker(shards, tmp_path):
    import shutil
    d = tmp_path / 'cut'; shutil.copytree(shards / 'uneven', d)
    cut(shards / 'uneven' / 'shard-000002.tar', d / 'shard-000002.tar')
    ld = ShardLoader(ShardDataset(d, shuffle=False), batch_size=2, collate_fn=keys, num_workers=2)
    with pytest.raises(Exception, match=r"shard-000002\.tar: truncated or corrupt in member '0000000\d\d\.jpg'"):
        for _ in ld: pass
    ds = ShardDataset(d, shuffle=False, on_error='skip')
    got = [k for b in ShardLoader(ds, batch_size=2, collate_fn=keys, num_workers=0) for k in b]
    assert ds.report.skipped['bad_shard'] == 1
    assert len(got) == CPI * 9  # the cut shard's first image is kept, its second lost


def test_sample_without_image(shards, tmp_path):
    "A sample whose image member is missing: an error naming shard and sample, or one skipped sample."
    d = tmp_path / 'noimg'; d.mkdir()
    src = shards / 'even' / 'shard-000003.tar'
    with tarfile.open(src) as tf, tarfile.open(d / 'shard-000000.tar', 'w', format=tarfile.USTAR_FORMAT) as out:
        for m in tf.getmembers():
            if not m.name.endswith('.jpg'): out.addfile(m, tf.extractfile(m))
    with pytest.raises(ShardError, match=r"shard-000000\.tar: sample '000000003' has no image member"):
        list(ShardDataset(d))
    ds = ShardDataset(d, on_error='skip')
    assert list(ds) == [] and ds.report.skipped == Counter(missing_image=1)


def test_index_mismatch(shards, tmp_path):
    "A shard replaced by a shorter, well-formed one is caught by the index's sample count."
    import shutil
    d = tmp_path / 'short'; shutil.copytree(shards / 'uneven', d)
    with tarfile.open(shards / 'uneven' / 'shard-000000.tar') as tf, tarfile.open(d / 'shard-000000.tar', 'w', format=tarfile.USTAR_FORMAT) as out:
        for m in tf.getmembers()[:2]: out.addfile(m, tf.extractfile(m))
    with pytest.raises(ShardError, match=r'holds 1 samples but the index lists 2'):
        list(iter_shard(d / 'shard-000000.tar', expected=2))
    with pytest.raises(ShardError, match='index lists 2'):
        list(ShardDataset(d, shuffle=False))


def test_vqa_round_trip(tmp_path):
    ds = SynthVQA('train', n_images=6, seed=2, image_size=64, questions_per_image=2)
    samples = [ds[i] for i in range(len(ds))]
    write_shards(samples, tmp_path / 'vqa', samples_per_shard=2)
    back = list(ShardDataset(tmp_path / 'vqa', shuffle=False))
    assert [(s.question_id, s.question, s.answers, s.question_type) for s in back] == \
           [(s.question_id, s.question, s.answers, s.question_type) for s in samples]
    with pytest.raises(ValueError, match='one kind'):
        write_shards(samples + [SynthCaptions('train', n_images=1, image_size=64)[0]], tmp_path / 'mixed')


def test_pretraining_batches_from_workers(shards):
    "PretrainingCollator in 2 workers: decoded, resized (tiny preset: 128 px), tokenised; the tiny model trains on it."
    from pixelbert.processing import PixelBertProcessor
    from pixelbert.pretraining import PixelBertForPreTraining, PretrainingCollator, pretraining_config
    proc = PixelBertProcessor.from_preset('tiny')
    ds = shard_data_spec(f"shards:{shards / 'even'}/shard-*.tar", seed=0, buffer_size=8)
    ld = shard_loader_for_training(ds, batch_size=4, collate_fn=PretrainingCollator(proc), num_workers=2)
    batch = next(iter(ld))
    assert batch['pixel_values'].shape == (4, 3, 128, 128)  # 64 px images resized to the preset's 128
    assert batch['input_ids'].shape[0] == 4 and 'image_group' in batch
    torch.manual_seed(0)
    model = PixelBertForPreTraining(pretraining_config('tiny', proc.tokenizer, num_hidden_layers=1))
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
