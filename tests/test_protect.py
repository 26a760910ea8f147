"""``miue protect`` and ``miue verify`` as a data owner uses them: real files in, real PNGs out."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from miue import protect as pr
from miue.protect import cli as pr_cli
from miue.protect import images as pr_images
from miue.protect import protection as pr_protection
from miue.runs import RunStore

SMALL = dict(profile_name="smoke", reference_size=60, progress=False)


@pytest.fixture(scope="module", autouse=True)
def _state_root(tmp_path_factory):
    """Default state folders (and the originals' pointer) in a scratch folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIUE_STATE", str(tmp_path_factory.mktemp("state")))
        yield


def _photo(rng, w, h, base):
    """A smooth colour image (gradient + blobs), so JPEG keeps it and classes differ."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([base[0] + 60 * np.sin(xx / (7 + c)) + 40 * np.cos(yy / (5 + c)) for c in range(3)], -1)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _sha_tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """An owner's folder: two classes; JPEG with an EXIF rotation, grayscale PNG, RGBA PNG, odd sizes."""
    root = tmp_path_factory.mktemp("protect")
    src = root / "in"
    rng = np.random.default_rng(0)
    for c, (name, base) in enumerate((("cats", (90, 120, 60)), ("mugs", (200, 60, 150)))):
        (src / name).mkdir(parents=True)
        for k in range(8):
            w, h = int(rng.integers(34, 90)), int(rng.integers(34, 70))
            arr = _photo(rng, w, h, base)
            if k == 0:  # EXIF orientation 6: displayed rotated by 90°
                exif = Image.Exif()
                exif[0x0112] = 6
                exif[0x010F] = "CameraMaker"
                Image.fromarray(arr).save(src / name / f"{k}.jpg", quality=95, exif=exif.tobytes())
            elif k == 1:
                Image.fromarray(arr).convert("L").save(src / name / f"{k}.png")
            elif k == 2:
                a = np.dstack([arr, np.full(arr.shape[:2], 200, np.uint8)])
                Image.fromarray(a, "RGBA").save(src / name / f"{k}.png")
            else:
                Image.fromarray(arr).save(src / name / f"{k}.jpg", quality=90)
    before = _sha_tree(src)
    out = root / "out"
    result = pr.protect(src, out, **SMALL, keep_state=True)
    return src, out, result, before


def _source(src: Path, published: str) -> Path:
    """The original of a published PNG: the same relative name, any suffix."""
    stem = Path(published).with_suffix("")
    (match,) = [p for p in (src / stem.parent).iterdir() if p.stem == stem.name]
    return match


def test_outputs_are_pngs_of_the_same_names_sizes_and_within_budget(folders):
    src, out, result, before = folders
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["images"] == 16 and result.written == 16
    assert manifest["classes"] == ["cats", "mugs"] and manifest["layout"] == "classes"
    assert manifest["epsilon"] == "8/255" and manifest["method"] == "miue"
    for e in manifest["images"]:
        original = pr.open_image(_source(src, e["path"]))  # EXIF orientation applied
        written = Image.open(out / e["path"])
        assert e["sha256"] == hashlib.sha256((out / e["path"]).read_bytes()).hexdigest()
        assert written.format == "PNG" and written.size == original.size
        assert not written.info.get("exif") and not written.getexif()
        assert written.mode == {"L": "L", "RGBA": "RGBA"}.get(original.mode, "RGB")
        a = np.asarray(original.convert(written.mode)).astype(int)
        b = np.asarray(written).astype(int)
        assert np.abs(a - b).max() <= 8, e["path"]  # ⌊255 · 8/255⌋ levels after resizing and rounding
        assert np.abs(a - b).max() == e["linf_levels"]
        if written.mode == "RGBA":
            assert (b[..., 3] == a[..., 3]).all()  # alpha untouched
        assert np.abs(a - b).max() > 0
    rotated = pr.open_image(src / "cats" / "0.jpg")
    assert rotated.size == Image.open(src / "cats" / "0.jpg").size[::-1]


def test_protect_never_writes_into_the_input_folder(folders):
    src, out, result, before = folders
    assert _sha_tree(src) == before


def _published_only(out: Path, with_manifest: bool = True) -> None:
    """OUT_DIR holds the protected PNGs (and the manifest) and nothing else, hidden files included."""
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    others = [f for f in found if not (f.endswith(".png") and not Path(f).name.startswith("."))
              and f != "manifest.json"]
    assert others == [], f"OUT_DIR holds what is not meant to be published: {others}"
    assert ("manifest.json" in found) == with_manifest


def test_the_published_folder_holds_nothing_that_undoes_the_protection(folders):
    src, out, result, before = folders
    _published_only(out)
    text = (out / "manifest.json").read_text()
    assert str(src) not in text and str(src.resolve()) not in text  # no input path
    for digest in before.values():  # no digest of an original file
        assert digest not in text
    for s in pr.scan(src, 32)[0]:  # nor of its pixels
        assert s.pixels_sha256 not in text
    assert result.state is not None and (result.state / pr.JOURNAL).is_file()  # kept on purpose, outside OUT_DIR
    assert out.resolve() not in result.state.resolve().parents


def test_an_interrupted_run_leaves_only_published_files_and_resumes_to_the_same_bytes(folders, tmp_path,
                                                                                      monkeypatch):
    src, out, result, before = folders
    state = tmp_path / "state"
    calls = {"n": 0}
    real = pr_images._png_bytes

    def interrupted(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*a, **kw)
    monkeypatch.setattr(pr_protection, "_png_bytes", interrupted)  # where protect looks it up
    out2 = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        pr.protect(src, out2, **SMALL, state=state)
    _published_only(out2, with_manifest=False)
    assert len(list(out2.rglob("*.png"))) == 5 and (state / pr.JOURNAL).is_file()
    monkeypatch.setattr(pr_protection, "_png_bytes", real)
    again = pr.protect(src, out2, **SMALL, state=state)
    assert again.skipped == 5 and again.written == 11
    _published_only(out2)
    assert not state.exists()  # removed once finished
    pngs = lambda d: {k: v for k, v in _sha_tree(d).items() if k.endswith(".png")}  # noqa: E731
    assert pngs(out2) == pngs(out)


def test_an_interrupted_generation_publishes_nothing_and_old_state_in_out_dir_is_removed(folders, tmp_path,
                                                                                         monkeypatch):
    src, out, result, before = folders
    out2 = tmp_path / "out"
    (out2 / ".miue" / "cache").mkdir(parents=True)  # what an older miue left there: δ itself
    (out2 / ".miue" / "cache" / "delta.safetensors").write_bytes(b"x")
    (out2 / "cats").mkdir()
    (out2 / "cats" / f".0.png.123{pr.PART_SUFFIX}").write_bytes(b"half")

    def stop(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(pr_protection, "_generation_data", stop)
    with pytest.raises(KeyboardInterrupt):
        pr.protect(src, out2, **SMALL, state=tmp_path / "state")
    assert [p for p in out2.rglob("*") if p.is_file()] == []
    with pytest.raises(pr.ProtectError, match="inside OUT_DIR"):
        pr.protect(src, out2, **SMALL, state=out2 / "state")


def test_an_interrupted_protect_resumes_file_by_file(folders):
    src, out, result, before = folders
    outputs = _sha_tree(out)
    (out / "mugs" / "3.png").unlink()
    again = pr.protect(src, out, **SMALL, keep_state=True)
    assert again.written == 1 and again.skipped == 15
    assert {k: v for k, v in _sha_tree(out).items() if k.endswith(".png")} == \
        {k: v for k, v in outputs.items() if k.endswith(".png")}


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "bad.png").write_bytes(b"not an image at all"), "not a readable image"),
    (lambda d: (d / "cut.jpg").write_bytes(_jpeg_bytes()[:600]), "damaged or cut short"),
    (lambda d: _animated_gif(d / "anim.gif"), "animated"),
    (lambda d: Image.new("RGB", (20, 40)).save(d / "tiny.png"), "smaller than the model's 32×32 input"),
])
def test_bad_inputs_are_refused_with_one_clear_message(tmp_path, make, message):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_photo(np.random.default_rng(1), 40, 40, (100, 100, 100))).save(src / "ok.png")
    make(src)
    with pytest.raises(pr.ProtectError, match=message):
        pr.protect(src, tmp_path / "out", **SMALL)
    assert not (tmp_path / "out" / "manifest.json").exists()


def _jpeg_bytes():
    import io
    buf = io.BytesIO()
    Image.fromarray(_photo(np.random.default_rng(2), 64, 64, (50, 90, 200))).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _animated_gif(path):
    frames = [Image.new("RGB", (40, 40), c) for c in ("red", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def test_folders_and_budget_are_checked_before_anything_is_computed(tmp_path):
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(src / "a" / "x.png")
    with pytest.raises(pr.ProtectError, match="inside IN_DIR"):
        pr.protect(src, src / "protected", **SMALL)
    with pytest.raises(pr.ProtectError, match="inside OUT_DIR"):
        pr.protect(src, tmp_path, **SMALL)
    with pytest.raises(pr.ProtectError, match="above 16/255.*--force"):
        pr.protect(src, tmp_path / "out", epsilon="20/255", **SMALL)
    with pytest.raises(pr.ProtectError, match="one class and --reference none"):
        pr.protect(src, tmp_path / "out", reference="none", **SMALL)
    for method in ("lsp", "ops", "random"):  # not an l∞ protection: refused with the l∞ methods named
        with pytest.raises(pr.ProtectError, match="choose one of ap, .*em, .*miue, miue-code"):
            pr.protect(src, tmp_path / "out", **{**SMALL, "method": method})
    Image.new("RGB", (40, 40)).save(src / "top.png")
    with pytest.raises(pr.ProtectError, match="both at its top level"):
        pr.protect(src, tmp_path / "out", **SMALL)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, value", [("8/255", 8 / 255), ("8", 8 / 255), ("0.0314", 0.0314), (" 4/255 ", 4 / 255)])
def test_epsilon_parsing(text, value):
    assert pr.parse_epsilon(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "0", "-1/255", "2.5", "1/0"])
def test_bad_epsilon_is_refused(text):
    with pytest.raises(pr.ProtectError, match="epsilon"):
        pr.parse_epsilon(text)


def test_resizing_keeps_the_budget_for_any_size():
    import torch
    g = torch.Generator().manual_seed(0)
    delta = (torch.rand(3, 32, 32, generator=g) * 2 - 1) * (8 / 255)
    for h, w in ((32, 32), (33, 97), (500, 41)):
        px = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        out = pr.protected_pixels(px, delta, 8 / 255)
        assert out.shape == px.shape and out.dtype == torch.uint8
        assert (out.int() - px.int()).abs().max() <= 8


def test_verify_trains_a_protected_and_a_control_victim(folders, tmp_path):
    src, out, result, before = folders
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    rec = pr.verify(out, originals=src, profile_name="smoke", reference_size=60, progress=False, store=store)
    m = rec["metrics"]
    assert set(m["protected"]["protected_class_acc"]) == {"cats", "mugs"}
    assert m["n_train_owner"] == 12 and m["n_test_owner"] == 4 and m["n_reference"] == 60
    for arm in ("protected", "control"):
        assert 0 <= m[arm]["protected_classes_acc"] <= 1 and 0 <= m[arm]["reference_acc"] <= 1
    assert m["protected"]["correct"] == round(4 * m["protected"]["protected_classes_acc"])
    table = pr.verify_table(rec)
    assert "protected" in table and "cannot tell" in table.splitlines()[-1]  # 4 held-out images decide nothing
    # the same check again reads the record; the originals are remembered from protect on this machine
    assert pr.verify(out, profile_name="smoke", reference_size=60, progress=False, store=store)["hash"] == rec["hash"]


def test_verify_needs_the_true_originals(folders, tmp_path):
    src, out, result, before = folders
    other = tmp_path / "elsewhere"
    (other / "cats").mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(other / "cats" / "stray.png")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    with pytest.raises(pr.ProtectError, match="lacks the originals of 16 protected images"):
        pr.verify(out, originals=other, profile_name="smoke", reference_size=60, progress=False, store=store)
    import shutil
    shutil.rmtree(other)
    shutil.copytree(src, other)
    for f in (other / "cats").iterdir():  # same names and sizes, other pictures
        im = Image.open(f)
        Image.fromarray(np.random.default_rng(5).integers(0, 256, (im.size[1], im.size[0], 3), dtype=np.uint8)
                        ).convert(im.mode).save(f)
    with pytest.raises(pr.ProtectError, match="is not the original of"):
        pr.verify(out, originals=other, profile_name="smoke", reference_size=60, progress=False, store=store)


@pytest.mark.parametrize("control, protected, n, outcome", [
    (0, 0, 3, "cannot tell"), (90, 20, 100, "works"), (88, 86, 400, "does not work"), (9, 6, 12, "cannot tell")])
def test_verify_decides_only_when_the_held_out_set_can_tell(control, protected, n, outcome):
    v = pr.verdict(control, protected, n)
    assert v["verdict"] == outcome and v["gap_low"] <= v["gap"] <= v["gap_high"]
    line = pr.verdict_line(v)
    assert "\n" not in line and line.startswith({"works": "protection works", "does not work":
                                                 "protection does not work", "cannot tell": "cannot tell"}[outcome])
    if outcome == "cannot tell" and control != protected:
        assert v["needed_test"] > n and "held-out images" in line
        w = pr.verdict(round(control / n * v["needed_test"]), round(protected / n * v["needed_test"]), v["needed_test"])
        assert w["verdict"] != "cannot tell"
    lo, hi = pr.wilson(0, 3)
    assert lo == 0 and 0.5 < hi < 0.6  # 0 of 3 is no evidence of 0%


def test_verify_refuses_a_changed_protected_file(folders, tmp_path):
    src, out, result, before = folders
    target = out / "cats" / "4.png"
    keep = target.read_bytes()
    try:
        Image.new("RGB", Image.open(target).size).save(target)
        with pytest.raises(pr.ProtectError, match="differs from the manifest"):
            pr.verify(out, originals=src, profile_name="smoke", reference_size=60, progress=False,
                      store=RunStore(tmp_path / "runs", tmp_path / "cache"))
    finally:
        target.write_bytes(keep)


@pytest.mark.slow
def test_cli_reads_like_a_man_page_and_refuses_cleanly(tmp_path):
    exe = [sys.executable, "-m", "miue.cli"]
    top = subprocess.run(exe + ["--help"], capture_output=True, text=True)
    assert "protect" in top.stdout and "verify" in top.stdout and "grid" in top.stdout
    helptext = subprocess.run(exe + ["protect", "--help"], capture_output=True, text=True).stdout
    for word in ("IN_DIR", "OUT_DIR", "--epsilon", "--reference", "manifest.json", "resumes"):
        assert word in helptext
    (tmp_path / "in").mkdir()
    r = subprocess.run(exe + ["protect", str(tmp_path / "in"), str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("miue protect:") and "holds no images" in r.stderr
    assert "Traceback" not in r.stderr
    assert "  protect   protect" in top.stdout  # the listing's columns do not run together
    for cmd in (["protect", str(tmp_path / "in"), str(tmp_path / "out")], ["audit"], ["verify", str(tmp_path)]):
        r = subprocess.run(exe + cmd + ["--profile", "nope"], capture_output=True, text=True)
        assert r.returncode == 2 and "invalid choice: 'nope'" in r.stderr and "Traceback" not in r.stderr, cmd
    r = subprocess.run(exe + ["protect", str(tmp_path / "in"), str(tmp_path / "out"), "--epsilon", "255"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "levels of 255" in r.stderr and "between 0 and 1" not in r.stderr


def test_ctrl_c_prints_one_line_and_exits_130(monkeypatch, capsys):
    from miue import cli

    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(pr_cli, "protect", interrupted)  # where `miue protect` looks it up
    assert cli.main(["protect", "a", "b"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "miue protect: interrupted; run the same command to resume"


@pytest.mark.slow
def test_verify_on_an_odd_sized_folder_at_the_default_thread_count(tmp_path):
    """A three-class folder of 12 photographs: 9 protected training images + 60 reference ones make an odd
    last batch, which crashed natively at 2 threads (oneDNN; see models.StridedPointwiseConv)."""
    env = {**os.environ, "MIUE_STATE": str(tmp_path / "state")}
    env.pop("OMP_NUM_THREADS", None)
    photos = pr.sample_photos(tmp_path / "photos", crops=4, photos=("astronaut", "chelsea", "coffee"))
    exe = [sys.executable, "-m", "miue.cli"]
    common = ["--profile", "smoke", "--reference-size", "60", "--quiet"]
    r = subprocess.run(exe + ["protect", str(photos), str(tmp_path / "out")] + common, capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 images" not in r.stdout
    r = subprocess.run(exe + ["verify", str(tmp_path / "out")] + common, capture_output=True, text=True, env=env)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.strip().splitlines()[-1].startswith("cannot tell whether the protection works")
    assert "(9 protected training images, 3 held-out originals, 60 reference images" in r.stdout


def test_one_folder_is_one_class_protected_against_the_reference(tmp_path):
    src = tmp_path / "my-drawings"
    src.mkdir()
    rng = np.random.default_rng(3)
    for k in range(3):
        Image.fromarray(_photo(rng, 40 + k, 50, (120, 80, 40))).save(src / f"d{k}.png")
    images, layout = pr.scan(src, 32)
    assert layout == "one folder" and {s.label for s in images} == {"my-drawings"}
    cfg = pr.protect_config(images, "miue", 8 / 255, "smoke", "fashion-mnist", 60)
    assert cfg["owner_classes"] == ["my-drawings"] and cfg["reference"]["size"] == 60
    data, owner = pr_protection._generation_data(images, cfg, "fashion-mnist")
    assert data.num_classes == 11 and data.classes[-1] == "my-drawings"  # ten reference classes + the owner's
    assert (data.labels[owner] == 10).all() and len(owner) == 3 and data.images.shape[1:] == (3, 32, 32)
    # the run depends on the pixels, not on how the file was encoded
    Image.open(src / "d0.png").save(src / "d0.png", optimize=True, compress_level=1)
    assert pr_images._inputs_digest(pr.scan(src, 32)[0]) == pr_images._inputs_digest(images)


def test_the_work_is_sized_to_the_job():
    """A dozen photographs get a small reference set; MI-UE's source model gets ~640 steps whatever the size."""
    assert pr.auto_reference_size(12, "cpu") == 100 and pr.auto_reference_size(1000, "cpu") == 1000
    assert pr.auto_reference_size(50_000, "cpu") == 4000
    cpu_epochs = 8
    small = pr.job_budget({"epochs": cpu_epochs}, 112)
    assert small == {"batch_size": 128, "epochs": 40}  # capped at 5× the profile's epochs
    assert pr.job_budget({"epochs": cpu_epochs}, 2000)["epochs"] == 40
    assert pr.job_budget({"epochs": cpu_epochs}, 20_000)["epochs"] == cpu_epochs  # never below the profile's
    images, _ = pr.scan(pr.sample_photos(Path(__import__("tempfile").mkdtemp()) / "p", crops=4,
                                         photos=("astronaut", "chelsea", "coffee")), 32)
    cfg = pr.protect_config(images, "miue", 8 / 255, "cpu", "fashion-mnist", pr.auto_reference_size(12, "cpu"))
    assert cfg["attack"]["epochs"] == 40 and cfg["attack"]["batch_size"] == 128 and cfg["reference"]["size"] == 100
    assert pr.protect_config(images, "em", 8 / 255, "cpu", "fashion-mnist", 100)["attack"]["max_rounds"] == 6
    code = pr.protect_config(images, "miue-code", 8 / 255, "cpu", "fashion-mnist", 100)["attack"]
    assert code["epochs"] == 40 and code["batch_size"] == 512 and code["train_batch_size"] == 128  # the code's batches


def test_the_times_in_the_help_are_the_committed_runs():
    """--help quotes what the defaults cost: the committed records of the book's two jobs say the same."""
    import re
    store = RunStore()
    text = pr.PROTECT_TIMES.replace("\n    ", " ")
    recs = {}
    for job in pr.COST_JOBS:
        cfg, vcfg = pr.default_job_configs(job, "cpu", store)
        recs[job] = (store.get("protect", cfg), store.get("verify", vcfg))
        assert all(recs[job]), f"the committed records of {job} are missing"
    dozen, thousand = recs["dozen"], recs["cifar-1000"]
    assert f"protect {dozen[0]['provenance']['wall_time_s']:.0f} s, verify {dozen[1]['provenance']['wall_time_s']:.0f} s" in text
    assert (f"protect {thousand[0]['provenance']['wall_time_s'] / 60:.1f} min, verify "
            f"{thousand[1]['provenance']['wall_time_s'] / 60:.1f} min") in text
    v = pr.record_verdict(thousand[1])
    m = thousand[1]["metrics"]
    assert (f"protected victim {100 * m['protected']['protected_classes_acc']:.1f}%, control "
            f"{100 * m['control']['protected_classes_acc']:.1f}% on {m['n_test_owner']} held-out images, gap "
            f"{100 * v['gap']:.1f} points (95% interval {100 * v['gap_low']:.1f} to {100 * v['gap_high']:.1f})") in text
    assert ("protection works" in text) == (v["verdict"] == "works")
    assert re.search(r"cannot tell", text) and pr.record_verdict(dozen[1])["verdict"] == "cannot tell"
