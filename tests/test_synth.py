"Synthetic world: checks that do not fit the notebook (other processes, hash seeds) and the interface others rely on."
import os, re, subprocess, sys
import numpy as np
import pytest
from pixelbert.synth import (SPLITS, CaptionSample, NLVR2Sample, RetrievalPool, SynthCaptions, SynthNLVR2, SynthVQA,
                             VQASample, caption_truth, make_scene, question_only_baseline, split_of, synth_retrieval_pool,
                             vocabulary)

DIGEST = """
import hashlib, json
from pixelbert.synth import SynthCaptions, SynthVQA, SynthNLVR2, synth_retrieval_pool
caps = SynthCaptions('val', 40, seed=3); vqa = SynthVQA('val', 40, seed=3); nl = SynthNLVR2('val', 40, seed=3)
pool = synth_retrieval_pool('test', 30, seed=3)
data = [[caps.captions(i) for i in range(40)], vqa.annotations(), [t[:2] for t in nl.items], pool.captions,
        caps[7].image.tobytes().hex()[:2000], nl[3].images[1].tobytes().hex()[:2000]]
print(hashlib.sha1(json.dumps(data, default=str).encode()).hexdigest())
"""

def test_same_data_in_any_process():
    "Data sets are a pure function of (seed, split): same bytes whatever Python's string-hash seed is."
    digests = set()
    for hashseed in ('0', '1', '12345'):
        env = {**os.environ, 'PYTHONHASHSEED': hashseed}
        out = subprocess.run([sys.executable, '-c', DIGEST], env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1, digests

def test_sample_types():
    c = SynthCaptions('train', 5)[0]
    assert isinstance(c, CaptionSample) and c.image.mode == 'RGB' and c.image.size == (128, 128)
    assert c.negatives and all(caption_truth(n, c.scene) is False for n in c.negatives)
    v = SynthVQA('train', 5, questions_per_image=2)
    assert len(v) == 10 and isinstance(v[0], VQASample) and len(v[0].answers) == 10
    n = SynthNLVR2('train', 4, image_size=64)[1]
    assert isinstance(n, NLVR2Sample) and [im.size for im in n.images] == [(64, 64)] * 2 and isinstance(n.label, bool)
    p = synth_retrieval_pool('val', 10, captions_per_image=3)
    assert isinstance(p, RetrievalPool) and len(p.captions) == 30 and p.img_of_text == [i // 3 for i in range(30)]

def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown split 'dev'"): SynthCaptions('dev', 3)
    with pytest.raises(ValueError, match="not a synthetic caption: 'a dog on a sofa'"): caption_truth('a dog on a sofa', make_scene(0, 'train', 0))
    with pytest.raises(IndexError): SynthCaptions('train', 2)[10]

def test_splits_disjoint_and_pools_share_images():
    sigs = {sp: {make_scene(1, sp, i).signature() for i in range(1500)} for sp in SPLITS}
    assert not (sigs['train'] & sigs['val']) and not (sigs['train'] & sigs['test']) and not (sigs['val'] & sigs['test'])
    assert all(split_of(make_scene(1, sp, i)) == sp for sp in SPLITS for i in range(50))
    assert [s.image_id for s in SynthVQA('val', 20).scenes] == [s.image_id for s in SynthCaptions('val', 20).scenes]

def test_vocabulary_covers_all_text():
    voc = set(vocabulary())
    caps = SynthCaptions('test', 100, seed=9)
    texts = [t for i in range(100) for cap, negs, _ in caps.captions(i) for t in [cap, *negs]]
    ann = SynthVQA('test', 100, seed=9).annotations()
    texts += [a['question'] for a in ann] + [x for a in ann for x in a['answers']]
    texts += [t for t, _, _ in SynthNLVR2('test', 100, seed=9).items] + synth_retrieval_pool('test', 50, seed=9).captions
    assert {w for t in texts for w in re.findall(r"[a-z0-9]+|[?,:]", t)} <= voc

def test_question_only_baseline_is_weak_and_correct():
    tr, va = SynthVQA('train', 800, seed=2).annotations(), SynthVQA('val', 300, seed=2).annotations()
    b = question_only_baseline(tr, va)
    assert b['n'] == 900 and b['accuracy'] < 0.4
    assert question_only_baseline(va, va)['accuracy'] > b['accuracy']  # fitted on itself it memorises: the metric can move
    one = [dict(question='q?', answers=['a'] * 10, question_type='t')]
    assert question_only_baseline(one, one) == dict(accuracy=1.0, vqa_score=1.0, n=1,
                                                    per_type={'t': dict(accuracy=1.0, vqa_score=1.0, n=1)})
