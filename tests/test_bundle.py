"""Model bundles: round trip, refusals with one-line messages, and no pickle anywhere."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

import wsls
from wsls.bundle import BundleError, load_bundle, save_bundle

CONFIG = {
    "modalities": ["flair", "t1c", "t2"],
    "normalisation": "zscore-in-brain",
    "patch_size": [32, 32, 32],
    "thresholds": {"acam": 0.5},
}


class Net(torch.nn.Module):
    """A small 3D conv net with BatchNorm buffers and a tied weight."""

    def __init__(self, channels: int = 3, width: int = 4) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(channels, width, 3, padding=1)
        self.norm = torch.nn.BatchNorm3d(width)
        self.head = torch.nn.Conv3d(width, 1, 1)
        self.tied = self.head  # a second name for the same parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.conv(x))))


def build(spec: dict) -> torch.nn.Module:
    if spec["kind"] == "net":
        return Net(spec["channels"], spec["width"])
    return torch.nn.Linear(spec["inputs"], 1)


SPECS = {
    "embed": {"kind": "net", "channels": 3, "width": 4},
    "probe": {"kind": "linear", "inputs": 5},
}


@pytest.fixture
def trained():
    torch.manual_seed(0)
    net, probe = Net(), torch.nn.Linear(5, 1)
    net.train()
    net(torch.randn(2, 3, 8, 8, 8))  # moves BatchNorm's running statistics
    return {"embed": net.eval(), "probe": probe}


@pytest.fixture
def bundle_dir(tmp_path, trained):
    return save_bundle(tmp_path / "bundle", trained, SPECS, CONFIG)


def refused(match: str, *args, **kwargs) -> BundleError:
    with pytest.raises(BundleError, match=match) as info:
        load_bundle(*args, **kwargs)
    assert "\n" not in str(info.value)
    err = info.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    return err


def test_round_trip_same_outputs(bundle_dir, trained):
    bundle = load_bundle(bundle_dir, build)
    assert bundle.config == CONFIG and bundle.specs == SPECS
    assert bundle.modalities == ("flair", "t1c", "t2")
    assert bundle.wsls_version == wsls.__version__ and bundle.torch_version == torch.__version__
    x = torch.randn(1, 3, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(bundle.models["embed"](x), trained["embed"](x))
        v = torch.randn(4, 5)
        assert torch.equal(bundle.models["probe"](v), trained["probe"](v))
    assert not bundle.models["embed"].training
    assert bundle.models["embed"].tied is bundle.models["embed"].head
    running = bundle.models["embed"].norm.running_mean
    assert torch.equal(running, trained["embed"].norm.running_mean)


def test_files_are_json_and_safetensors_only(bundle_dir):
    names = sorted(p.name for p in bundle_dir.iterdir())
    assert names == ["config.json", "embed.safetensors", "probe.safetensors"]
    doc = json.loads((bundle_dir / "config.json").read_text())
    assert doc["format"] == 1 and doc["wsls_version"] == wsls.__version__
    assert doc["torch_version"] == torch.__version__
    assert doc["config"] == CONFIG and doc["models"] == SPECS
    for name in ("embed", "probe"):
        data = (bundle_dir / f"{name}.safetensors").read_bytes()
        n = int.from_bytes(data[:8], "little")
        assert isinstance(json.loads(data[8 : 8 + n]), dict)
        assert len(doc["weights"][name]["sha256"]) == 64


def test_loading_never_unpickles(bundle_dir, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert set(load_bundle(bundle_dir, build).models) == {"embed", "probe"}


def test_modalities(bundle_dir):
    err = refused(
        "bundle needs modalities", bundle_dir, build, required_modalities=("flair", "t1c")
    )
    assert str(err) == "bundle needs modalities flair, t1c, t2; missing: t2"
    ok = load_bundle(bundle_dir, build, required_modalities=("T2", "FLAIR", "T1ce", "t1"))
    assert set(ok.models) == {"embed", "probe"}


def test_missing_folder_and_config(tmp_path, bundle_dir):
    refused("no model bundle at .*folder not found", tmp_path / "nowhere", build)
    (tmp_path / "file").write_text("x")
    refused("is not a model bundle", tmp_path / "file", build)
    (bundle_dir / "config.json").unlink()
    refused("config.json is missing", bundle_dir, build)


def test_invalid_json(bundle_dir):
    (bundle_dir / "config.json").write_text("{not json")
    refused("is not valid JSON", bundle_dir, build)


def _edit(bundle_dir: Path, **changes) -> None:
    doc = json.loads((bundle_dir / "config.json").read_text())
    doc.update(changes)
    (bundle_dir / "config.json").write_text(json.dumps(doc))


def test_other_format_refused(bundle_dir):
    _edit(bundle_dir, format=2)
    refused(r"bundle of format 2; this wsls \(0\.1\.0\) reads format 1", bundle_dir, build)


@pytest.mark.parametrize("version", ["0.2.0", "1.1.0"])
def test_other_minor_version_refused(bundle_dir, version):
    _edit(bundle_dir, wsls_version=version)
    err = refused(f"written by wsls {version}; this is wsls {wsls.__version__}", bundle_dir, build)
    assert "0.1.x" in str(err)


def test_patch_version_accepted(bundle_dir):
    _edit(bundle_dir, wsls_version="0.1.9")
    assert load_bundle(bundle_dir, build).wsls_version == "0.1.9"


def test_weights_not_matching_spec_refused(bundle_dir):
    doc = json.loads((bundle_dir / "config.json").read_text())
    doc["models"]["embed"]["width"] = 6
    (bundle_dir / "config.json").write_text(json.dumps(doc))
    err = refused("weights of model 'embed' do not match its spec", bundle_dir, build)
    assert "conv.weight (4, 3, 3, 3, 3) vs (6, 3, 3, 3, 3)" in str(err)


def test_missing_weights_file_refused(bundle_dir):
    (bundle_dir / "probe.safetensors").unlink()
    refused("weights file probe.safetensors of model 'probe' is missing", bundle_dir, build)


def test_corrupt_weights_refused(bundle_dir):
    path = bundle_dir / "embed.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    refused("checksum mismatch", bundle_dir, build)
    path.write_bytes(bytes(data[:100]))
    refused("checksum mismatch", bundle_dir, build)


def test_traversal_file_name_refused(bundle_dir):
    doc = json.loads((bundle_dir / "config.json").read_text())
    doc["weights"]["probe"]["file"] = "../probe.safetensors"
    (bundle_dir / "config.json").write_text(json.dumps(doc))
    refused("no valid weights entry for model 'probe'", bundle_dir, build)


def test_save_replaces_a_bundle_atomically(bundle_dir, trained):
    trained["probe"].weight.data.fill_(0.5)
    save_bundle(bundle_dir, trained, SPECS, {**CONFIG, "thresholds": {"acam": 0.3}})
    bundle = load_bundle(bundle_dir, build)
    assert bundle.config["thresholds"] == {"acam": 0.3}
    assert torch.all(bundle.models["probe"].weight == 0.5)
    assert sorted(p.name for p in bundle_dir.parent.iterdir()) == ["bundle"]  # nothing left


def test_failed_save_keeps_previous_bundle(bundle_dir, trained, monkeypatch):
    import wsls.bundle as bundle_module

    before = (bundle_dir / "config.json").read_text()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle_module, "write_durable", boom)
    with pytest.raises(OSError):
        save_bundle(bundle_dir, trained, SPECS, {**CONFIG, "patch_size": [16, 16, 16]})
    assert (bundle_dir / "config.json").read_text() == before
    assert sorted(p.name for p in bundle_dir.parent.iterdir()) == ["bundle"]


def test_save_refusals(tmp_path, trained):
    with pytest.raises(BundleError, match="name different models"):
        save_bundle(tmp_path / "a", trained, {"embed": SPECS["embed"]}, CONFIG)
    with pytest.raises(BundleError, match="model name 'a/b'"):
        save_bundle(tmp_path / "a", {"a/b": trained["probe"]}, {"a/b": {}}, CONFIG)
    with pytest.raises(BundleError, match="config is not plain JSON"):
        save_bundle(tmp_path / "a", trained, SPECS, {"threshold": float("nan")})
    with pytest.raises(BundleError, match="config is not plain JSON"):
        save_bundle(tmp_path / "a", trained, SPECS, {"obj": object()})
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.png").write_bytes(b"x")
    with pytest.raises(BundleError, match="not empty and not a wsls bundle"):
        save_bundle(other, trained, SPECS, CONFIG)
    assert (other / "cat.png").exists()


def test_a_spec_too_large_for_its_weights_is_refused_unallocated(bundle_dir, monkeypatch):
    doc = json.loads((bundle_dir / "config.json").read_text())
    doc["models"]["embed"]["width"] = 100_000  # 35 MB of weights for a 1.4 KB file
    (bundle_dir / "config.json").write_text(json.dumps(doc))
    built = []
    real_net = Net.__init__

    def watch(self, *args, **kwargs):
        real_net(self, *args, **kwargs)
        built.append(self.conv.weight.device.type)

    monkeypatch.setattr(Net, "__init__", watch)
    err = refused("model 'embed' would need", bundle_dir, build)
    assert "35.2 MB" in str(err) and "1.42 KB" in str(err) and "refusing to allocate" in str(err)
    assert built == ["meta"]  # sized on the meta device, never built for real


def test_a_spec_that_cannot_be_built_is_refused(bundle_dir):
    doc = json.loads((bundle_dir / "config.json").read_text())
    doc["models"]["probe"]["inputs"] = "five"
    (bundle_dir / "config.json").write_text(json.dumps(doc))
    refused("model 'probe' cannot be built from its spec", bundle_dir, build)


def test_non_finite_weights_refused(tmp_path, trained):
    trained["probe"].weight.data[0, 2] = float("inf")
    path = save_bundle(tmp_path / "bad", trained, SPECS, CONFIG)
    err = refused("model 'probe' has 1 non-finite weights", path, build)
    assert "weight" in str(err)


def test_config_is_checked_before_any_weights_are_read(bundle_dir, monkeypatch):
    import wsls.bundle as bundle_module

    def never(*args, **kwargs):
        raise AssertionError("weights read before the configuration was checked")

    def check(config):
        raise BundleError(f"bad setting {sorted(config)[0]}")

    monkeypatch.setattr(bundle_module, "_load_weights", never)
    refused("bad setting modalities", bundle_dir, build, check_config=check)
