"""Seed spread and deeper fine-tuning, through the real pipeline (``run_protocol``); results in
runs/explore/{ft4,seeds}.json, summarised in docs/results/experiments.md.

    .venv/bin/python scripts/explore_variants.py ft4     # ours with finetune_blocks=4: random split + F4
    .venv/bin/python scripts/explore_variants.py seeds   # ours_frozen and ours on F4 with seeds 1 and 2
"""
import json
import os
import sys

from model_training.compare import run_protocol
from model_training.data import read_dataset
from model_training.recipes import OURS, OURS_FROZEN

W = '../shared/weights/mobilenet_v1_1.0_224_imagenet_partial.npz'
ds = read_dataset('../shared/data/cxr')
what = sys.argv[1]
os.makedirs('runs/explore', exist_ok=True)
out = {}
def summ(res):
    r = {}
    for f, x in res['folds'].items():
        r[f] = {'auroc': x['overall']['auroc'], 'ci': x['overall']['auroc_ci'],
                'pa': x.get('pa_only', {}).get('auroc'), 'acc05': x['overall'].get('accuracy_at_0.5'),
                'sens': x['overall']['sensitivity'], 'spec': x['overall']['specificity'], 'seconds': x['seconds']}
    return r
if what == 'seeds':
    for seed in (1, 2):
        for rec in (OURS_FROZEN, OURS):
            res = run_protocol(ds, rec, protocol='loso', weights=W, cache_dir='runs/cache', seed=seed, n_boot=200, folds=['F4'])
            out[f'{rec.name}_seed{seed}'] = summ(res)
            print(rec.name, seed, out[f'{rec.name}_seed{seed}'], flush=True)
            json.dump(out, open('runs/explore/seeds.json', 'w'), indent=1)
else:
    rec = OURS.with_(name='ours_ft4', finetune_blocks=4)
    for proto in ('random', 'loso'):
        res = run_protocol(ds, rec, protocol=proto, weights=W, cache_dir='runs/cache', seed=0, n_boot=200,
                           folds=['F4'] if proto == 'loso' else None)
        out[proto] = summ(res)
        print(proto, out[proto], flush=True)
        json.dump(out, open('runs/explore/ft4.json', 'w'), indent=1)
