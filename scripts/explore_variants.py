"""Seed spread, deeper fine-tuning and other recipe variants, through the real pipeline (``run_protocol``);
results in runs/explore/<name>.json, summarised in docs/results/experiments.md.

    .venv/bin/python scripts/explore_variants.py ft4     # ours with finetune_blocks=4: random split + F4
    .venv/bin/python scripts/explore_variants.py seeds   # ours_frozen and ours on F4 with seeds 1 and 2
    # any variant of a recipe: NAME BASE [field=value ...] [--folds random,F1,F4] [--seeds 0,1]
    .venv/bin/python scripts/explore_variants.py variant geo ours augment=photometric_geometric
"""
import json
import os
import sys

from model_training.compare import run_protocol
from model_training.data import read_dataset
from model_training.recipes import OURS, OURS_FROZEN, Recipe, get_recipe

W = '../shared/weights/mobilenet_v1_1.0_224_imagenet_partial.npz'
ds = read_dataset('../shared/data/cxr')
os.makedirs('runs/explore', exist_ok=True)


def summ(res):
    r = {}
    for f, x in res['folds'].items():
        r[f] = {'auroc': x['overall']['auroc'], 'ci': x['overall']['auroc_ci'],
                'pa': x.get('pa_only', {}).get('auroc'), 'acc05': x['overall'].get('accuracy_at_0.5'),
                'sens': x['overall']['sensitivity'], 'spec': x['overall']['specificity'], 'seconds': x['seconds']}
    return r


def run(rec: Recipe, folds: list[str], seed: int) -> dict:
    """``folds``: "random" and/or LOSO fold names; one result per fold."""
    out = {}
    if 'random' in folds:
        out.update(summ(run_protocol(ds, rec, protocol='random', weights=W, cache_dir='runs/cache', seed=seed,
                                     n_boot=200)))
    loso = [f for f in folds if f != 'random']
    if loso:
        out.update(summ(run_protocol(ds, rec, protocol='loso', weights=W, cache_dir='runs/cache', seed=seed,
                                     n_boot=200, folds=loso)))
    return out


def parse_value(v: str):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {'true': True, 'false': False}.get(v.lower(), v)


def main(argv: list[str]) -> None:
    what = argv[0]
    out: dict = {}
    if what == 'seeds':
        for seed in (1, 2):
            for rec in (OURS_FROZEN, OURS):
                out[f'{rec.name}_seed{seed}'] = run(rec, ['F4'], seed)
                print(rec.name, seed, out[f'{rec.name}_seed{seed}'], flush=True)
                json.dump(out, open('runs/explore/seeds.json', 'w'), indent=1)
        return
    if what == 'ft4':
        name, rec, folds, seeds = 'ft4', OURS.with_(name='ours_ft4', finetune_blocks=4), ['random', 'F4'], [0]
    else:
        name, base, rest = argv[1], argv[2], argv[3:]
        folds, seeds, changes = ['random', 'F4'], [0], {}
        i = 0
        while i < len(rest):
            if rest[i] in ('--folds', '--seeds'):
                vals = rest[i + 1].split(',')
                if rest[i] == '--folds':
                    folds = vals
                else:
                    seeds = [int(s) for s in vals]
                i += 2
                continue
            k, v = rest[i].split('=', 1)
            changes[k] = parse_value(v)
            i += 1
        rec = get_recipe(base).with_(name=f'{base}_{name}', **changes)
    path = f'runs/explore/{name}.json'
    if os.path.exists(path):
        out = json.load(open(path))
    for seed in seeds:
        out[f'seed{seed}'] = run(rec, folds, seed)
        print(name, seed, json.dumps(out[f'seed{seed}']), flush=True)
        json.dump(out, open(path, 'w'), indent=1)


if __name__ == '__main__':
    main(sys.argv[1:])
