"""What the report reads from model cards (desktop.core.report_card)."""

from __future__ import annotations

from desktop.core.report_card import (
    card_of,
    operating_point,
    training_text,
    validation_rows,
    value_with_ci,
)


def _res(auroc: float, sens: float, spec: float, n_pos: int, n_neg: int) -> dict:
    return {
        "n": n_pos + n_neg, "n_positive": n_pos, "n_negative": n_neg, "n_patients": n_pos + n_neg - 3,
        "threshold": 0.5, "auroc": auroc, "auroc_ci": [auroc - 0.03, auroc + 0.02],
        "sensitivity": sens, "sensitivity_ci": [sens - 0.05, sens + 0.03], "specificity": spec,
        "specificity_ci": [spec - 0.04, spec + 0.03], "ppv": 0.8, "npv": 0.9, "ece": 0.04,
        "confusion": {"tp": 1, "fp": 2, "tn": 3, "fn": 4},
    }


TRAINING_CARD_METRICS = {
    "validation": {
        "at_operating_points": {"balanced": _res(0.97, 0.91, 0.93, 120, 200),
                                "high_sensitivity": _res(0.97, 0.96, 0.80, 120, 200)},
        "auroc": 0.97, "auroc_ci": [0.94, 0.99], "ece": 0.03, "accuracy_at_0.5": 0.92,
        "by_source": {"nih": _res(0.5, 0.0, 0.9, 0, 50)},
    },
    "test": {
        "at_operating_points": {"balanced": _res(0.95, 0.89, 0.92, 110, 190)},
        "auroc": 0.95, "auroc_ci": [0.92, 0.97],
    },
    "leave_one_source_out": {
        "F1": {"held_out": ["bimcv"], "overall": _res(0.81, 0.62, 0.85, 300, 400), "by_source": {}},
        "F2": {"held_out": "shenzhen", "overall": _res(0.77, 0.55, 0.88, 0, 300)},
        "F3": {"held_out": "patient-level, seed 0; test = held-out source(s) ['nih', 'siim']; val 15%",
               "overall": _res(0.7, 0.5, 0.8, 10, 300)},
        "pooled_F1_F3": {"auroc": 0.79, "auroc_ci": [0.75, 0.83]},
    },
}


def test_validation_rows_for_training_cards() -> None:
    rows = dict(validation_rows(TRAINING_CARD_METRICS, "high_sensitivity"))
    val = next(v for k, v in rows.items() if k.startswith("Validation split"))
    assert "AUC 0.97 (95% CI 0.94–0.99)" in val
    assert "sensitivity 0.96 (95% CI 0.91–0.99), specificity 0.80 (95% CI 0.76–0.83) at “high_sensitivity”" in val
    assert "n = 120 COVID-19 / 200 normal (317 patients)" in val
    test = next(v for k, v in rows.items() if k.startswith("Test split"))
    assert "at “balanced”" in test  # the test split only has the default point: say which
    assert rows["External: source bimcv never seen in training"].startswith("AUC 0.81 (95% CI 0.78–0.83)")
    assert rows["External: source bimcv never seen in training"].endswith("; threshold 0.50")
    assert "External: source shenzhen never seen in training" in rows
    assert "External: sources nih, siim never seen in training" in rows
    assert rows["External, pooled folds F1–F3"] == "AUC 0.79 (95% CI 0.75–0.83)"
    assert not any("PPV" in v or "ECE" in v for v in rows.values())  # the report keeps to AUC/sens/spec


def test_validation_rows_generic_cards() -> None:
    rows = validation_rows({"internal": {"auc": {"value": 0.9, "ci": [0.85, 0.93]}, "n": 40}})
    assert rows == [("internal", "AUC 0.90 (95% CI 0.85–0.93); n = 40")]
    assert validation_rows({}) == []


def test_training_text() -> None:
    td = {"root": "cxr", "images": 2900, "patients": 2100, "by_class": {"covid": 1200, "normal": 1700},
          "by_source": {"bimcv": {"covid": 900}, "nih": {"normal": 1000}},
          "train": {"images": 2000}, "validation": {"images": 450}, "test": {"images": 450}}
    text = training_text(td)
    assert text.startswith("2900 images of 2100 patients (covid 1200, normal 1700)")
    assert "bimcv (covid 900); nih (normal 1000)" in text
    assert "train 2000, validation 450, test 450 images" in text
    assert training_text({"note": "random weights"}) == "note: random weights"


def test_operating_point_and_card_access() -> None:
    class Card:
        def to_dict(self) -> dict:
            return {"operating_points": [{"name": "a", "threshold": 0.2}, {"name": "b", "threshold": 0.6}],
                    "default_operating_point": "b"}

    class Bundle:
        card = Card()

    card = card_of(Bundle())
    assert operating_point(card, None)["threshold"] == 0.6
    assert operating_point(card, "a")["threshold"] == 0.2
    assert operating_point(card, "zzz") == {}
    assert value_with_ci(0.5, [0.4, 0.6]) == "0.50 (95% CI 0.40–0.60)"
    assert value_with_ci(None) == ""
