"Metrics: the official VQA v2 answer normalisation and accuracy, VQA soft scores, retrieval recall@k."
import numpy as np
import pytest
import torch
from pixelbert.metrics import normalize_answer, vqa_accuracy, vqa_scores, recall_at_k, retrieval_ranks, CONTRACTIONS

# (raw answer, what the official VQA v2 script turns it into)
NORMALISATION_CASES = [
    ("Two", "2"), ("two.", "2"), ("TEN", "10"), ("eleven", "eleven"), ("none", "0"), ("zero", "0"), ("one way", "1 way"),
    ("yes", "yes"), ("yes.", "yes"), ("Yes!", "yes"), ("no?", "no"), ("  yes\t", "yes"), ("yes\nno", "yes no"),
    ("a dog", "dog"), ("The Dog", "dog"), ("an apple", "apple"), ("a dog's", "dog's"), ("the a an", ""),
    ("it's", "it's"), ("its", "its"), ("dont", "don't"), ("Dont", "don't"), ("isnt it", "isn't it"), ("Im", "im"),
    ("cant", "can't"), ("couldnt've", "couldn't've"), ("couldn'tve", "couldn't've"), ("oclock", "o'clock"),
    ("somebody'd", "somebodyd"), ("twas", "'twas"), ("wed", "wed"), ("well", "well"),
    ("1,000", "1000"), ("1,000,000", "1000000"), ("3.5", "3.5"), ("3.5.", "3.5"), (".5", ".5"), ("5.", "5"),
    ("red, white", "red white"), ("red,white", "red white"), ("red , white", "red white"),
    ("well,yes 1,000", "wellyes 1000"),  # a digit-comma-digit anywhere switches every mark to deletion
    ("t-shirt", "t shirt"), ("t - shirt", "t shirt"), ("left/right", "left right"), ("2:30", "2:30"),
    ("(red)", "red"), ("red (light)", "red light"), ("50%", "50%"), ("$5", "$5"), ("e.g.", "eg"), ("u.s.a.", "usa"),
    ("hot dog", "hot dog"), ("a", ""), ("", ""),
]

@pytest.mark.parametrize("raw,want", NORMALISATION_CASES)
def test_normalize_answer(raw, want):
    assert normalize_answer(raw) == want
    assert normalize_answer(want) == want  # idempotent on its outputs

def test_normalize_answer_period_quirk_and_types():
    assert normalize_answer("." * 40) == "." * 8  # the script strips at most 32 periods (re.UNICODE passed as count)
    with pytest.raises(TypeError, match="must be a str"): normalize_answer(None)

def test_contractions_table_shape():
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["yall'd've"] == CONTRACTIONS["y'alld've"] == CONTRACTIONS["y'all'dve"] == "y'all'd've"
    assert "shes" not in CONTRACTIONS and "lets" not in CONTRACTIONS and "its" not in CONTRACTIONS

def loo(pred, answers):
    "The definition, literally: each leave-one-out subset, min(1, matches/3), averaged."
    pred, answers = normalize_answer(pred), [normalize_answer(a) for a in answers]
    return np.mean([min(1, sum(a == pred for j, a in enumerate(answers) if j != i) / 3) for i in range(len(answers))])

@pytest.mark.parametrize("m,want", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)])
def test_vqa_accuracy_hand_computed(m, want):
    # m of 10 humans agree: (m * min(1,(m-1)/3) + (10-m) * min(1,m/3)) / 10, e.g. m=3: (3*2/3 + 7*1)/10 = 0.9
    answers = ["red"] * m + ["blue"] * (10 - m)
    assert vqa_accuracy("red", answers) == pytest.approx(want)
    assert vqa_accuracy("red", answers) == pytest.approx(loo("red", answers))

def test_vqa_accuracy_normalises_both_sides():
    humans = ["2", "two", "2", "three", "3", "yes", "2.", "a 2", "four", "TWO"]
    assert vqa_accuracy("Two", humans) == 1.0
    assert vqa_accuracy("3", humans) == pytest.approx(0.6)
    assert vqa_accuracy("four", humans) == pytest.approx(0.3)
    assert vqa_accuracy("no", humans) == 0.0
    rng = np.random.default_rng(0)
    pool = ["yes", "Yes.", "no", "2", "two", "a dog", "dog", "red,white", "red white"]
    for _ in range(200):
        hs = list(rng.choice(pool, 10)); p = str(rng.choice(pool))
        assert vqa_accuracy(p, hs) == pytest.approx(loo(p, hs))

def test_vqa_accuracy_official_gt_mode():
    # the script applies only the punctuation step to human answers, and none when all ten are identical
    assert vqa_accuracy("two", ["two"] * 10, official_gt=True) == 0.0
    assert vqa_accuracy("two", ["two"] * 10) == 1.0
    assert vqa_accuracy("yes", ["yes."] * 5 + ["no"] * 5, official_gt=True) == 1.0

def test_vqa_accuracy_answer_count():
    with pytest.raises(ValueError, match="needs 10 human answers, got 7"): vqa_accuracy("red", ["red"] * 7)
    with pytest.raises(ValueError, match="at least 2"): vqa_accuracy("red", ["red"], n_answers=None)
    with pytest.raises(TypeError, match="list of str"): vqa_accuracy("red", "red")
    assert vqa_accuracy("red", ["red", "red", "red", "blue"], n_answers=None) == pytest.approx((3 * 2 / 3 + 1) / 4)

def test_vqa_scores_equal_accuracy():
    humans = ["2", "two", "2", "three", "3", "yes", "2.", "a 2", "four", "TWO"]
    sc = vqa_scores(humans)
    assert list(sc) == ["2", "3", "yes", "4"]
    for a, s in sc.items(): assert s == pytest.approx(vqa_accuracy(a, humans))
    with pytest.raises(ValueError, match="got 3"): vqa_scores(["a", "b", "c"])

def recall_bruteforce(S, img_of_text, ks):
    "Sort every query's candidates (negatives before positives among equal scores) and look at the top k."
    S, img_of_text = np.asarray(S, dtype=float), np.asarray(img_of_text)
    n_img, n_txt = S.shape
    def hit(scores, is_pos, k):
        order = sorted(range(len(scores)), key=lambda c: (-scores[c], bool(is_pos[c])))
        return any(is_pos[c] for c in order[:k])
    out = {}
    for k in ks:
        out[f"tr_r{k}"] = np.mean([hit(S[i], img_of_text == i, k) for i in range(n_img)])
        out[f"ir_r{k}"] = np.mean([hit(S[:, j], np.arange(n_img) == img_of_text[j], k) for j in range(n_txt)])
    return out

@pytest.mark.parametrize("trial", range(40))
def test_recall_at_k_vs_bruteforce(trial):
    rng = np.random.default_rng(trial)
    n_img = int(rng.integers(1, 25))
    img_of_text = rng.permutation(np.repeat(np.arange(n_img), rng.integers(1, 6, n_img)))
    S = rng.normal(size=(n_img, len(img_of_text)))
    if trial % 2: S = rng.integers(0, 3, size=S.shape)  # integer scores: many ties
    ks = (1, 5, 10)
    got, want = recall_at_k(torch.as_tensor(S) if trial % 3 == 0 else S, img_of_text, ks), recall_bruteforce(S, img_of_text, ks)
    assert set(got) == {"tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10"}
    for key in want: assert got[key] == pytest.approx(want[key]), key
    assert all(0 <= v <= 1 for v in got.values())

def test_recall_at_k_other_ks_chunks_and_ties():
    S = torch.randn(37, 80); img = torch.arange(80) % 37
    r = recall_at_k(S, img, ks=(2, 3))
    assert set(r) == {"tr_r2", "tr_r3", "ir_r2", "ir_r3"}
    a, b = retrieval_ranks(S, img, chunk=7), retrieval_ranks(S, img)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert set(recall_at_k(torch.zeros(20, 20), list(range(20))).values()) == {0.0}  # ties count against the truth
    assert set(recall_at_k(torch.eye(20), list(range(20))).values()) == {1.0}
    # a permutation of images and texts does not change anything
    pi, pt = torch.randperm(37), torch.randperm(80)
    inv = torch.argsort(pi)
    assert recall_at_k(S[pi][:, pt], inv[img[pt]]) == pytest.approx(recall_at_k(S, img))

def test_recall_at_k_bad_input():
    with pytest.raises(ValueError, match="images without any text"): recall_at_k(torch.zeros(3, 2), [0, 1])
    with pytest.raises(ValueError, match="must index the 3 images"): recall_at_k(torch.zeros(3, 3), [0, 1, 3])
    with pytest.raises(ValueError, match="3 entries for 2 texts"): recall_at_k(torch.zeros(3, 2), [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"): recall_at_k(torch.full((2, 2), float("nan")), [0, 1])
    with pytest.raises(ValueError, match="n_images, n_texts"): recall_at_k(torch.zeros(4), [0, 1, 2, 3])
