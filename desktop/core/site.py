"""Site profiles: a threshold set on a clinic's own normal films, and what it rests on.

A model's validation figures hold for the sources it was trained on; at a
hospital it has never seen, normal films can score much higher. A site
profile (made by ``cxr-screener calibrate``) fixes the threshold so that the
clinic's own confirmed-normal films reach a target specificity, and records
what that rests on. It is JSON in ``<user data>/sites/<site>--<model>.json``:

- ``site``, ``created`` (UTC), ``operator``; ``model`` {name, version, sha256}:
  a profile is used only with the very model it was made with;
- ``target_specificity``, ``threshold``;
- ``normals`` {n, specificity, specificity_ci (bootstrap 95%), scores};
- ``expected_sensitivity`` {value, ci, basis, n} at the threshold, from the
  bundle's validation COVID films (or null when the bundle cannot say);
- ``positives`` {n, sensitivity, sensitivity_ci} when local COVID films were given;
- ``excluded`` {unreadable, rejected}: counts of films left out;
- ``checksum``: sha256 of the canonical JSON of everything else. It makes a
  hand edit evident (the profile is then refused); it is not a signature.

:func:`threshold_basis` is THE sentence saying what a threshold rests on,
and :func:`claims_text` the performance claims; the CLI, the GUI and the
PDF all call them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import OperatingPoint
from .errors import ModelError
from .fileio import atomic_write_text
from .paths import user_data_dir

log = logging.getLogger(__name__)

FORMAT = "cxr-screener-site-profile"
FORMAT_VERSION = 1
#: Fewest readable normal films a profile is made from.
MIN_NORMALS = 30
WHY_MIN_NORMALS = (
    f"at least {MIN_NORMALS} are needed: with fewer, one film moves the specificity by more than "
    "3 points and its 95% confidence interval is too wide to set a threshold on"
)
BOOTSTRAP = 2000


class SiteProfileError(ModelError):
    """A site profile is missing, edited, for another model, or cannot be made."""

    kind = "model_site_profile"


@dataclass(frozen=True)
class SiteProfile:
    data: Mapping[str, Any]
    path: Path | None = None

    @property
    def site(self) -> str:
        return str(self.data["site"])

    @property
    def threshold(self) -> float:
        return float(self.data["threshold"])

    @property
    def n_normals(self) -> int:
        return int(self.data["normals"]["n"])

    @property
    def date(self) -> str:
        return str(self.data["created"])[:10]

    def operating_point(self) -> OperatingPoint:
        """The site threshold as an operating point (name ``site:<site>``) for the Predictor."""
        n = self.data["normals"]
        exp = self.data.get("expected_sensitivity") or {}
        return OperatingPoint(
            name=f"site:{self.site}",
            threshold=self.threshold,
            sensitivity=exp.get("value"),
            sensitivity_ci=_ci(exp.get("ci")),
            specificity=float(n["specificity"]),
            specificity_ci=_ci(n.get("specificity_ci")),
            description=threshold_basis(self),
        )


def _ci(v: Any) -> tuple[float, float] | None:
    return None if not v else (float(v[0]), float(v[1]))


# ---------------------------------------------------------------- files


def sites_dir() -> Path:
    return user_data_dir() / "sites"


def slug(text: str) -> str:
    """A safe file-name part: lower case letters, digits, '-' and '_' only."""
    s = re.sub(r"[^a-z0-9_]+", "-", text.strip().lower()).strip("-_")
    return s[:60] or "site"


def profile_path(site: str, model_name: str) -> Path:
    return sites_dir() / f"{slug(site)}--{slug(model_name)}.json"


def checksum(data: Mapping[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _model_of(bundle: Any) -> dict[str, str]:
    bundle = getattr(bundle, "bundle", bundle)  # a Predictor
    card = bundle.card
    return {"name": card.name, "version": card.version, "sha256": str(card.data["sha256"])}


def save_profile(data: dict[str, Any], *, overwrite: bool = True) -> SiteProfile:
    data = dict(data)
    data["checksum"] = checksum(data)
    path = profile_path(data["site"], data["model"]["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n", overwrite=overwrite)
    log.info("wrote site profile %s", path)
    return SiteProfile(data, path)


def read_profile(path: Path) -> SiteProfile:
    """Read and check a profile file's own integrity (not yet its model)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SiteProfileError(path, f"cannot read the site profile ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SiteProfileError(path, "is not a CXR Screener site profile")
    if data.get("checksum") != checksum(data):
        raise SiteProfileError(
            path, "the site profile was changed after it was made (its checksum does not match): refused",
            "run 'cxr-screener calibrate' again for this site; never edit a profile by hand",
        )
    return SiteProfile(data, Path(path))


def list_profiles() -> list[SiteProfile | tuple[Path, str]]:
    """Every profile file: a SiteProfile, or (path, why it is unusable)."""
    out: list[SiteProfile | tuple[Path, str]] = []
    folder = sites_dir()
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            out.append(read_profile(path))
        except SiteProfileError as exc:
            out.append((path, exc.reason))
    return out


def site_names(bundle: Any = None) -> list[str]:
    """Sites with a usable profile (for ``bundle``'s model when given)."""
    sha = _model_of(bundle)["sha256"] if bundle is not None else None
    return sorted({
        p.site for p in list_profiles()
        if isinstance(p, SiteProfile) and (sha is None or p.data["model"]["sha256"] == sha)
    })


def remove_profile(profile: SiteProfile | Path) -> None:
    path = profile.path if isinstance(profile, SiteProfile) else Path(profile)
    if path is not None and path.exists():
        path.unlink()
        log.info("removed site profile %s", path)


def load_profile(site: str, bundle: Any) -> SiteProfile:
    """The profile of ``site`` for this bundle's model, checked; :class:`SiteProfileError` otherwise.

    Refused when it was edited, or made with another model or another
    version of it (different sha256): the threshold would not mean the same.
    """
    model = _model_of(bundle)
    path = profile_path(site, model["name"])
    if not path.exists():
        others = [p for p in list_profiles() if isinstance(p, SiteProfile) and slug(p.site) == slug(site)]
        if others:
            made = ", ".join(f"{p.data['model']['name']} {p.data['model']['version']}" for p in others)
            raise SiteProfileError(
                path, f"site {site!r} was calibrated for {made}, not for model {model['name']} {model['version']}",
                f"run 'cxr-screener calibrate --site {site!r} --model {model['name']}'",
            )
        known = site_names()
        raise SiteProfileError(
            path, f"no site profile {site!r}" + (f" (known: {', '.join(known)})" if known else ""),
            f"make one with 'cxr-screener calibrate --site {site!r} --normals FOLDER'",
        )
    prof = read_profile(path)
    made = prof.data.get("model", {})
    if made.get("sha256") != model["sha256"]:
        raise SiteProfileError(
            path,
            f"site profile {prof.site!r} was made for model {made.get('name')} {made.get('version')} "
            f"(sha256 {str(made.get('sha256'))[:12]}...), not for {model['name']} {model['version']} "
            f"(sha256 {model['sha256'][:12]}...): refused",
            "calibrate the site again with this model",
        )
    if slug(prof.site) != slug(site):
        raise SiteProfileError(path, f"the file holds site {prof.site!r}, not {site!r}")
    return prof


def resolve(site: str | None, bundle: Any) -> tuple[SiteProfile | None, OperatingPoint | None]:
    """``--site NAME`` for predict/scan/report/listen: (profile, its operating point) or (None, None)."""
    if not site:
        return None, None
    prof = load_profile(site, bundle)
    return prof, prof.operating_point()


# ---------------------------------------------------------------- statistics


def _bootstrap_rate(hits: np.ndarray, rng: np.random.Generator, n_boot: int = BOOTSTRAP,
                    groups: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile 95% CI of a rate; ``groups`` (e.g. patients) are resampled whole when given."""
    n = len(hits)
    if n == 0:
        return (float("nan"), float("nan"))
    if groups is None:
        means = hits[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    else:
        _, g = np.unique(np.asarray(groups), return_inverse=True)
        sums, counts = np.bincount(g, weights=hits), np.bincount(g).astype(np.float64)
        pick = rng.integers(0, len(sums), size=(n_boot, len(sums)))
        means = sums[pick].sum(axis=1) / np.maximum(counts[pick].sum(axis=1), 1.0)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(lo), float(hi))


def choose_threshold(normal_scores: Sequence[float] | np.ndarray, target: float) -> float:
    """The lowest threshold at which at least ``target`` of the normals score below it.

    Midway between the k-th and (k+1)-th lowest score (k = ceil(target * n));
    when every normal must pass, just above the highest.
    """
    s = np.sort(np.asarray(normal_scores, dtype=np.float64))
    n = len(s)
    k = min(n, max(1, math.ceil(target * n - 1e-9)))
    if k >= n:
        return float(min(1.0, s[-1] + max(1e-6, (1.0 - s[-1]) / 2)))
    return float((s[k - 1] + s[k]) / 2)


def _card_scores(bundle: Any, positive: bool) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(scores, patient groups or None) of the card's ``validation_scores`` for one class.

    Understands ``{"p_covid": [...], "label": [1/0 or class names], "patient_group": [...]}`` (what
    ``model_training`` exports) and ``{"covid": [...], "normal": [...]}``.
    """
    data = getattr(bundle, "bundle", bundle).card.data
    vs = data.get("validation_scores")
    if not isinstance(vs, Mapping):
        return None
    key = "covid" if positive else "normal"
    if isinstance(vs.get(key), Sequence):
        return np.asarray(vs[key], np.float64), None
    if "p_covid" in vs and "label" in vs:
        p, lab = np.asarray(vs["p_covid"], np.float64), np.asarray(vs["label"])
        is_pos = lab.astype(str) == str(data.get("positive_class", "covid")) if lab.dtype.kind in "US" else lab == 1
        mask = is_pos if positive else ~is_pos
        groups = vs.get("patient_group")
        return p[mask], (np.asarray(groups)[mask] if isinstance(groups, Sequence) and len(groups) == len(p) else None)
    return None


#: ``basis`` of an expected sensitivity read from card scores of films of sources the model was not trained on.
NEW_SITE_SCORES_BASIS = "the model card's scores of films of hospitals it was not trained on"


def card_scores_are_new_site(bundle: Any) -> bool:
    """True when the card's ``validation_scores`` are films of sources the model was not trained on (the films
    its operating points were chosen on, recipe ``operating_sources="new_sites"``), not its own validation."""
    vs = getattr(bundle, "bundle", bundle).card.data.get("validation_scores")
    return isinstance(vs, Mapping) and "not trained on" in str(vs.get("description", ""))


def reference_films(bundle: Any) -> str:
    """What the card's reference scores are, in a few words (the calibrate dialog's legend)."""
    return "normals of hospitals not trained on" if card_scores_are_new_site(bundle) else "validation normals"


def validation_covid_scores(bundle: Any, stats: Any = None) -> tuple[np.ndarray | None, str]:
    """The bundle's validation COVID films' p(covid) and where they come from."""
    got = _card_scores(bundle, True)
    if got is not None:
        return got[0], NEW_SITE_SCORES_BASIS if card_scores_are_new_site(bundle) else "the model card's validation scores"
    if stats is not None and "val_scores_covid" in getattr(stats, "arrays", {}):
        return np.asarray(stats.arrays["val_scores_covid"], np.float64), "the bundle's validation films"
    return None, ""


def validation_normal_scores(bundle: Any, stats: Any = None) -> np.ndarray | None:
    got = _card_scores(bundle, False)
    if got is not None:
        return got[0]
    if stats is not None and "val_scores_normal" in getattr(stats, "arrays", {}):
        return np.asarray(stats.arrays["val_scores_normal"], np.float64)
    return None


def expected_sensitivity(bundle: Any, threshold: float, stats: Any = None, seed: int = 0) -> dict[str, Any] | None:
    """Sensitivity at ``threshold`` on the bundle's validation COVID films, with a bootstrap CI.

    Falls back to the card's ``sensitivity_by_threshold`` table (nearest row
    at or above the threshold: a conservative reading); None when neither exists.
    """
    scores, basis = validation_covid_scores(bundle, stats)
    if scores is not None and len(scores):
        hits = (scores >= threshold).astype(np.float64)
        card = _card_scores(bundle, True)
        groups = card[1] if card is not None else None
        lo, hi = _bootstrap_rate(hits, np.random.default_rng(seed), groups=groups)
        return {"value": float(hits.mean()), "ci": [lo, hi], "n": int(len(scores)), "basis": basis}
    data = getattr(bundle, "bundle", bundle).card.data
    table: Any = data.get("sensitivity_by_threshold")
    by_thr = data.get("metrics", {}).get("validation_by_threshold")
    if isinstance(by_thr, Mapping) and by_thr:  # {"0.05": {"sensitivity": ..., "sensitivity_ci": ...}, ...}
        table = [{"threshold": float(k), **v} for k, v in by_thr.items() if isinstance(v, Mapping)]
    if isinstance(table, Sequence) and table:
        rows = sorted((r for r in table if isinstance(r, Mapping) and "threshold" in r), key=lambda r: r["threshold"])
        above = [r for r in rows if r["threshold"] >= threshold] or rows[-1:]
        r = above[0]
        return {"value": float(r["sensitivity"]), "ci": list(r.get("sensitivity_ci") or []) or None,
                "n": r.get("n"), "basis": "the model card's sensitivity-by-threshold table"}
    return None


def make_profile(
    site: str,
    bundle: Any,
    normal_scores: Sequence[float],
    *,
    target_specificity: float = 0.95,
    positive_scores: Sequence[float] | None = None,
    operator: str = "",
    stats: Any = None,
    excluded: Mapping[str, int] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The profile's content (not yet saved) from the scores of readable, accepted films."""
    if not site.strip():
        raise SiteProfileError(None, "the site needs a name")
    if not 0.5 <= target_specificity < 1.0:
        raise SiteProfileError(None, f"target specificity must be in [0.5, 1). Received: {target_specificity}")
    normals = np.asarray(normal_scores, np.float64)
    if len(normals) < MIN_NORMALS:
        raise SiteProfileError(
            None, f"only {len(normals)} readable normal film(s) accepted by the input gate; {WHY_MIN_NORMALS}",
            f"add at least {MIN_NORMALS - len(normals)} more confirmed-normal films of this site",
        )
    rng = np.random.default_rng(seed)
    thr = choose_threshold(normals, target_specificity)
    spec_hits = (normals < thr).astype(np.float64)
    data: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "site": site.strip(),
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "operator": operator,
        "model": _model_of(bundle),
        "target_specificity": float(target_specificity),
        "threshold": thr,
        "normals": {
            "n": int(len(normals)),
            "specificity": float(spec_hits.mean()),
            "specificity_ci": list(_bootstrap_rate(spec_hits, rng)),
            "scores": [round(float(v), 5) for v in normals],
        },
        "expected_sensitivity": expected_sensitivity(bundle, thr, stats, seed),
        "positives": None,
        "excluded": dict(excluded or {}),
    }
    if positive_scores is not None and len(positive_scores):
        pos = (np.asarray(positive_scores, np.float64) >= thr).astype(np.float64)
        data["positives"] = {"n": int(len(pos)), "sensitivity": float(pos.mean()),
                             "sensitivity_ci": list(_bootstrap_rate(pos, rng)),
                             "scores": [round(float(v), 5) for v in positive_scores]}
    return data


# ---------------------------------------------------------------- words


def _fmt(v: float | None, ci: Any = None) -> str:
    if v is None:
        return "not measured"
    s = f"{v:.2f}"
    if ci and len(ci) == 2 and all(c is not None and not math.isnan(c) for c in ci):
        s += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return s


def threshold_basis(profile: SiteProfile | None, bundle: Any = None, operating_point: OperatingPoint | None = None) -> str:
    """One sentence: what the threshold in use rests on (CLI, JSON, CSV, GUI and PDF use this).

    With a profile: "site 'X', 62 local normal films, 2026-12-02: specificity 0.95 [0.88, 0.99];
    sensitivity estimated from validation 0.93 [0.90, 0.96]". Without: the operating point and
    its figures and where they were measured (``OperatingPoint.measured_on``).
    """
    if profile is not None:
        d = profile.data
        n = d["normals"]
        s = f"site '{profile.site}', {n['n']} local normal films, {profile.date}: specificity {_fmt(n['specificity'], n.get('specificity_ci'))}"
        exp = d.get("expected_sensitivity")
        where = "films of hospitals it was not trained on" if exp and exp.get("basis") == NEW_SITE_SCORES_BASIS \
            else "validation"
        s += (f"; sensitivity estimated from {where} {_fmt(exp['value'], exp.get('ci'))}" if exp
              else "; sensitivity at this threshold not known (the model card carries no validation scores)")
        pos = d.get("positives")
        if pos:
            s += f"; local sensitivity {_fmt(pos['sensitivity'], pos.get('sensitivity_ci'))} ({pos['n']} films)"
        return s
    op = operating_point
    if op is None and bundle is not None:
        op = getattr(bundle, "bundle", bundle).card.operating_point(None)
    if op is None:
        return "no site profile"
    return (f"no site profile; operating point '{op.name}' (p(covid) >= {op.threshold:.3f}) measured {op.measured_on}: "
            f"sensitivity {_fmt(op.sensitivity, op.sensitivity_ci)}, specificity {_fmt(op.specificity, op.specificity_ci)}")


def new_site_false_positives(bundle: Any, stats: Any = None) -> str | None:
    """What is known of the false-positive rate at hospitals the model has not seen, in words."""
    bundle = getattr(bundle, "bundle", bundle)
    data = bundle.card.data
    ns = data.get("metrics", {}).get("new_site") or data.get("new_site") or {}
    jsrt = ((getattr(stats, "figures", None) or {}).get("new_site") or {}) if stats is not None else {}
    parts = []
    check = ns.get("check_set") if isinstance(ns, Mapping) else None
    if isinstance(check, Mapping) and isinstance(check.get("at_operating_points"), Mapping):
        at = check["at_operating_points"].get(data.get("default_operating_point")) or {}
        if at.get("n"):
            ci = at.get("called_covid_ci")
            parts.append(f"{100 * float(at['called_covid']):.0f}%"
                         + (f" [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]" if ci and len(ci) == 2 else "")
                         + f" of {at['n']} normal films of hospitals it has never seen ({check.get('name', 'check set')})")
            jsrt = {}
    if jsrt.get("n"):
        parts.append(f"{100 * jsrt['called_covid']:.0f}% of {jsrt['n']} normal films of a hospital it has "
                     f"never seen (JSRT, Japan)")
    loso = data.get("metrics", {}).get("leave_one_source_out", {})
    rates = [float(b["frac_called_covid"]) for f in loso.values() if isinstance(f, Mapping)
             for s, b in f.get("by_source", {}).items()
             if s.endswith("/normal") and isinstance(b, Mapping) and b.get("n", 0) >= 30]
    if rates:
        parts.append(f"{100 * min(rates):.0f}-{100 * max(rates):.0f}% of the normal films of sources left out of "
                     f"training (same recipe, leave-one-source-out)")
    if not parts:
        return None
    return "at hospitals not in its training data it called " + " and ".join(parts) + " COVID-19"


def claims_text(bundle: Any, profile: SiteProfile | None = None, operating_point: OperatingPoint | None = None,
                stats: Any = None, *, compact: bool = False) -> str:
    """The performance claims the GUI and the PDF quote (one paragraph; ``compact``: the page-1 version)."""
    if profile is not None:
        return ("Threshold set for this site: " + threshold_basis(profile) + ". These figures are the site's own; "
                "they hold for films like the ones it was calibrated on.")
    card = getattr(bundle, "bundle", bundle).card
    op = operating_point or card.operating_point(None)
    if compact:
        first = (new_site_false_positives(bundle, stats) or "").split(" and ")[0]
        new = (f" Not measured at this site: {first.removeprefix('at hospitals not in its training data it called ')}"
               " were called COVID-19." if first else " Not measured at this site.")
        return f"These were measured {op.measured_on if op else 'on the training sources'}.{new} Calibrate for this site."
    text = (f"Measured {op.measured_on}: at '{op.name}' sensitivity "
            f"{_fmt(op.sensitivity, op.sensitivity_ci)}, specificity {_fmt(op.specificity, op.specificity_ci)}.")
    fp = new_site_false_positives(bundle, stats)
    if fp:
        text += f" Not measured at this site: {fp}."
    else:
        text += " Not measured at this site: at a new hospital the false-positive rate can be much higher."
    return text + " Calibrate for this site (its own normal films) before relying on the threshold."


__all__ = [
    "MIN_NORMALS", "NEW_SITE_SCORES_BASIS", "SiteProfile", "SiteProfileError", "card_scores_are_new_site",
    "choose_threshold", "claims_text", "expected_sensitivity", "reference_films",
    "list_profiles", "load_profile", "make_profile", "new_site_false_positives", "profile_path", "read_profile",
    "remove_profile", "resolve", "save_profile", "site_names", "sites_dir", "slug", "threshold_basis",
    "validation_covid_scores", "validation_normal_scores",
]
