"""The MI study's summary (chapter 8's paragraph and chapter 2's conclusion state it from one function)."""

import math

from miue import mi_study


def _study(shuffled, excess, ksg=None):
    def rec(m, x):
        return {"metrics": {"mi": shuffled + x, "mi_shuffled": shuffled, "mi_excess": x, "n_per_class": 6000,
                            "feature_dim": 64}, "config": {"bins": 100}}
    out = {(m, "histogram", False): rec(m, x) for m, x in excess.items()}
    out.update({(m, "ksg", False): {"metrics": {"mi": v}} for m, v in (ksg or {}).items()})
    return out


def test_the_bias_reaches_the_papers_level_in_nats_in_bits_or_not_at_all():
    methods = ["clean", "em", "ap", "miue"]
    excess = {"clean": 0.05, "em": 0.02, "ap": 0.01, "miue": 0.03}
    assert mi_study.summary(_study(0.55, excess), methods)["reach"] == "nats"
    assert mi_study.summary(_study(0.40, excess), methods)["reach"] == "bits"  # 0.58 bits
    s = mi_study.summary(_study(0.30, excess), methods)  # 0.43 bits: short of 0.50 in either unit
    assert s["reach"] is None and "reaches it for none of the methods" in mi_study.reach_sentence(s)
    assert s["ues"] == ["em", "ap", "miue"] and s["ues_below_clean"] is True
    assert math.isclose(s["shuffled"], 0.30) and s["n_per_class"] == 6000
    assert math.isclose(s["bias_share"]["clean"], 0.30 / 0.35) and math.isnan(s["ksg_distance"])


def test_the_bias_is_judged_per_method_against_both_ends_of_the_papers_range():
    methods = ["clean", "em", "ap"]
    study = _study(0.30, {"clean": 0.1, "em": 0.02, "ap": 0.01})
    study[("clean", "histogram", False)]["metrics"].update(mi=0.47, mi_shuffled=0.37)  # 0.53 bits: reaches 0.50
    s = mi_study.summary(study, methods)
    assert s["reach_by"] == {"clean": "bits", "em": None, "ap": None} and s["reach"] == "bits"
    text = mi_study.reach_sentence(s)
    assert "0.30–0.37 nats" in text and "reaches its bottom (0.50)** in bits for Clean," in text
    assert "but not its top (0.71) in nats or in bits" in text  # 0.53 bits < 0.71
    study[("em", "histogram", False)]["metrics"].update(mi=0.6, mi_shuffled=0.55)
    s = mi_study.summary(study, methods)
    assert s["reach"] == "nats" and "in nats for EM; in bits for Clean" in mi_study.reach_sentence(s)
    assert "but not its top (0.71) in nats." in mi_study.reach_sentence(s)  # 0.55 nats = 0.79 bits


def test_the_summary_ranks_the_poisons_and_checks_c1_after_the_correction():
    methods = ["clean", "random", "em", "ap", "miue"]
    excess = {"clean": 0.05, "random": 0.06, "em": 0.02, "ap": 0.07, "miue": 0.03}
    s = mi_study.summary(_study(0.5, excess, ksg={"em": 0.1, "ap": 0.3, "miue": 0.2}), methods)
    assert s["ues_below_clean"] is False  # AP's excess is above clean's
    assert math.isclose(s["rho_excess"], 1.0)  # the raw number is the excess plus one shared baseline
    assert math.isclose(s["rho_ksg"], 1.0)
    assert math.isclose(s["ksg_distance"], 0.23)  # AP: excess 0.07 against KSG 0.3
    assert mi_study.summary({}, methods) is None
