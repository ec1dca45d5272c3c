"""Faults: full disks, read-only folders, Ctrl-C at random points, truncated files, inputs that
look wrong. Each test checks what the user sees (one line, the exit status) and what is left
on disk (no partial or temporary file, old files intact, inputs unchanged).

The full-disk and read-only tests mount a small tmpfs in a user and mount namespace
(``unshare -rm``); where that is not allowed they skip, and the in-process tests below (a
writer that fails after N bytes) still cover the same code. Everything runs on a tiny model
trained once per module on three small phantoms (15-25 s on the shared 2-core machine).
"""

from __future__ import annotations

import builtins
import csv
import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from api_helpers import cli_env, run_cli

import wsls
from wsls.cli import main
from wsls.errors import BundleError, DataError, InputWarning
from wsls.io.atomic import TEMP_SUFFIX
from wsls.io.outputs import OutputError

pytest_plugins = ("api_helpers",)  # api_one_thread
ROOT = Path(__file__).resolve().parents[1]
PHANTOM_SHAPE = (64, 64, 48)
FAULT_CONFIG = {
    "modalities": ["flair", "t1c"],
    "preprocess": {"target_spacing": [4.0, 4.0, 4.0], "pad_to_multiple": 8},
    "classifier_scale": 1,
    "patch": {"size": 16, "min_lesion_voxels": 20, "flip_lr": True},
    "width": 8,
    "classifier": {"epochs": 1, "per_epoch": 16},
    "embedding_schedule": {"epochs": 1, "per_epoch": 3},
    "self_training": 0,
}


# ------------------------------------------------------------------ what writes where

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_RECORDERS: list[WriteRecorder] = []
_HOOKED: list[bool] = []


def _audit(event: str, args: tuple) -> None:
    if event != "open" or not _RECORDERS:
        return
    path, _, flags = args
    if not isinstance(path, str | bytes | os.PathLike) or not isinstance(flags, int):
        return
    if flags & _WRITE_FLAGS:
        for recorder in _RECORDERS:
            recorder.saw(os.fsdecode(path))


class WriteRecorder:
    """Records every file opened for writing under ``root`` (Python's audit hook sees all of
    them: builtins.open, io.open, os.open, and references to them kept by libraries)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.opens: list[Path] = []

    def saw(self, path: str) -> None:
        real = Path(os.path.realpath(os.path.abspath(path)))
        if real == self.root or self.root in real.parents:
            self.opens.append(real)

    def bypasses(self) -> list[Path]:
        """Final paths opened for writing outside the atomic helper (whose temporary files
        and folders are named ``.<name>.<random>.tmp...``)."""
        return [p for p in self.opens if not _via_helper(p.relative_to(self.root))]

    def __enter__(self) -> WriteRecorder:
        if not _HOOKED:
            sys.addaudithook(_audit)  # cannot be removed: inert while no recorder is active
            _HOOKED.append(True)
        _RECORDERS.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _RECORDERS.remove(self)


def _via_helper(relative: Path) -> bool:
    return any(part.startswith(".") and TEMP_SUFFIX in part for part in relative.parts)


def _temporaries(folder: Path) -> list[Path]:
    """Files or folders left behind by an atomic write (there must be none)."""
    return [p for p in Path(folder).rglob("*") if _via_helper(p.relative_to(folder))]


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _digests(paths) -> dict[str, str]:
    return {str(p): _digest(p) for p in paths}


# ------------------------------------------------------------------ the tiny model


def _case_files(data: Path, case: str) -> list[Path]:
    return [data / case / f"{case}_flair.nii.gz", data / case / f"{case}_t1ce.nii.gz"]


@pytest.fixture(scope="module")
def fault_env(tmp_path_factory):
    """Three phantoms, a tiny model trained in-process with its cache (every file it opens
    for writing recorded) and one mask made from it."""
    from wsls.method.config import WSLSConfig
    from wsls.phantom.generate import write_phantom_dataset

    base = tmp_path_factory.mktemp("faults")
    data = base / "data"
    write_phantom_dataset(data, 3, PHANTOM_SHAPE, seed=3, healthy_fraction=0.34, lesions="tumour")
    config_file = base / "config.json"
    config_file.write_text(json.dumps(FAULT_CONFIG))
    run = base / "run"
    torch.manual_seed(0)
    with WriteRecorder(base) as recorder:
        bundle = wsls.train(
            data, run, WSLSConfig.from_dict(FAULT_CONFIG), progress=False, log=lambda _: None
        )
    cases = sorted(p.name for p in data.iterdir())
    files = _case_files(data, "phantom_3001")
    seg = wsls.segment(files, bundle)
    mask = seg.save(base / "reference_mask.nii.gz")
    return SimpleNamespace(
        base=base,
        data=data,
        config=config_file,
        run=run,
        bundle=bundle,
        cases=cases,
        files=files,
        seg=seg,
        mask=mask,
        train_opens=list(recorder.opens),
        train_bypasses=recorder.bypasses(),
    )


def _inputs(fault_env, folder: Path, names=("flair.nii.gz", "t1c.nii.gz")) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for source, name in zip(fault_env.files, names, strict=True):
        shutil.copy(source, folder / name)
        out.append(folder / name)
    return out


def _wsls(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout=timeout)


def _one_error_line(stderr: str, *expected: str) -> str:
    """stderr holds exactly one error line (warnings aside), no traceback; it names all of
    ``expected``."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("wsls: error: ")]
    others = [  # training announces a first Ctrl-C ("SIGINT: stopping after this step...")
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("wsls: error: ", "wsls: warning: ", "SIGINT: "))
    ]
    assert len(errors) == 1 and not others, stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def _cli_error(capsys, argv, *expected: str) -> str:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 1, captured
    return _one_error_line(captured.err, *expected)


# ------------------------------------------------------------------ no writer bypasses the helper


def test_the_recorder_sees_a_direct_write(tmp_path):
    with WriteRecorder(tmp_path) as recorder:
        (tmp_path / "direct.txt").write_text("x")  # what a bypassing writer does
        with open(tmp_path / "also.bin", "wb") as f:
            f.write(b"x")
        fd = os.open(tmp_path / "low.bin", os.O_WRONLY | os.O_CREAT)
        os.close(fd)
        from wsls.io.atomic import atomic_write_text

        atomic_write_text(tmp_path / "fine.txt", "x")
    names = sorted(p.name for p in recorder.bypasses())
    assert names == ["also.bin", "direct.txt", "low.bin"]
    assert any(p.name.startswith(".fine.txt.") for p in recorder.opens)


def test_no_writer_bypasses_the_atomic_helper(fault_env, tmp_path, monkeypatch, api_one_thread):
    """Training (checkpoints, metrics, cache, report, bundle, training.json), segmentation
    (masks, maps, summary.csv), evaluation (tables, figure) and the demo (phantoms, its
    summary) open no final path for writing: only the helper's temporary files."""
    import wsls.demo as demo
    from wsls.method.config import WSLSConfig

    assert fault_env.train_opens, "the recorder saw no write during training"
    assert fault_env.train_bypasses == []
    monkeypatch.setattr(
        demo,
        "QUICK",
        demo.DemoPlan(3, 1, 1, (48, 48, 32), 5, *(demo.StageSchedule(1, 4),) * 3),
    )
    monkeypatch.setattr(demo, "demo_config", lambda plan: WSLSConfig.from_dict(FAULT_CONFIG))
    monkeypatch.setattr(demo, "ALL_BASELINES", ())
    with WriteRecorder(tmp_path) as recorder:
        wsls.segment_many(
            fault_env.data / fault_env.cases[0], fault_env.bundle, tmp_path / "many",
            save_acam=True, progress=False, log=lambda _: None,
        )  # fmt: skip
        seg = wsls.segment(fault_env.files, fault_env.bundle)
        for name in ("mask.nii.gz", "mask.nii.gz", "mask.nii"):  # new, replaced, uncompressed
            seg.save(tmp_path / name)
        seg.save_acam(tmp_path / "acam.nii.gz")
        demo.run_demo(tmp_path / "demo", quick=True, progress=False, log=lambda _: None)
    written = {p.name for p in recorder.opens}
    assert any(n.startswith(".summary.csv.") for n in written)
    assert any(n.startswith(".figure2.png.") for n in written)
    assert recorder.bypasses() == []
    assert _temporaries(tmp_path) == []


# ------------------------------------------------------------------ Ctrl-C at random points


def _interrupt(args, delay: float, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``wsls ARGS`` and send SIGINT to its process group (like Ctrl-C) after ``delay``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsls", *map(str, args)],
        env=cli_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _interrupted_cleanly(proc: subprocess.CompletedProcess, where: str) -> None:
    """Exit 130 with one line, or 0 (done before the signal). A signal that lands while
    Python shuts down ends the process by SIGINT itself (a shell shows 130 too), with at most
    that one line."""
    assert proc.returncode in (0, 130, -signal.SIGINT), (where, proc.stderr)
    if proc.returncode == 130 or "error" in proc.stderr:
        _one_error_line(proc.stderr, "interrupted")
    else:
        assert "Traceback" not in proc.stderr, (where, proc.stderr)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctrl_c_during_segment(fault_env, tmp_path, seed):
    delay = random.Random(seed).uniform(0.3, 6.0)
    inputs = _inputs(fault_env, tmp_path / "in")
    before = _digests(inputs)
    out = tmp_path / "out"
    out.mkdir()
    old = shutil.copy(fault_env.mask, out / "mask.nii.gz")
    old_digest = _digest(old)
    proc = _interrupt(["segment", fault_env.bundle, *inputs, "-o", old, "--acam"], delay)
    where = f"SIGINT after {delay:.2f} s"
    _interrupted_cleanly(proc, where)
    import nibabel as nib

    if _digest(old) != old_digest:  # replaced: then by a whole mask
        assert nib.load(str(old)).get_fdata().shape == PHANTOM_SHAPE, where
    assert _temporaries(out) == [], where
    assert _digests(inputs) == before, where


def test_ctrl_c_during_training_then_resume(fault_env, tmp_path):
    delay = random.Random(7).uniform(2.0, 10.0)
    run = tmp_path / "run"
    before = _digests(p for p in fault_env.data.rglob("*") if p.is_file())
    proc = _interrupt(
        ["train", fault_env.data, "--out", run, "--config", fault_env.config, "--no-progress"],
        delay,
    )
    where = f"SIGINT after {delay:.2f} s"
    _interrupted_cleanly(proc, where)
    assert _temporaries(tmp_path) == [], where
    damaged = sorted((run / "cache").glob("*/image.npy")) if run.exists() else []
    if damaged:  # and a cache file truncated since: rebuilt, with one message
        with open(damaged[0], "r+b") as f:
            f.truncate(100)
    resumed = _wsls(
        "train", fault_env.data, "--out", run, "--config", fault_env.config, "--no-progress",
        "--resume",
    )  # fmt: skip
    assert resumed.returncode == 0, (where, resumed.stderr[-2000:])
    if damaged:
        assert resumed.stdout.count("is damaged") == 1, resumed.stdout
    assert wsls.load(run / "bundle").signatures is not None
    assert _temporaries(tmp_path) == []
    assert _digests(p for p in fault_env.data.rglob("*") if p.is_file()) == before


# ------------------------------------------------------------------ full disk, read-only


def _namespace_ok() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k t $d"],
        capture_output=True,
    )
    return probe.returncode == 0


NAMESPACE = pytest.mark.skipif(
    sys.platform != "linux" or not _namespace_ok(),
    reason="needs a user and mount namespace (unshare -rm) to mount a small tmpfs",
)


def _in_namespace(script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a shell script in a fresh user + mount namespace (mounts vanish with it)."""
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        env=cli_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _report(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """KEY=VALUE lines the script printed after running wsls."""
    out = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper():
            out[key] = value
    return out


@NAMESPACE
def test_full_disk_segment_keeps_the_old_mask(fault_env, tmp_path):
    inputs = _inputs(fault_env, tmp_path / "in")
    disk = tmp_path / "disk"
    disk.mkdir()
    old_digest = _digest(fault_env.mask)
    wsls_cmd = f"{sys.executable} -m wsls segment {fault_env.bundle} {inputs[0]} {inputs[1]}"
    script = f"""
        mount -t tmpfs -o size=1m tmpfs {disk} || exit 99
        cp {fault_env.mask} {disk}/mask.nii.gz
        dd if=/dev/zero of={disk}/filler bs=1k 2>/dev/null
        {wsls_cmd} -o {disk}/mask.nii.gz 2>{tmp_path}/err.txt
        echo RC=$?
        echo DIGEST=$(sha256sum {disk}/mask.nii.gz | cut -d' ' -f1)
        echo FILES=$(ls -A {disk} | tr '\\n' ' ')
    """
    report = _report(_in_namespace(script))
    stderr = (tmp_path / "err.txt").read_text()
    assert report["RC"] == "1", stderr
    _one_error_line(stderr, "No space left on device", "mask.nii.gz")
    assert report["DIGEST"] == old_digest
    assert report["FILES"].split() == ["filler", "mask.nii.gz"]


@NAMESPACE
def test_full_disk_training_fails_first_or_names_the_file(fault_env, tmp_path):
    """With the cache: refused before preparing (the estimate does not fit). Without it, on a
    disk that fills during training: one line naming the checkpoint, no temporary file."""
    first, second = tmp_path / "disk1", tmp_path / "disk2"
    first.mkdir()
    second.mkdir()
    train = f"{sys.executable} -m wsls train {fault_env.data} --config {fault_env.config}"
    script = f"""
        mount -t tmpfs -o size=2m tmpfs {first} || exit 99
        mount -t tmpfs -o size=600k tmpfs {second} || exit 99
        {train} --out {first}/run --no-progress >{tmp_path}/o1 2>{tmp_path}/e1
        echo RC1=$?
        echo FILES1=$(find {first} -mindepth 1 | wc -l)
        {train} --out {second}/run --no-progress --no-cache >{tmp_path}/o2 2>{tmp_path}/e2
        echo RC2=$?
        echo TEMPS2=$(find {second} -name '.*{TEMP_SUFFIX}*' | wc -l)
    """
    report = _report(_in_namespace(script))
    stderr = (tmp_path / "e1").read_text()
    assert report["RC1"] == "1", stderr
    _one_error_line(stderr, "not enough free space for the prepared-volume cache", "--no-cache")
    assert report["FILES1"] == "0"  # refused before preparing: not even the run folder
    assert "training on" not in (tmp_path / "o1").read_text()
    stderr = (tmp_path / "e2").read_text()
    assert report["RC2"] == "1", stderr
    _one_error_line(stderr, "No space left on device", ".ckpt")
    assert report["TEMPS2"] == "0"


@NAMESPACE
def test_read_only_outputs_fail_at_once(fault_env, tmp_path):
    inputs = _inputs(fault_env, tmp_path / "in")
    disk = tmp_path / "ro"
    disk.mkdir()
    py = f"{sys.executable} -m wsls"
    script = f"""
        mount -t tmpfs -o size=1m tmpfs {disk} || exit 99
        cp {fault_env.mask} {disk}/mask.nii.gz
        mount -o remount,ro {disk} || exit 98
        {py} segment {fault_env.bundle} {inputs[0]} {inputs[1]} -o {disk}/new/mask.nii.gz \
            >{tmp_path}/o1 2>{tmp_path}/e1
        echo RC1=$?
        {py} segment {fault_env.bundle} {fault_env.data} -o {disk}/masks \
            >{tmp_path}/o2 2>{tmp_path}/e2
        echo RC2=$?
        {py} train {fault_env.data} --out {disk}/run --config {fault_env.config} \
            >{tmp_path}/o3 2>{tmp_path}/e3
        echo RC3=$?
        echo DIGEST=$(sha256sum {disk}/mask.nii.gz | cut -d' ' -f1)
        echo FILES=$(ls -A {disk} | tr '\\n' ' ')
    """
    report = _report(_in_namespace(script))
    for n in (1, 2, 3):
        stderr = (tmp_path / f"e{n}").read_text()
        assert report[f"RC{n}"] == "1", stderr
        _one_error_line(stderr, "read-only file system")
        assert (tmp_path / f"o{n}").read_text() == ""  # nothing computed first
    assert report["DIGEST"] == _digest(fault_env.mask)
    assert report["FILES"].split() == ["mask.nii.gz"]


def test_read_only_folder_by_permission(fault_env, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the namespace test covers root")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        _cli_error(capsys, ["segment", fault_env.bundle, *fault_env.files, "-o",
                            folder / "m.nii.gz"], "no permission to write")  # fmt: skip
    finally:
        folder.chmod(0o755)


class _Disk:
    """``open`` for writing under ``root`` that fails with ENOSPC once ``limit`` bytes have
    been written (any file, any writer): a disk that fills up mid-write."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root, self.limit, self.used = str(root), limit, 0
        self.real_open = builtins.open

    def open(self, file, mode="r", *args, **kwargs):
        handle = self.real_open(file, mode, *args, **kwargs)
        name = file if isinstance(file, str | os.PathLike) else None
        if name is None or not any(c in mode for c in "wax+"):
            return handle
        if not os.path.abspath(os.fspath(name)).startswith(self.root):
            return handle
        return _Filling(handle, self)


class _Filling:
    def __init__(self, handle, disk: _Disk) -> None:
        self._handle, self._disk = handle, disk

    def write(self, data) -> int:
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        if self._disk.used + size > self._disk.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.used += size
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def _writers(fault_env, tmp_path):
    """(name, file, write) for each kind of user file wsls writes."""
    from wsls.io.csvfile import write_csv
    from wsls.method.trained import load_models, save_models
    from wsls.training.checkpoint import save_checkpoint

    seg = fault_env.seg
    models = load_models(fault_env.bundle)
    return [
        ("mask", tmp_path / "mask.nii.gz", lambda p: seg.save(p)),
        ("acam", tmp_path / "acam.nii.gz", lambda p: seg.save_acam(p)),
        ("summary", tmp_path / "summary.csv", lambda p: write_csv(p, [seg.summary()] * 50)),
        ("checkpoint", tmp_path / "last.ckpt",
         lambda p: save_checkpoint(p, {"w": torch.randn(4000)}, {"task": "toy"})),
        ("bundle", tmp_path / "bundle", lambda p: save_models(models, p)),
    ]  # fmt: skip


@pytest.mark.parametrize("limit", [0, 700])
def test_a_disk_that_fills_mid_write_keeps_old_files(
    fault_env, tmp_path, monkeypatch, limit, api_one_thread
):
    """Each writer, over an existing file, on a disk that fills after ``limit`` bytes: an
    OSError naming the file, the old file as it was, no temporary file."""
    for name, path, write in _writers(fault_env, tmp_path):
        write(path)
        before = _digests([path] if path.is_file() else path.iterdir())
        disk = _Disk(tmp_path, limit)
        monkeypatch.setattr(builtins, "open", disk.open)
        with pytest.raises(OSError) as info:
            write(path)
        monkeypatch.setattr(builtins, "open", disk.real_open)
        assert info.value.errno == errno.ENOSPC, (name, info.value)
        assert path.name in str(info.value), (name, str(info.value))
        assert _digests([path] if path.is_file() else path.iterdir()) == before, name
        assert _temporaries(tmp_path) == [], name


def test_a_full_disk_while_caching_leaves_no_temporary_folder(fault_env, tmp_path, monkeypatch):
    from wsls.data.cache import VolumeCache
    from wsls.io.layouts import open_dataset
    from wsls.method.config import WSLSConfig

    config = WSLSConfig.from_dict(FAULT_CONFIG).preprocess
    ref = open_dataset(fault_env.data, "brats", ("flair", "t1c"))[0]
    cache = VolumeCache(config, tmp_path / "cache", log=lambda _: None)
    disk = _Disk(tmp_path, 5000)
    monkeypatch.setattr(builtins, "open", disk.open)
    with pytest.raises(OSError) as info:
        cache.get(ref)
    monkeypatch.setattr(builtins, "open", disk.real_open)
    assert info.value.errno == errno.ENOSPC and "cache" in str(info.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_too_little_space_for_the_cache_is_refused_before_preparing(fault_env, tmp_path,
                                                                    monkeypatch):  # fmt: skip
    import wsls.data.cache as cache_module
    from wsls.data.cache import CacheSpaceError
    from wsls.method.config import WSLSConfig

    monkeypatch.setattr(cache_module, "_free_bytes", lambda folder: 10 << 20)
    prepared = []
    monkeypatch.setattr(cache_module, "preprocess", lambda *a, **k: prepared.append(1))
    with pytest.raises(CacheSpaceError) as info:
        wsls.train(fault_env.data, tmp_path / "run", WSLSConfig.from_dict(FAULT_CONFIG),
                   progress=False, log=lambda _: None)  # fmt: skip
    assert "\n" not in str(info.value) and "MB free" in str(info.value)
    assert prepared == [] and not (tmp_path / "run").exists()


# ------------------------------------------------------------------ truncated caches and bundles


def test_a_truncated_cache_file_is_rebuilt_with_one_message(fault_env, tmp_path):
    from wsls.data.cache import VolumeCache
    from wsls.io.layouts import open_dataset
    from wsls.method.config import WSLSConfig

    config = WSLSConfig.from_dict(FAULT_CONFIG).preprocess
    ref = open_dataset(fault_env.data, "brats", ("flair", "t1c"))[0]
    first = VolumeCache(config, tmp_path / "cache", log=lambda _: None).get(ref)
    image = np.array(first.image)
    [entry] = list((tmp_path / "cache").iterdir())
    for damage in ("truncate", "flip", "delete"):
        path = entry / "image.npy"
        if damage == "truncate":
            with open(path, "r+b") as f:
                f.truncate(1000)
        elif damage == "flip":
            data = bytearray(path.read_bytes())
            data[-5] ^= 0xFF
            path.write_bytes(bytes(data))
        else:
            path.unlink()
        messages: list[str] = []
        cache = VolumeCache(config, tmp_path / "cache", log=messages.append)
        again = cache.get(ref)
        assert len(messages) == 1 and "image.npy" in messages[0], (damage, messages)
        assert "\n" not in messages[0] and cache.rebuilt == 1
        np.testing.assert_array_equal(np.asarray(again.image), image)
        assert (entry / "image.npy").stat().st_size > 1000  # stored again, whole


def _copy_bundle(fault_env, tmp_path) -> Path:
    return Path(shutil.copytree(fault_env.bundle, tmp_path / "bundle"))


def _refused(bundle: Path, *expected: str) -> str:
    with pytest.raises(BundleError) as info:
        wsls.load(bundle)
    message = str(info.value)
    assert "\n" not in message
    for text in expected:
        assert text in message, message
    return message


def test_truncated_and_damaged_bundles_are_one_line(fault_env, tmp_path, capsys):
    bundle = _copy_bundle(fault_env, tmp_path)
    weights = bundle / "classifier.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[: len(original) // 2])
    _refused(bundle, "classifier.safetensors", "checksum mismatch")
    _cli_error(capsys, ["segment", bundle, *fault_env.files, "-o", tmp_path / "m.nii.gz"],
               "checksum mismatch")  # fmt: skip
    assert not (tmp_path / "m.nii.gz").exists()
    weights.write_bytes(original)
    config = bundle / "config.json"
    text = config.read_text()
    config.write_text(text[: len(text) // 2])
    _refused(bundle, "config.json", "not valid JSON")
    config.write_text(text)
    assert wsls.load(bundle).signatures is not None


def test_a_bundle_spec_that_would_need_terabytes_is_refused(fault_env, tmp_path, monkeypatch):
    bundle = _copy_bundle(fault_env, tmp_path)
    doc = json.loads((bundle / "config.json").read_text())
    doc["models"]["classifier"]["width"] = 100000
    (bundle / "config.json").write_text(json.dumps(doc))
    real_empty = torch.empty

    def no_huge(*size, **kwargs):  # a real allocation of the edited width would be ~TB
        tensor = real_empty(*size, **kwargs)
        assert tensor.is_meta or tensor.numel() < 10**8, size
        return tensor

    monkeypatch.setattr(torch, "empty", no_huge)
    message = _refused(bundle, "model 'classifier'", "TB", "refusing to allocate")
    assert "would need" in message


def test_non_finite_weights_are_refused(fault_env, tmp_path):
    from safetensors.torch import load, save

    from wsls.io.checked_files import sha256_file

    bundle = _copy_bundle(fault_env, tmp_path)
    path = bundle / "embedding.safetensors"
    tensors = load(path.read_bytes())
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    path.write_bytes(save(tensors))
    doc = json.loads((bundle / "config.json").read_text())
    doc["weights"]["embedding"]["sha256"] = sha256_file(path)  # a NaN written by training
    (bundle / "config.json").write_text(json.dumps(doc))
    _refused(bundle, "model 'embedding'", "non-finite weights", key)


def test_bundles_without_signatures_still_load(fault_env, tmp_path):
    bundle = _copy_bundle(fault_env, tmp_path)
    doc = json.loads((bundle / "config.json").read_text())
    del doc["config"]["signatures"]
    (bundle / "config.json").write_text(json.dumps(doc))
    models = wsls.load(bundle)
    assert models.signatures is None
    a, b = _inputs(fault_env, tmp_path / "in", names=("a.nii.gz", "b.nii.gz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)  # no order check, so no warning
        wsls.segment([b, a], models)


# ------------------------------------------------------------------ inputs that look wrong


def test_modalities_in_the_wrong_order_are_named(fault_env, tmp_path, api_one_thread):
    a, b = _inputs(fault_env, tmp_path, names=("a.nii.gz", "b.nii.gz"))
    with pytest.warns(InputWarning, match="look like t1c, flair rather than the model's") as got:
        seg = wsls.segment([b, a], fault_env.bundle)
    assert len([w for w in got if w.category is InputWarning]) == 1
    assert "wrong order" in seg.input_warnings[0] and "pass flair, t1c" in seg.input_warnings[0]
    with pytest.raises(DataError, match="refused \\(strict\\)") as info:
        wsls.segment([b, a], fault_env.bundle, strict=True)
    assert "\n" not in str(info.value)
    from wsls.data.preprocess import preprocess
    from wsls.data.signatures import check_order
    from wsls.inputs import to_case

    models = wsls.load(fault_env.bundle)
    prepared = preprocess(to_case([a, b], ("flair", "t1c")), models.config.preprocess)
    right = check_order(models.signatures, prepared.image, prepared.brain, ("flair", "t1c"))
    assert right is not None and not right.suspicious  # the right order: not a word


def test_a_file_named_for_another_modality_is_warned_about(fault_env, tmp_path, capsys):
    flair, t1c = _inputs(fault_env, tmp_path, names=("x_t1ce.nii.gz", "x_flair.nii.gz"))
    code = main(["segment", str(fault_env.bundle), str(flair), str(t1c), "-o",
                 str(tmp_path / "m.nii.gz")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [x for x in err.splitlines() if x.startswith("wsls: warning: ")]
    assert any("x_t1ce.nii.gz: the file name says t1c but it is given as flair" in x
               for x in lines), err  # fmt: skip
    assert "Traceback" not in err
    _cli_error(capsys, ["segment", fault_env.bundle, flair, t1c, "-o", tmp_path / "n.nii.gz",
                        "--strict"], "refused (strict)", "file name says t1c")  # fmt: skip
    assert not (tmp_path / "n.nii.gz").exists()


def _write_like(source: Path, target: Path, affine: np.ndarray) -> Path:
    import nibabel as nib

    data = np.asarray(nib.load(str(source)).dataobj, np.float32)
    nib.save(nib.Nifti1Image(data, affine), str(target))
    return target


def test_implausible_voxel_sizes_are_warned_about(fault_env, tmp_path, capsys):
    from wsls.io.nifti import load_volume

    files = [
        _write_like(f, tmp_path / f.name, np.diag([0.1, 0.1, 0.1, 1])) for f in fault_env.files
    ]
    with pytest.warns(InputWarning, match="voxel size 0.1x0.1x0.1 mm is implausible") as got:
        load_volume(files)
    assert len(got) == 1 and "\n" not in str(got[0].message)
    huge = [_write_like(f, tmp_path / f"h{i}.nii.gz", np.diag([100.0, 100, 100, 1]))
            for i, f in enumerate(fault_env.files)]  # fmt: skip
    code = main(["segment", str(fault_env.bundle), *map(str, huge), "-o", str(tmp_path / "m.nii")])
    err = capsys.readouterr().err
    assert code == 1
    warned = [x for x in err.splitlines() if x.startswith("wsls: warning: ")]
    assert len(warned) == 1 and "voxel size 100x100x100 mm is implausible" in warned[0], err
    _one_error_line(err, "voxels: the voxel size in the header is probably wrong")
    assert not (tmp_path / "m.nii").exists()


def test_a_singular_affine_is_one_line(fault_env, tmp_path, capsys):
    import nibabel as nib

    files = []
    for f in fault_env.files:
        image = nib.load(str(f))
        header = image.header.copy()
        for key in ("srow_x", "srow_y", "srow_z"):
            header[key] = 0  # an all-zero sform, which nibabel then reports as the affine
        header["sform_code"], header["qform_code"] = 2, 0
        files.append(tmp_path / f.name)
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj), None, header=header), str(files[-1]))
    assert not np.linalg.det(nib.load(str(files[0])).affine[:3, :3])
    _cli_error(capsys, ["segment", fault_env.bundle, *files, "-o", tmp_path / "m.nii.gz"],
               "affine (sform/qform) is singular")  # fmt: skip


# ------------------------------------------------------------------ outputs: first, never an input


def test_the_output_may_not_be_an_input(fault_env, tmp_path, capsys):
    victim, t1c = _inputs(fault_env, tmp_path, names=("victim_flair.nii.gz", "t1c.nii.gz"))
    before = _digests([victim, t1c])
    _cli_error(capsys, ["segment", fault_env.bundle, victim, t1c, "-o", victim],
               "is an input of this run", "victim_flair.nii.gz")  # fmt: skip
    link = tmp_path / "link.nii.gz"
    link.symlink_to(victim)
    _cli_error(capsys, ["segment", fault_env.bundle, victim, t1c, "-o", link],
               "is an input of this run")  # fmt: skip
    case = fault_env.data / fault_env.cases[0]
    brain = next(case.glob("*brainmask*"))
    _cli_error(capsys, ["segment", fault_env.bundle, case, "-o", brain],
               "is an input of this run")  # fmt: skip
    _cli_error(capsys, ["segment", fault_env.bundle, victim, t1c, "-o",
                        fault_env.bundle / "mask.nii.gz"], "inside the model bundle")  # fmt: skip
    seg = wsls.segment([victim, t1c], fault_env.bundle)
    with pytest.raises(OutputError, match="is an input"):
        seg.save(victim)
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(victim, loose / "x_lesion.nii.gz")  # a case whose mask name is "x_lesion_lesion"
    shutil.copy(victim, loose / "x.nii.gz")  # ...and one whose mask would be x_lesion.nii.gz
    with pytest.raises(OutputError, match="x_lesion.nii.gz is an input"):
        wsls.segment_many(loose, wsls.load(fault_env.bundle, modalities=None), loose,
                          progress=False, log=lambda _: None)  # fmt: skip
    assert _digests([victim, t1c]) == before


def test_outputs_are_checked_before_any_work(fault_env, tmp_path, capsys, monkeypatch):
    import wsls.api as api

    def computed(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(api, "resolve_model", computed)
    (tmp_path / "afile").write_text("x")
    bundle, files = fault_env.bundle, fault_env.files
    _cli_error(capsys, ["segment", bundle, *files, "-o", tmp_path / "afile" / "m.nii.gz"],
               "afile is a file, not a folder")  # fmt: skip
    _cli_error(capsys, ["segment", bundle, fault_env.data, "-o", tmp_path / "afile"],
               "exists and is a file")  # fmt: skip
    (tmp_path / "x.nii.gz").mkdir()
    _cli_error(capsys, ["segment", bundle, *files, "-o", tmp_path / "x.nii.gz"],
               "is an existing folder with an image file's name")  # fmt: skip
    _cli_error(capsys, ["segment", bundle, *files, "-o", tmp_path / "m.nii.gz", "--device",
                        "tpu"], "device 'tpu'")  # fmt: skip
    _cli_error(capsys, ["segment", bundle, *files, "-o", tmp_path / "m.nii.gz", "--seeds", "0"],
               "--seeds must be >= 1")  # fmt: skip
    _cli_error(capsys, ["segment", bundle, *files, "-o", tmp_path / "m.nii.gz", "--threshold",
                        "1.5"], "--threshold")  # fmt: skip
    _cli_error(capsys, ["evaluate", bundle, fault_env.data, "--folds", "1", "--out",
                        tmp_path / "e"], "--folds must be >= 2")  # fmt: skip
    _cli_error(capsys, ["evaluate", bundle, fault_env.data, "--out", tmp_path / "afile"],
               "exists and is a file")  # fmt: skip
    _cli_error(capsys, ["demo", "--out", tmp_path / "afile"], "exists and is a file")


def test_training_mistakes_are_one_line_before_preparing(fault_env, tmp_path, capsys,
                                                         monkeypatch):  # fmt: skip
    import wsls.training.run as run_module

    def prepared(*args, **kwargs):
        raise AssertionError("the data were prepared before the mistake was found")

    monkeypatch.setattr(run_module, "prepare_cases", prepared)
    (tmp_path / "afile").write_text("x")
    data, config = fault_env.data, fault_env.config
    out = tmp_path / "run"
    for argv, expected in [
        (["--patches", "-5"], "--patches must be >= 1, got -5"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--members", "0"], "--members must be >= 1, got 0"),
        (["--device", "tpu"], "device 'tpu' is not a device torch knows"),
    ]:
        _cli_error(capsys, ["train", data, "--out", out, "--config", config, *argv], expected)
        assert not out.exists()
    _cli_error(capsys, ["train", data, "--out", tmp_path / "afile" / "run"],
               "afile is a file, not a folder")  # fmt: skip
    _cli_error(capsys, ["train", data, "--out", data], "is the dataset folder")


def test_save_into_a_folder_writes_the_case_file(fault_env, tmp_path):
    seg = fault_env.seg
    path = seg.save(tmp_path)
    assert path == tmp_path / f"{seg.case_id}_lesion.nii.gz" and path.is_file()
    assert seg.save_acam(tmp_path) == tmp_path / f"{seg.case_id}_acam.nii.gz"
    with pytest.raises(DataError, match="must end in .nii, .nii.gz or .nrrd"):
        seg.save(tmp_path / "mask.png")


# ------------------------------------------------------------------ --skip-existing


def test_skip_existing_redoes_half_written_masks(fault_env, tmp_path, api_one_thread):
    """Only masks that read completely on the input's grid are skipped; a truncated one (its
    header still reads), one on another grid and an empty summary.csv are redone, with a
    message each."""
    import nibabel as nib

    out = tmp_path / "out"
    out.mkdir()
    first, second, third = (out / f"{c}_lesion.nii.gz" for c in fault_env.cases)
    truth = [fault_env.data / c / f"{c}_seg.nii.gz" for c in fault_env.cases]
    whole = truth[0].read_bytes()
    first.write_bytes(whole[: len(whole) // 2])  # a crash mid-write, by an older writer
    nib.load(str(first))  # (its header does read)
    small = nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.eye(4))
    nib.save(small, str(second))  # a mask from another grid
    shutil.copy(truth[2], third)  # a whole mask on the right grid
    (out / "summary.csv").write_bytes(b"")  # left by a crash
    kept = _digest(third)
    messages: list[str] = []
    rows = wsls.segment_many(fault_env.data, fault_env.bundle, out, skip_existing=True,
                             progress=False, log=messages.append)  # fmt: skip
    by_case = {r["case"]: r for r in rows}
    assert not by_case[fault_env.cases[0]].get("skipped")
    assert not by_case[fault_env.cases[1]].get("skipped")
    skipped = by_case[fault_env.cases[2]]
    assert skipped["skipped"] and _digest(third) == kept
    labels = np.asarray(nib.load(str(truth[2])).dataobj)
    assert skipped["lesion_voxels"] == int(np.count_nonzero(labels > 0.5))
    said = "\n".join(messages)
    assert f"{fault_env.cases[0]}: the existing output is incomplete" in said
    assert "truncated or corrupt" in said and "on another grid" in said
    assert "summary.csv is empty or unreadable" in said
    for path in (first, second):
        assert nib.load(str(path)).get_fdata().shape == PHANTOM_SHAPE
    with open(out / "summary.csv") as handle:
        assert [r["case"] for r in csv.DictReader(handle)] == fault_env.cases
    assert _temporaries(out) == []
