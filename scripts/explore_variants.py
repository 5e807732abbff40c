"""Recipe variants through the real pipeline (``run_protocol``): one recipe with some fields changed, on
chosen folds and seeds; results in runs/explore/NAME.json (key ``seed<N>``, one entry per fold),
summarised in docs/results/experiments.md (200 bootstrap resamples).

    .venv/bin/python scripts/explore_variants.py NAME BASE [field=value ...] [--folds random,F4] [--seeds 0]

The runs in experiments.md:

    scripts/explore_variants.py ft4 ours finetune_blocks=4                       # deeper fine-tuning
    scripts/explore_variants.py seeds_frozen ours_frozen --folds F4 --seeds 1,2  # seed spread
    scripts/explore_variants.py seeds ours --folds F4 --seeds 1,2
    scripts/explore_variants.py geo ours augment=photometric_geometric
    scripts/explore_variants.py ft6 ours finetune_blocks=6
    scripts/explore_variants.py flat64 ours_frozen head=flatten_dense hidden=64 learning_rate=0.0001
    scripts/explore_variants.py flat32 ours_frozen head=flatten_dense hidden=32 learning_rate=0.0001 \\
        --folds random,F4,F1,F2 --seeds 0      # then --folds F4 --seeds 1,2
    # the ninth session (deeper fine-tuning under the new-site criterion; fine-tuning needs the GAP head):
    scripts/explore_variants.py xsite_gap ours_xsite head=gap_dense hidden=128 learning_rate=0.001 --folds random,F3
    scripts/explore_variants.py xsite_gap_ft2 ours_xsite head=gap_dense hidden=128 learning_rate=0.001 \
        finetune_blocks=2 finetune_lr=0.0001 finetune_epochs=30 --folds random,F3
"""
import argparse
import json
import os

from model_training.compare import run_protocol
from model_training.data import read_dataset
from model_training.newsite import default_check_dir, read_check_set
from model_training.recipes import Recipe, get_recipe

W = '../shared/weights/mobilenet_v1_1.0_224_imagenet_partial.npz'
DATA = '../shared/data/cxr'


def summ(res: dict) -> dict:
    return {f: {'auroc': x['overall']['auroc'], 'ci': x['overall']['auroc_ci'],
                'pa': x.get('pa_only', {}).get('auroc'), 'acc05': x['overall'].get('accuracy_at_0.5'),
                'sens': x['overall']['sensitivity'], 'spec': x['overall']['specificity'], 'seconds': x['seconds'],
                'new_site': new_site(x.get('new_site') or {})}
            for f, x in res['folds'].items()}


def new_site(ns: dict) -> dict:
    """The new-site figures of one fold (``model_training.newsite``), without the bootstrap detail."""
    def called(d: dict) -> float | None:
        return d.get('called_covid') if d else None
    return {'threshold': ns.get('threshold'), 'check_called': called(ns.get('check_set', {})),
            'check_mean_p': ns.get('check_set', {}).get('mean_p_covid'),
            'held_out_normals_called': called(ns.get('held_out_normals', {})),
            'held_out_sens': ns.get('held_out_covid_sensitivity', {}).get('sensitivity'),
            'covid_sens_by_source': {s: d['called_covid'] for s, d in ns.get('covid_by_source', {}).items()},
            'normals_called_by_source': {s: d['called_covid'] for s, d in ns.get('normals_by_source', {}).items()},
            'at_sens_0.95': ns.get('at_sensitivity_0.95')}


def run(ds, rec: Recipe, folds: list[str], seed: int) -> dict:
    """``folds``: "random" and/or LOSO fold names; one result per fold (JSRT normals as the check set)."""
    check = read_check_set(default_check_dir(DATA))
    out = {}
    if 'random' in folds:
        out.update(summ(run_protocol(ds, rec, protocol='random', weights=W, cache_dir='runs/cache', seed=seed,
                                     n_boot=200, check=check)))
    loso = [f for f in folds if f != 'random']
    if loso:
        out.update(summ(run_protocol(ds, rec, protocol='loso', weights=W, cache_dir='runs/cache', seed=seed,
                                     n_boot=200, folds=loso, check=check)))
    return out


def parse_value(v: str):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {'true': True, 'false': False}.get(v.lower(), v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('name')
    ap.add_argument('base', help='recipe to start from')
    ap.add_argument('changes', nargs='*', metavar='field=value')
    ap.add_argument('--folds', default='random,F4')
    ap.add_argument('--seeds', default='0')
    args = ap.parse_args()
    changes = {k: parse_value(v) for k, v in (c.split('=', 1) for c in args.changes)}
    rec = get_recipe(args.base).with_(name=f'{args.base}_{args.name}', **changes)
    ds = read_dataset(DATA)
    os.makedirs('runs/explore', exist_ok=True)
    path = f'runs/explore/{args.name}.json'
    out = json.load(open(path)) if os.path.exists(path) else {}
    for seed in (int(s) for s in args.seeds.split(',')):
        out[f'seed{seed}'] = run(ds, rec, args.folds.split(','), seed)
        print(args.name, seed, json.dumps(out[f'seed{seed}']), flush=True)
        json.dump(out, open(path, 'w'), indent=1)


if __name__ == '__main__':
    main()
