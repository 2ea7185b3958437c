"Visual encoder (pixelbert.visual): every backbone by name, weight loading from local files and torchvision enums (no download), bad inputs."
import copy, math
import pytest
import torch
import torchvision
from torch import nn
from safetensors.torch import save_file
from pixelbert.config import PixelBertConfig
from pixelbert import visual
from pixelbert.visual import (BACKBONES, RESNETS, FrozenBatchNorm2d, VisualEncoder, build_backbone, check_pixel_inputs,
                              load_state_dict_file, resolve_weights, sample_pixels)

WIDE = {"resnet18": 512, "resnet34": 512}  # every other torchvision backbone ends with 2048 channels


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_builds_with_right_stride_and_channels(name):
    torch.manual_seed(0)
    bb = build_backbone(name, weights=None).eval()
    channels, stride = (128, 8) if name.startswith("tiny_cnn") else (WIDE.get(name, 2048), 32)
    assert (bb.out_channels, bb.stride, bb.name) == (channels, stride, name)
    with torch.no_grad(): out = bb(torch.randn(1, 3, 70, 45))
    assert out.shape == (1, channels, math.ceil(70 / stride), math.ceil(45 / stride))
    assert out.isfinite().all()


@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_cnn_deep", "resnet18"])
def test_freeze_bn_leaves_no_trainable_batch_norm(name):
    bb = build_backbone(name, freeze_bn=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in bb.modules())
    frozen = [m for m in bb.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and all(len(list(m.parameters())) == 0 for m in frozen)
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    bb.train()(torch.randn(2, 3, 64, 64))  # a training-mode forward changes no statistic
    assert all(torch.equal(before[k], v) for k, v in bb.state_dict().items())


def _random_stats(net):
    "Give batch norms non-trivial statistics so that loading them is actually checked."
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d): m.running_mean.normal_(0, 0.1); m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("freeze_bn", [False, True])
def test_load_torchvision_state_dict_from_pth(tmp_path, freeze_bn):
    torch.manual_seed(0)
    ref = _random_stats(torchvision.models.resnet18(weights=None)).eval()
    torch.save(ref.state_dict(), tmp_path / "r18.pth")  # a full torchvision checkpoint, classifier included
    bb = build_backbone("resnet18", weights=tmp_path / "r18.pth", freeze_bn=freeze_bn).eval()
    sd = bb.state_dict()
    for k, v in ref.state_dict().items():
        if k.startswith("fc.") or (freeze_bn and k.endswith("num_batches_tracked")): continue
        assert torch.equal(sd[k], v), k
    x = torch.randn(2, 3, 96, 64)
    feats = {}
    ref.layer4.register_forward_hook(lambda m, i, o: feats.update(out=o))
    with torch.no_grad(): ref(x); ours = bb(x)
    torch.testing.assert_close(ours, feats["out"], atol=1e-4, rtol=1e-4)


def test_load_state_dict_from_safetensors_and_wrapped_files(tmp_path):
    torch.manual_seed(0)
    src = _random_stats(build_backbone("tiny_cnn")).eval()
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(sd, tmp_path / "tiny.safetensors")
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, tmp_path / "ckpt.pt")
    x = torch.randn(1, 3, 32, 40)
    with torch.no_grad(): expected = src(x)
    for f in ("tiny.safetensors", "ckpt.pt"):
        bb = build_backbone("tiny_cnn", weights=str(tmp_path / f)).eval()
        with torch.no_grad(): torch.testing.assert_close(bb(x), expected)
    # the encoder reads the same file through the config
    cfg = PixelBertConfig.from_preset("tiny", backbone_weights=str(tmp_path / "tiny.safetensors"))
    enc = VisualEncoder(cfg)
    assert torch.equal(enc.backbone.stage1[0].weight, src.stage1[0].weight)
    assert not torch.equal(VisualEncoder(cfg, load_backbone_weights=False).backbone.stage1[0].weight, src.stage1[0].weight)


def test_bad_weight_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"): build_backbone("resnet18", weights=tmp_path / "missing.pth")
    torch.save(build_backbone("tiny_cnn").state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(ValueError, match="does not fit backbone 'resnet18'"): build_backbone("resnet18", weights=tmp_path / "tiny.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"): build_backbone("tiny_cnn", weights=tmp_path / "junk.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not hold a state dict"): load_state_dict_file(tmp_path / "list.pth")


@pytest.mark.parametrize("name", RESNETS)
def test_enum_names_resolve_without_download(name):
    enum = torchvision.models.get_model_weights(name)
    w = resolve_weights(name, "IMAGENET1K_V1")
    assert w is enum.IMAGENET1K_V1 and w.url.startswith("https://download.pytorch.org/models/")
    assert resolve_weights(name, "DEFAULT") is enum.DEFAULT
    assert resolve_weights(name, f"{enum.__name__}.IMAGENET1K_V1") is w
    assert resolve_weights(name, w) is w


def test_enum_is_passed_to_torchvision_loader(monkeypatch):
    "build_backbone hands the resolved enum to torchvision's builder (replaced here so that nothing downloads)."
    seen = {}
    def fake_get_model(name, weights=None, **kw):
        seen.update(name=name, weights=weights, norm_layer=kw.get("norm_layer"))
        return torchvision.models.get_model(name, weights=None, **kw)
    monkeypatch.setattr(visual, "get_model", fake_get_model)
    bb = build_backbone("resnet50", weights="IMAGENET1K_V2", freeze_bn=True)
    assert seen == dict(name="resnet50", weights=torchvision.models.ResNet50_Weights.IMAGENET1K_V2, norm_layer=FrozenBatchNorm2d)
    assert bb.out_channels == 2048
    cfg = PixelBertConfig.from_preset("base", hidden_size=64, num_attention_heads=4, visual_conv_dim=32)
    seen.clear(); VisualEncoder(cfg)
    assert seen["weights"] is torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    seen.clear(); VisualEncoder(cfg, load_backbone_weights=False)
    assert seen["weights"] is None


def test_bad_weight_names_fail_clearly():
    with pytest.raises(ValueError, match="IMAGENET1K_V2"): resolve_weights("resnet50", "IMAGENET21K")
    with pytest.raises(ValueError, match="do not belong"): resolve_weights("resnet18", torchvision.models.ResNet50_Weights.DEFAULT)
    with pytest.raises(ValueError, match="no torchvision weights"): resolve_weights("tiny_cnn", "IMAGENET1K_V1")
    with pytest.raises(TypeError): resolve_weights("resnet18", 3)
    with pytest.raises(ValueError, match="unknown backbone"): build_backbone("vit_b_16")


@pytest.fixture(scope="module")
def tiny_encoder():
    torch.manual_seed(0)
    return VisualEncoder(PixelBertConfig.from_preset("tiny")).eval()


@pytest.mark.parametrize("args, error, match", [
    ((torch.randn(3, 64, 64),), ValueError, "4-D"),
    ((torch.randn(1, 1, 3, 64, 64),), ValueError, "4-D"),
    ((torch.randn(2, 4, 64, 64),), ValueError, "3 colour channels"),
    ((torch.randn(2, 64, 64, 3),), ValueError, "channels last"),
    ((torch.randn(0, 3, 64, 64),), ValueError, "empty batch"),
    ((torch.randn(1, 3, 0, 64),), ValueError, "empty image size"),
    ((torch.zeros(1, 3, 64, 64, dtype=torch.uint8),), ValueError, "floating point"),
    (([[0.0]],), TypeError, "must be a tensor"),
    ((torch.randn(2, 3, 64, 64), torch.ones(1, 64, 64)), ValueError, "batch size mismatch"),
    ((torch.randn(2, 3, 64, 64), torch.ones(2, 64, 48)), ValueError, "does not match the image size"),
    ((torch.randn(2, 3, 64, 64), torch.ones(2, 1, 64, 64)), ValueError, "pixel_mask must be"),
    ((torch.randn(2, 3, 64, 64), 2 * torch.ones(2, 64, 64)), ValueError, "only 0"),
    ((torch.randn(2, 3, 64, 64), torch.cat([torch.ones(1, 64, 64), torch.zeros(1, 64, 64)])), ValueError, r"images \[1\]"),
])
def test_bad_image_inputs_fail_clearly(tiny_encoder, args, error, match):
    with pytest.raises(error, match=match): tiny_encoder(*args)


def test_position_table_too_small_fails_clearly():
    cfg = PixelBertConfig.from_preset("tiny", pixel_position_embedding=True, max_pixel_grid=4)
    enc = VisualEncoder(cfg).eval()
    assert enc(torch.randn(1, 3, 64, 64)).grid == (4, 4)
    with pytest.raises(ValueError, match="max_pixel_grid"): enc(torch.randn(1, 3, 80, 64))


@pytest.mark.parametrize("H, W", [(128, 128), (100, 72), (17, 130), (1, 1)])
def test_grid_and_mask_shapes(tiny_encoder, H, W):
    out = tiny_encoder(torch.randn(2, 3, H, W))
    y, x = math.ceil(H / 16), math.ceil(W / 16)
    assert out.grid == (y, x) == tiny_encoder.grid_size(H, W)
    assert out.features.shape == (2, y * x, 128) and out.mask.shape == (2, y * x)
    assert out.mask.dtype == torch.long and bool(out.mask.all())


def test_padded_batch_equals_images_alone_resnet():
    "Real tokens of padded images equal the tokens of each image encoded alone (frozen BN, ResNet-18)."
    torch.manual_seed(0)
    cfg = PixelBertConfig.from_preset("tiny", backbone="resnet18", freeze_backbone_bn=True, hidden_dropout_prob=0.0)
    enc = VisualEncoder(cfg).train()  # frozen BN and no dropout: train mode gives the same numbers
    sizes = [(130, 70), (64, 190), (192, 192)]
    batch, mask = torch.zeros(3, 3, 192, 192), torch.zeros(3, 192, 192, dtype=torch.long)
    images = [torch.randn(3, h, w) for h, w in sizes]
    for i, (im, (h, w)) in enumerate(zip(images, sizes)): batch[i, :, :h, :w] = im; mask[i, :h, :w] = 1
    with torch.no_grad():
        out = enc(batch, mask)
        for i, (im, (h, w)) in enumerate(zip(images, sizes)):
            alone = enc(im[None])
            assert alone.grid == (math.ceil(h / 64), math.ceil(w / 64))
            assert int(out.mask[i].sum()) == alone.grid[0] * alone.grid[1]
            torch.testing.assert_close(out.features[i][out.mask[i].bool()], alone.features[0], atol=1e-4, rtol=1e-4)


def test_encoder_state_dict_round_trip_keeps_frozen_statistics(tmp_path):
    torch.manual_seed(0)
    cfg = PixelBertConfig.from_preset("tiny", freeze_backbone_bn=True)
    enc = VisualEncoder(cfg).eval()
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, FrozenBatchNorm2d): m.running_mean.normal_(); m.running_var.uniform_(0.5, 2)
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, tmp_path / "enc.safetensors")
    torch.manual_seed(1)
    back = VisualEncoder(cfg).eval()
    from safetensors.torch import load_file
    back.load_state_dict(load_file(tmp_path / "enc.safetensors"))
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(back(x).features, enc(x).features)
    twin = copy.deepcopy(enc)  # no hooks are left behind on the modules
    torch.testing.assert_close(twin(x, torch.ones(2, 64, 64)).features, enc(x).features)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in enc.modules())


def test_sample_pixels_uniform_reproducible_and_checked():
    g = torch.Generator().manual_seed(0)
    feats, mask = torch.randn(3, 50, 8), torch.zeros(3, 50, dtype=torch.long)
    mask[0] = 1; mask[1, 10:30] = 1; mask[2, :5] = 1
    f, m, idx = sample_pixels(feats, mask, 12, generator=g)
    assert f.shape == (3, 12, 8) and m.tolist()[2] == [1] * 5 + [0] * 7
    assert bool(mask.gather(1, idx)[m.bool()].all())  # every kept slot is a real token
    assert torch.equal(f, feats[torch.arange(3)[:, None], idx])
    again = sample_pixels(feats, mask, 12, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip((f, m, idx), again))
    counts = torch.zeros(50)  # image 1: 20 real tokens, 12 drawn: each with probability 0.6
    for _ in range(1000):
        _, m1, i1 = sample_pixels(feats[1:2], mask[1:2], 12, generator=g)
        counts[i1[0][m1[0].bool()]] += 1
    assert counts[:10].sum() == 0 and counts[30:].sum() == 0
    assert (counts[10:30] - 600).abs().max() < 5 * math.sqrt(1000 * 0.6 * 0.4)
    with pytest.raises(ValueError, match="shape"): sample_pixels(feats, mask[:2], 4)
    with pytest.raises(ValueError, match="positive"): sample_pixels(feats, mask, 0)
    with pytest.raises(ValueError, match="features must be"): sample_pixels(feats[0], mask, 4)
