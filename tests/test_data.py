"""Bad input and the `pixelbert-synth` round trip for `pixelbert.data` (the real data formats).

One test per bad-input case: corrupt, truncated and missing image files; grayscale, RGBA, CMYK and 16-bit
images; empty captions; missing keys; wrong types; VQA questions without 10 answers; the skip-and-count
report. Then `pixelbert-synth` end to end: the console script writes the synthetic world, pycocotools loads
the COCO files, and every reader reads everything back equal to what the generator gives.
"""
import json, logging, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from PIL import Image, ImageFile

from pixelbert.data import (ImageLoadError, DataFormatError, load_image, read_coco_captions, read_vg_regions, read_vqa,
                            read_nlvr2, read_karpathy, read_karpathy_captions, write_coco_captions, write_vqa,
                            write_vg_regions, write_nlvr2, write_karpathy, synth_integer_ids)
from pixelbert.synth import (CaptionSample, VQASample, NLVR2Sample, RetrievalPool, SynthCaptions, SynthVQA, SynthNLVR2,
                             synth_retrieval_pool)


def noise_image(size=48, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def dump(obj, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


# ---------------------------------------------------------------------------------------------------------
# Small valid files in each format, written by the writers; each test breaks one thing.

@pytest.fixture
def coco(tmp_path):
    samples = [CaptionSample("1", noise_image(seed=1), "a red circle"), CaptionSample("1", noise_image(seed=1), "one circle"),
               CaptionSample("2", noise_image(seed=2), "two blue squares")]
    f = write_coco_captions(samples, tmp_path/"coco", "train2017")
    return f, json.loads(f.read_text())


@pytest.fixture
def vqa(tmp_path):
    samples = [VQASample(10, "1", noise_image(seed=1), "what colour is the circle?", ["red"] * 10, "color"),
               VQASample(11, "1", noise_image(seed=1), "how many squares are there?", ["2"] * 8 + ["3"] * 2, "count"),
               VQASample(12, "2", noise_image(seed=2), "is there a cross?", ["no"] * 10, "exists")]
    qf, af = write_vqa(samples, tmp_path/"vqa", "val2014")
    return qf, af, json.loads(af.read_text())


@pytest.fixture
def vg(tmp_path):
    f = write_vg_regions([CaptionSample("5", noise_image(), "a green triangle"), CaptionSample("5", noise_image(), "a cross")],
                         tmp_path/"vg")
    return f, json.loads(f.read_text())


@pytest.fixture
def nlvr2(tmp_path):
    samples = [NLVR2Sample("dev-3-0-0", (noise_image(seed=1), noise_image(seed=2)), "the left image has a circle", True),
               NLVR2Sample("dev-3-0-1", (noise_image(seed=1), noise_image(seed=2)), "both images have a cross", False)]
    return write_nlvr2(samples, tmp_path/"nlvr2", "dev")


@pytest.fixture
def karpathy(tmp_path):
    pools = {"test": RetrievalPool(["7", "8"], [noise_image(seed=7), noise_image(seed=8)], ["a circle", "a round thing", "a square"], [0, 0, 1]),
             "train": RetrievalPool(["9"], [noise_image(seed=9)], ["a cross"], [0])}
    f = write_karpathy(pools, tmp_path/"karpathy")
    return f, json.loads(f.read_text())


# ---------------------------------------------------------------------------------------------------------
# Image files

def test_corrupt_image_names_the_file(tmp_path):
    f = tmp_path/"corrupt.jpg"
    f.write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG body")
    with pytest.raises(ImageLoadError, match="corrupt.jpg"): load_image(f)
    (tmp_path/"empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.png"): load_image(tmp_path/"empty.png")


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_truncated_image_fails(tmp_path, fmt):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # importing pixelbert.data must not switch it on
    whole = tmp_path/f"whole.{fmt}"
    noise_image(96).save(whole)
    cut = tmp_path/f"cut.{fmt}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    assert load_image(whole).size == (96, 96)
    with pytest.raises(ImageLoadError, match=f"cut.{fmt}"): load_image(cut)
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what some other library might do: then truncation cannot be seen
    try:
        with pytest.warns(UserWarning, match="LOAD_TRUNCATED_IMAGES"): load_image(whole)
    finally: ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_missing_image_file(tmp_path, coco):
    with pytest.raises(ImageLoadError, match="not found: .*nope.jpg"): load_image(tmp_path/"nope.jpg")
    with pytest.raises(ImageLoadError, match="not a file"): load_image(tmp_path)
    f, data = coco
    (f.parent.parent/"train2017"/data["images"][1]["file_name"]).unlink()
    assert len(read_coco_captions(f)) == 3  # not checked by default: one stat per image is slow on real data sets
    with pytest.raises(DataFormatError, match=r"images\[1\] \(id=2\): image file not found"): read_coco_captions(f, check_images=True)
    got = read_coco_captions(f, on_error="skip", check_images=True)
    assert [s.caption for s in got] == ["a red circle", "one circle"]
    assert got.report.skipped == {"missing_image": 1}  # one bad image record: its caption is not counted again


def test_grayscale_images(tmp_path):
    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (4, 1))
    for mode in ["L", "P", "1"]:
        im = Image.fromarray(ramp, "L").convert(mode)
        im.save(tmp_path/f"g_{mode}.png")
        got = load_image(tmp_path/f"g_{mode}.png")
        assert got.mode == "RGB"
        a = np.asarray(got)
        assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    assert np.asarray(load_image(tmp_path/"g_L.png"))[0, :, 0].tolist() == ramp[0].tolist()
    la = Image.merge("LA", [Image.fromarray(ramp, "L"), Image.new("L", (32, 4), 255)])
    assert np.asarray(load_image(la))[0, :, 0].tolist() == ramp[0].tolist()  # opaque LA: the gray values


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((2, 3, 4), np.uint8)
    a[..., :3] = (200, 20, 20)
    a[..., 3] = [[255, 128, 0], [255, 128, 0]]  # opaque, half, transparent
    Image.fromarray(a, "RGBA").save(tmp_path/"rgba.png")
    got = np.asarray(load_image(tmp_path/"rgba.png")).astype(int)
    assert got[0, 0].tolist() == [200, 20, 20]
    assert got[0, 2].tolist() == [255, 255, 255]
    assert np.abs(got[0, 1] - [228, 137, 137]).max() <= 1  # 50% red over white
    p = Image.new("P", (2, 1)); p.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762); p.putpixel((1, 0), 1)
    p.info["transparency"] = 0  # palette entry 0 transparent
    p.save(tmp_path/"p.png", transparency=0)
    assert np.asarray(load_image(tmp_path/"p.png")).tolist() == [[[255, 255, 255], [10, 200, 10]]]


def test_cmyk_converted(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path/"cmyk.jpg", quality=100)  # magenta + yellow = red
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path/"cmyk.tif")  # cyan
    red = np.asarray(load_image(tmp_path/"cmyk.jpg")).astype(int)[4, 4]
    cyan = np.asarray(load_image(tmp_path/"cmyk.tif")).astype(int)[4, 4]
    assert np.abs(red - [255, 0, 0]).max() <= 3
    assert cyan.tolist() == [0, 255, 255]


def test_16bit_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 257 * 128, 65535, 1000]], dtype=np.uint16)
    im16 = Image.fromarray(values)
    assert im16.mode == "I;16"
    im16.save(tmp_path/"g16.png"); im16.save(tmp_path/"g16.tif")
    want = np.round(values[0] / 257).astype(int).tolist()  # [0, 1, 128, 255, 4]
    for f in ["g16.png", "g16.tif"]:
        assert Image.open(tmp_path/f).mode.startswith("I")
        got = np.asarray(load_image(tmp_path/f))
        assert got[0, :, 0].tolist() == want, f
    as_int32 = Image.fromarray(values.astype(np.int32), "I")
    assert np.asarray(load_image(as_int32))[0, :, 0].tolist() == want
    with pytest.raises(ImageLoadError, match="outside 0..65535"): load_image(Image.fromarray(np.array([[70000]], np.int32), "I"))
    with pytest.raises(ImageLoadError, match="unsupported image mode"): load_image(Image.new("F", (2, 2)))


# ---------------------------------------------------------------------------------------------------------
# Annotation records

def test_empty_caption(coco, vg, vqa, nlvr2, karpathy, tmp_path):
    f, data = coco
    data["annotations"][2]["caption"] = " \n"
    bad = dump(data, tmp_path/"c.json")
    with pytest.raises(DataFormatError, match=r"c.json: annotations\[2\] \(id=3\): 'caption' is empty"):
        read_coco_captions(bad, f.parent.parent/"train2017")
    f, data = vg
    data[0]["regions"][1]["phrase"] = ""
    with pytest.raises(DataFormatError, match=r"\[0\].regions\[1\] \(region_id=2\): 'phrase' is empty"):
        read_vg_regions(dump(data, tmp_path/"vg.json"), f.parent/"VG_100K")
    qf, af, _ = vqa
    q = json.loads(qf.read_text()); q["questions"][1]["question"] = ""
    with pytest.raises(DataFormatError, match=r"questions\[1\] \(question_id=11\): 'question' is empty"):
        read_vqa(dump(q, tmp_path/"q.json"), af, image_dir=tmp_path)
    lines = nlvr2.read_text().splitlines()
    (tmp_path/"n.json").write_text(lines[0] + "\n" + lines[1].replace("both images have a cross", "") + "\n")
    with pytest.raises(DataFormatError, match="line 2: 'sentence' is empty"): read_nlvr2(tmp_path/"n.json", tmp_path)
    f, data = karpathy
    data["images"][0]["sentences"][0]["raw"] = "  "
    with pytest.raises(DataFormatError, match=r"images\[0\].sentences\[0\]: 'raw' is empty"):
        read_karpathy(dump(data, tmp_path/"k.json"), "test", image_dir=tmp_path)


def test_missing_keys(coco, vg, vqa, nlvr2, karpathy, tmp_path):
    f, data = coco
    del data["images"][0]["file_name"]
    with pytest.raises(DataFormatError, match=r"images\[0\] \(id=1\): missing key 'file_name'"):
        read_coco_captions(dump(data, tmp_path/"c.json"), tmp_path)
    f, data = vg
    del data[0]["regions"][0]["region_id"]
    with pytest.raises(DataFormatError, match=r"\[0\].regions\[0\]: missing key 'region_id'"):
        read_vg_regions(dump(data, tmp_path/"vg.json"), tmp_path)
    qf, af, ann = vqa
    del ann["annotations"][1]["answers"][4]["answer"]
    with pytest.raises(DataFormatError, match=r"annotations\[1\] \(question_id=11\): missing key 'answer'"):
        read_vqa(qf, dump(ann, tmp_path/"a.json"))
    (tmp_path/"n.json").write_text(json.dumps({"identifier": "dev-1-0-0", "sentence": "a circle"}) + "\n")
    with pytest.raises(DataFormatError, match="line 1: missing key 'label'"): read_nlvr2(tmp_path/"n.json", tmp_path)
    f, data = karpathy
    del data["images"][1]["split"]
    with pytest.raises(DataFormatError, match=r"images\[1\] \(imgid=1\): missing key 'split'"):
        read_karpathy(dump(data, tmp_path/"k.json"), "test", image_dir=tmp_path)
    # whole-file problems always raise, naming the file
    with pytest.raises(DataFormatError, match="top-level key 'annotations' missing"):
        read_coco_captions(dump({"images": []}, tmp_path/"noanns.json"), tmp_path, on_error="skip")
    with pytest.raises(FileNotFoundError, match="captions_none.json"): read_coco_captions(tmp_path/"captions_none.json", on_error="skip")
    (tmp_path/"broken.json").write_text('{"images": [')
    with pytest.raises(DataFormatError, match="broken.json: not valid JSON"): read_coco_captions(tmp_path/"broken.json", tmp_path)


def test_wrong_types(coco, vg, vqa, nlvr2, karpathy, tmp_path):
    f, data = coco
    data["annotations"][0]["image_id"] = "1"  # a string where COCO has an integer
    with pytest.raises(DataFormatError, match=r"annotations\[0\] \(id=1\): 'image_id' should be an integer, got str"):
        read_coco_captions(dump(data, tmp_path/"c.json"), tmp_path)
    data["annotations"][0]["image_id"] = True  # JSON true is not an id
    with pytest.raises(DataFormatError, match="'image_id' should be an integer, got bool"):
        read_coco_captions(dump(data, tmp_path/"c.json"), tmp_path)
    f, data = coco
    data["annotations"] = {"oops": 1}
    with pytest.raises(DataFormatError, match="top-level 'annotations' should be a list"):
        read_coco_captions(dump(data, tmp_path/"c.json"), tmp_path)
    f, data = vg
    data[0]["regions"][0]["width"] = [30]
    with pytest.raises(DataFormatError, match="'width' should be a number"): read_vg_regions(dump(data, tmp_path/"vg.json"), tmp_path)
    f, data = vg
    with pytest.raises(DataFormatError, match="should hold a list"): read_vg_regions(dump({"id": 1}, tmp_path/"vg.json"), tmp_path)
    qf, af, ann = vqa
    ann["annotations"][0]["answers"] = "red"
    with pytest.raises(DataFormatError, match="'answers' should be a list"): read_vqa(qf, dump(ann, tmp_path/"a.json"))
    text = nlvr2.read_text().replace('"True"', "true")
    (tmp_path/"n.json").write_text(text)
    with pytest.raises(DataFormatError, match="line 1: 'label' should be a string, got bool"): read_nlvr2(tmp_path/"n.json", tmp_path)
    (tmp_path/"n.json").write_text(nlvr2.read_text().replace('"True"', '"yes"'))
    with pytest.raises(DataFormatError, match="'label' should be \"True\" or \"False\", got 'yes'"): read_nlvr2(tmp_path/"n.json", tmp_path)
    (tmp_path/"n.json").write_text(nlvr2.read_text() + "[1, 2]\n")
    with pytest.raises(DataFormatError, match="line 3: record should be an object, got list"): read_nlvr2(tmp_path/"n.json", tmp_path)
    f, data = karpathy
    data["images"][0]["sentences"] = [{"raw": 5}]
    with pytest.raises(DataFormatError, match="'raw' should be a string, got int"):
        read_karpathy(dump(data, tmp_path/"k.json"), "test", image_dir=tmp_path)


def test_vqa_answers_not_10(vqa, tmp_path):
    qf, af, ann = vqa
    ann["annotations"][1]["answers"] = ann["annotations"][1]["answers"][:9]
    ann["annotations"][2]["answers"] += ann["annotations"][2]["answers"][:1]
    bad = dump(ann, tmp_path/"a.json")
    with pytest.raises(DataFormatError, match=r"a.json: annotations\[1\] \(question_id=11\): has 9 answers, not 10"): read_vqa(qf, bad)
    got = read_vqa(qf, bad, on_error="skip")
    assert [s.question_id for s in got] == [10]
    assert got.report.skipped == {"answers_not_10": 2}
    assert len(read_vqa(qf, bad, n_answers=None)) == 3  # a data set with another convention can opt out
    with pytest.raises(ValueError, match="needs 10 answers"):  # and the writer refuses to write such a file
        write_vqa([VQASample(1, "1", noise_image(), "q?", ["a"] * 3)], tmp_path/"w")


def test_skip_and_count_report(coco, tmp_path, caplog):
    f, data = coco
    data["annotations"] += [{"id": 4, "image_id": 1, "caption": ""}, {"id": 5, "image_id": 99, "caption": "orphan"},
                            {"id": 6, "image_id": 2}, {"id": 7, "image_id": 2, "caption": ""}, "not a record"]
    bad = dump(data, tmp_path/"c.json")
    with caplog.at_level(logging.WARNING, logger="pixelbert.data"):
        got = read_coco_captions(bad, f.parent.parent/"train2017", on_error="skip", check_images=True)
    assert [s.caption for s in got] == ["a red circle", "one circle", "two blue squares"]  # the good ones, in order
    r = got.report
    assert (r.n_samples, r.n_skipped, r.n_records) == (3, 5, 2 + 8)
    assert r.skipped == {"empty_text": 2, "unknown_image": 1, "missing_key": 1, "wrong_type": 1}
    assert r.examples["empty_text"] == ["annotations[3] (id=4): 'caption' is empty", "annotations[6] (id=7): 'caption' is empty"]
    assert "c.json: 3 samples from 10 records, 5 skipped" in str(r)
    assert "skipped bad records" in caplog.text and "unknown_image: 1" in caplog.text  # reported at the end
    clean = read_coco_captions(f, on_error="skip")
    assert clean.report.n_skipped == 0
    with pytest.raises(ValueError, match="on_error must be"): read_coco_captions(f, on_error="ignore")
    with pytest.raises(DataFormatError, match=r"annotations\[3\] \(id=4\): 'caption' is empty"): read_coco_captions(bad, tmp_path)


def test_nlvr2_image_paths_and_directory(tmp_path):
    recs = [{"identifier": "train-10171-0-0", "sentence": "one", "label": "False", "directory": 28},
            {"identifier": "train-10171-0-1", "sentence": "two", "label": "True", "directory": "28"},
            {"identifier": "dev-850-0-0", "sentence": "three", "label": "True"}]
    (tmp_path/"train.json").write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    got = read_nlvr2(tmp_path/"train.json", tmp_path/"img")
    assert [s.label for s in got] == [False, True, True]
    assert got[0].images == (tmp_path/"img/28/train-10171-0-img0.png", tmp_path/"img/28/train-10171-0-img1.png")
    assert got[2].images[1] == tmp_path/"img/dev-850-0-img1.png"
    with pytest.raises(DataFormatError, match="line 1: image file not found"): read_nlvr2(tmp_path/"train.json", tmp_path/"img", check_images=True)


def test_vqa_questions_only_and_missing_annotation(vqa, tmp_path):
    qf, af, ann = vqa
    got = read_vqa(qf)
    assert [s.answers for s in got] == [[], [], []]
    assert got[0].image.name == "COCO_val2014_000000000001.jpg"
    del ann["annotations"][2]
    with pytest.raises(DataFormatError, match=r"questions\[2\] \(question_id=12\): question_id 12 has no \(valid\) annotation"):
        read_vqa(qf, dump(ann, tmp_path/"a.json"))


# ---------------------------------------------------------------------------------------------------------
# pixelbert-synth end to end

def test_pixelbert_synth_end_to_end(tmp_path):
    from pycocotools.coco import COCO
    script = Path(sys.executable).parent/"pixelbert-synth"
    assert script.exists(), f"console script missing: {script} (pip install -e .)"
    out, n = tmp_path/"world", 20
    res = subprocess.run([str(script), "--out", str(out), "--n-images", str(n), "--seed", "3"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "coco" in res.stdout and "nlvr2" in res.stdout

    for split, ds_split in [("train2017", "train"), ("val2017", "val")]:
        f = out/f"coco/annotations/captions_{split}.json"
        api = COCO(str(f))  # the official API loads it
        assert len(api.getImgIds()) == n and len(api.getAnnIds()) == 5 * n
        gen = SynthCaptions(ds_split, n_images=n, seed=3, captions_per_image=5, image_size=128)
        ids = synth_integer_ids(gen, ds_split)
        back = read_coco_captions(f, check_images=True)
        assert [(s.image_id, s.caption) for s in back] == [(str(ids[gen[i].image_id]), gen[i].caption) for i in range(len(gen))]
        img = api.loadImgs(api.getImgIds()[0])[0]
        assert load_image(out/"coco"/split/img["file_name"]).size == (img["width"], img["height"]) == (128, 128)
        diff = np.abs(np.asarray(load_image(back[0].image), float) - np.asarray(gen[0].image, float)).mean()
        assert diff < 4  # JPEG quality 95

    gen = SynthCaptions("train", n_images=n, seed=4, captions_per_image=5, image_size=128)
    back = read_vg_regions(out/"vg/region_descriptions.json", check_images=True)
    assert [s.caption for s in back] == [gen[i].caption for i in range(len(gen))]

    for split, ds_split in [("train2014", "train"), ("val2014", "val")]:
        gen = SynthVQA(ds_split, n_images=n, seed=3, questions_per_image=3, image_size=128)
        ids = synth_integer_ids(gen, ds_split)
        back = read_vqa(out/f"vqa/Questions/v2_OpenEnded_mscoco_{split}_questions.json",
                        out/f"vqa/Annotations/v2_mscoco_{split}_annotations.json", check_images=True)
        want = [gen[i] for i in range(len(gen))]
        assert [(s.question_id, s.image_id, s.question, s.answers, s.question_type) for s in back] == \
               [(s.question_id, str(ids[s.image_id]), s.question, s.answers, s.question_type) for s in want]
        assert all(len(s.answers) == 10 for s in back)

    for split, ds_split in [("train", "train"), ("dev", "val")]:
        gen = SynthNLVR2(ds_split, n=n, seed=3, image_size=128)
        back = read_nlvr2(out/f"nlvr2/data/{split}.json", check_images=True)
        assert [(s.identifier, s.sentence, s.label) for s in back] == [(gen[i].identifier, gen[i].sentence, gen[i].label) for i in range(n)]
        assert {s.label for s in back} == {True, False}
        assert np.array_equal(np.asarray(load_image(back[5].images[1])), np.asarray(gen[5].images[1]))  # PNG is lossless
        # official identifiers, split-set-pair-sentence, and the official image names: split-set-pair-img0/1.png
        assert [s.identifier for s in back] == [f"{split}-{i}-0-0" for i in range(n)]
        assert [p.name for p in back[5].images] == [f"{split}-5-0-img0.png", f"{split}-5-0-img1.png"]
    assert all("directory" in json.loads(l) for l in (out/"nlvr2/data/train.json").read_text().splitlines())

    f = out/"karpathy/dataset_flickr30k.json"
    for split in ["train", "val", "test"]:
        gen = synth_retrieval_pool(split, n_images=n, seed=3, captions_per_image=5, image_size=128)
        back = read_karpathy(f, split, check_images=True)
        assert (back.image_ids, back.captions, back.img_of_text) == (gen.image_ids, gen.captions, gen.img_of_text)
    caps = read_karpathy_captions(f, "train", check_images=True)
    assert len(caps) == len(synth_retrieval_pool("train", n_images=n, seed=3, captions_per_image=5).captions)


def test_pixelbert_synth_cli_errors(tmp_path):
    from fastcore.script import CliError
    from pixelbert.data import synth_cli
    with pytest.raises(CliError, match="--out DIR is required"): synth_cli(out=None)
    with pytest.raises(CliError, match="at least 1"): synth_cli(out=str(tmp_path), n_images=0)
    res = subprocess.run([str(Path(sys.executable).parent/"pixelbert-synth"), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--n-images" in res.stdout and "--seed" in res.stdout and "--overwrite" in res.stdout


def test_pixelbert_synth_refuses_a_used_out_and_overwrites_only_its_files(tmp_path):
    "A second world into the same --out: a one-line refusal naming the folder, or with --overwrite a clean replacement."
    from pixelbert.data import SYNTH_MANIFEST
    script, out = str(Path(sys.executable).parent/"pixelbert-synth"), tmp_path/"w"
    def synth(*args): return subprocess.run([script, "--out", str(out), "--image-size", "32", *args], capture_output=True, text=True, timeout=300)
    def on_disk(): return sorted(f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file())
    out.mkdir(); (out/"notes.txt").write_text("mine")  # a folder with an unrelated file: written as before
    res = synth("--n-images", "3")
    assert res.returncode == 0, res.stderr
    man = json.loads((out/SYNTH_MANIFEST).read_text())
    assert man["complete"] and man["args"]["n_images"] == 3 and sorted(man["files"] + [SYNTH_MANIFEST, "notes.txt"]) == on_disk()
    (out/"nlvr2"/"mine.txt").write_text("mine too")
    res = synth("--n-images", "2")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines == [f"pixelbert-synth: --out {out} already holds a pixelbert-synth output ({SYNTH_MANIFEST}); pass --overwrite to replace it, or choose another --out"]
    res = synth("--n-images", "2", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert f"pixelbert-synth: --overwrite: removed the previous output from {out}" in res.stderr
    man = json.loads((out/SYNTH_MANIFEST).read_text())
    assert on_disk() == sorted(man["files"] + [SYNTH_MANIFEST, "notes.txt", "nlvr2/mine.txt"])  # nothing of the 3-image world left
    assert [s.identifier for s in read_nlvr2(out/"nlvr2/data/dev.json", check_images=True)] == ["dev-0-0-0", "dev-1-0-0"]
    assert len(read_karpathy(out/"karpathy/dataset_flickr30k.json", "test", check_images=True).images) == 2
    # no manifest: an older output or real data at the paths the world writes; refused even with --overwrite, nothing deleted
    (out/SYNTH_MANIFEST).unlink()
    before = on_disk()
    for extra in ((), ("--overwrite",)):
        res = synth("--n-images", "2", *extra)
        assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1 and "but no pixelbert-synth.json" in res.stderr, res.stderr
    assert on_disk() == before


def test_write_synthetic_manifest_after_an_error(tmp_path, monkeypatch):
    "A write that fails part way still lists what it wrote, so --overwrite can remove it."
    import pixelbert.data as D
    def boom(*a, **k): raise OSError("disk full")
    monkeypatch.setattr(D, "write_vg_regions", boom)  # after COCO, VQA and NLVR2 have been written
    with pytest.raises(OSError, match="disk full"): D.write_synthetic(tmp_path/"w", n_images=2, image_size=32)
    man = json.loads((tmp_path/"w"/D.SYNTH_MANIFEST).read_text())
    assert not man["complete"] and "nlvr2/data/dev.json" in man["files"] and not any(f.startswith("vg/") for f in man["files"])
    with pytest.raises(ValueError, match="already holds a pixelbert-synth output"): D.write_synthetic(tmp_path/"w", n_images=2)
    gone = D.clear_synth_output(tmp_path/"w")
    assert len(gone) == len(man["files"]) and list((tmp_path/"w").iterdir()) == []  # the folder itself stays, empty
