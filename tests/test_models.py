"""The networks: shapes at any input size, rebuild from specs, heads against the references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsls.models import (
    AppearanceEmbedding,
    AppearanceSpec,
    Classifier3D,
    ClassifierSpec,
    UNet3D,
    UNetSpec,
    build_model,
    gaussian_smooth,
    upsample_map,
)
from wsls.ops import reference


@pytest.mark.parametrize("head", ["acam", "gap", "gmp"])
@pytest.mark.parametrize("size", [(16, 16, 16), (13, 20, 9)])
def test_classifier_shapes_and_rebuild(head, size):
    torch.manual_seed(0)
    model = Classifier3D(ClassifierSpec(2, width=4, stages=3, head=head)).eval()
    x = torch.randn(2, 2, *size)
    out = model(x)
    feat = tuple(-(-s // 4) for s in size)
    assert out.logits.shape == (2,) and out.cam.shape == (2, *feat) and out.maps.shape == (2, *feat)
    assert torch.all(out.maps >= 0)
    clone = build_model(model.spec_dict())
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone.eval()(x).logits, out.logits)


def test_heads_match_reference_cams():
    torch.manual_seed(1)
    for head, ref in (("gap", reference.cam_gap), ("gmp", reference.cam_gmp)):
        model = Classifier3D(ClassifierSpec(2, width=4, stages=2, head=head)).eval()
        x = torch.randn(3, 2, 8, 8, 8)
        with torch.no_grad():
            feats = model.features(x)
            out = model.head(feats)
            logits, cam = ref(feats, model.cls_weight, model.cls_bias)
        torch.testing.assert_close(out.logits, logits)
        torch.testing.assert_close(reference.normalise_per_sample(out.maps), cam)


def test_acam_head_uses_attention_cam():
    torch.manual_seed(2)
    model = Classifier3D(ClassifierSpec(2, width=4, stages=2, head="acam", fusion="geometric"))
    with torch.no_grad():
        model.att_weight.normal_()
        feats = model.features(torch.randn(2, 2, 8, 10, 6))
        out = model.head(feats)
        ref = reference.attention_cam(
            feats, model.cls_weight, model.cls_bias, model.att_weight, "geometric"
        )
    torch.testing.assert_close(out.logits, ref.logits)
    torch.testing.assert_close(reference.normalise_per_sample(out.maps), ref.acam)


def test_unet_and_appearance_any_size():
    unet = UNet3D(UNetSpec(3, 5, width=4, levels=3))
    assert unet(torch.randn(1, 3, 11, 17, 6)).shape == (1, 5, 11, 17, 6)
    app = AppearanceEmbedding(AppearanceSpec(2, 7, sigmas=(0.0, 1.5)))
    assert app(torch.randn(2, 2, 9, 5, 4)).shape == (2, 7, 9, 5, 4)
    assert build_model(app.spec_dict()).spec == app.spec
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model({"kind": "transformer"})


def test_embed_volume_inside_the_brain_only():
    from wsls.method.embedding import embed_volume

    torch.manual_seed(0)
    app = AppearanceEmbedding(AppearanceSpec(2, 5, sigmas=(0.0, 1.0)))
    for p in app.parameters():  # batch-norm statistics away from the identity
        p.data.normal_()
    app.mlp[1].running_mean.normal_()
    app.mlp[4].running_var.uniform_(0.2, 3.0)
    x = torch.randn(2, 12, 9, 7)
    brain = torch.rand(12, 9, 7) > 0.4
    full = embed_volume(app, x)
    inside = embed_volume(app, x, brain)
    torch.testing.assert_close(inside[:, brain], full[:, brain], atol=1e-4, rtol=1e-4)
    assert inside[:, ~brain].abs().max() == 0
    # a brain far from the volume's borders: embedded on its box grown by the smoothing's reach
    wide = AppearanceEmbedding(AppearanceSpec(2, 5, sigmas=(0.0, 2.0)))
    wide.load_state_dict(app.state_dict())
    wide.eval()
    y = torch.randn(2, 30, 28, 26)
    small = torch.zeros(30, 28, 26, dtype=torch.bool)
    small[12:19, 10:16, 9:17] = torch.rand(7, 6, 8) > 0.3
    assert wide.reach == 6  # 3 sigma
    whole = wide(y[None])[0][:, small]
    torch.testing.assert_close(embed_volume(wide, y, small)[:, small], whole, atol=1e-4, rtol=1e-4)
    unet = UNet3D(UNetSpec(2, 3, width=4, levels=2))  # not per voxel: the whole volume
    torch.testing.assert_close(embed_volume(unet, x, brain), embed_volume(unet, x))


def test_embed_points_is_the_eval_mlp_in_chunks():
    torch.manual_seed(1)
    app = AppearanceEmbedding(AppearanceSpec(2, 4, sigmas=(0.0, 1.0), hidden=8, layers=3))
    for module in app.mlp:
        if isinstance(module, torch.nn.BatchNorm3d):
            module.weight.data.normal_()
            module.bias.data.normal_()
            module.running_mean.normal_()
            module.running_var.uniform_(0.2, 3.0)
    points = torch.randn(53, 4)
    with pytest.raises(RuntimeError, match="eval mode"):
        app.embed_points(points)
    app.eval()
    with torch.no_grad():
        conv = app(points.T[None, :, :, None, None], points=True)[0, :, :, 0, 0].T
    for chunk in (7, 53, 1000):
        torch.testing.assert_close(app.embed_points(points, chunk=chunk), conv)
    assert app.embed_points(points[:0]).shape == (0, 4)


def test_gaussian_smooth_matches_scipy():
    from scipy import ndimage as ndi

    x = torch.randn(1, 1, 12, 10, 9, dtype=torch.float64)
    ours = gaussian_smooth(x, 1.5)[0, 0].numpy()
    ref = ndi.gaussian_filter(x[0, 0].numpy(), 1.5, mode="nearest", truncate=3.0)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_upsample_map_aligns_cells():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 1, 0, 0] = 1.0
    up = upsample_map(maps, 4, (8, 8, 8))
    peak = np.unravel_index(int(up[0].argmax()), (8, 8, 8))
    assert 4 <= peak[0] < 8 and peak[1] < 4 and peak[2] < 4
