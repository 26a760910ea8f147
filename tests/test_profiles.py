import pytest

from miue.profiles import PROFILES, profile


def test_profiles_exist_and_override():
    assert set(PROFILES) == {"smoke", "cpu", "full", "cifar", "gpu", "paper"}
    p = profile("cpu", dataset="cifar10", seeds=[0], width=1)
    assert p.dataset == "cifar10" and p.seeds == (0,) and p.width == 1.0 and p.name == "cpu"
    assert profile("paper").victim_lr == 0.5 and profile("paper").victim_epochs == 200
    assert profile("cpu", n_train=None).n_train is None  # None is a value: the whole split
    assert profile("full").n_train is None and profile("full").width == profile("cpu").width


@pytest.mark.parametrize("kwargs, error, message", [
    ({"victim_epochs": "10"}, TypeError, "victim_epochs.*must be int"),
    ({"seeds": 0}, TypeError, "seeds"),
    ({"width": True}, TypeError, "width"),
    ({"epochs": 3}, ValueError, "no field 'epochs'.*victim_epochs"),
    ({"attacks": {"miue": 3}}, TypeError, "attacks"),
])
def test_bad_overrides_are_rejected(kwargs, error, message):
    with pytest.raises(error, match=message):
        profile("smoke", **kwargs)


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile 'fast'.*smoke"):
        profile("fast")


def test_the_code_variant_step_ramps_up_at_every_profile_as_in_the_authors_code():
    """The authors' code ramps the PGD step up (0.2/255 → 0.4/255); a profile that sets a larger start
    step without its own final step would ramp it down instead."""
    from miue import experiments as ex
    from miue.profiles import PROFILES
    for name, p in PROFILES.items():
        cfg = ex.attack_config(p, "miue-code")
        start = cfg.get("step_size", 0.2 / 255)
        final = cfg.get("step_size_final", 0.4 / 255)
        assert final >= start, (name, start * 255, final * 255)


def test_the_cifar_profile_is_the_copy_at_its_calibrated_setting_and_its_table2_grid_has_every_method():
    from miue import chapters
    from miue import experiments as ex
    p = profile("cifar")
    assert p.dataset == "cifar10-jpeg" and p.precision == "bf16" and len(p.seeds) == 3
    # the calibration's 20,000-image victim is the profile's clean victim at seed 0: one run, not two
    calibrated = [s.address for s in chapters.chapter_specs("cifar_calibration", profile("cpu"))]
    assert ex.victim_spec(p, "clean", 0).address in calibrated
    victims = [s for s in chapters.chapter_specs("cifar_table2", p) if s.kind == "victim"]
    assert {s.method for s in victims} == set(chapters.STRENGTH_METHODS)
    assert [s.method for s in victims[:len(chapters.CIFAR_TABLE2_SEEDED)]] == list(chapters.CIFAR_TABLE2_SEEDED)
    for m in chapters.CIFAR_TABLE2_SEEDED:  # three seeds where a claim's verdict reads the method
        assert sorted(s.seed for s in victims if s.method == m) == [0, 1, 2]
    # REM's and SEM's budgets are passes over the set: 8 of them over 20,000 images in batches of 128
    rem = ex.attack_config(p, "rem")
    assert rem["steps"] * rem["batch_size"] / p.n_train == pytest.approx(8, rel=0.01) and rem["precision"] == "bf16"


def test_a_chapters_parameters_are_checked_by_their_defaults_and_declared_types():
    """book.declare/check_parameters: a parameter takes its default's type; one whose default is None takes
    the type declared for it, or None; methods and archs are checked by name, with one message each."""
    from miue import book
    ns = {"existing": 1}
    book.begin(ns)
    ns.update(profile="cpu", dataset=None, methods=None, seeds=None, progress=True)
    book.declare(ns, dataset=str, methods=list)
    assert book.check_parameters(ns)["dataset"] is None
    for name, value, message in [("dataset", 3, "parameter dataset must be a str or None, got 3"),
                                 ("methods", "em", "parameter methods must be a list or None"),
                                 ("progress", 1, "parameter progress must be a bool"),
                                 ("profile", None, "parameter profile must be a str")]:
        bad = {**ns, name: value}
        with pytest.raises(book.ParameterError, match=message):
            book.check_parameters(bad)
    assert book.check_parameters({**ns, "seeds": [1], "methods": ["clean"]})["seeds"] == [1]  # undeclared None: any
    with pytest.raises(RuntimeError, match="nope is no parameter"):
        book.declare(dict(ns), nope=str)
    assert book.check_methods(["clean", "em"]) == ["clean", "em"]
    with pytest.raises(book.ParameterError, match="parameter jpeg_methods must be a list that includes 'clean'"):
        book.check_methods(["em"], name="jpeg_methods")
    assert book.check_methods(["em"], need_clean=False) == ["em"]
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        book.check_methods(["clean", "nope"])
    assert book.check_archs(("lenet5",)) == ["lenet5"]
    for archs in ([], "lenet5", ["resnet9000"]):
        with pytest.raises(book.ParameterError, match="parameter archs must be a non-empty list"):
            book.check_archs(archs)
