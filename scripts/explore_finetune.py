"""Exploration behind docs/results/experiments.md ("Fine-tuning, occlusion and edge masking"):
fine-tune MobileNet's top blocks (conv_dw_12..conv_dw_13, BatchNorm frozen) from cached conv_pw_11_relu maps,
per LOSO fold, reporting the head-only stage (A) and the fine-tuned model (B), plus AUROC with the
image edges masked at test time. Writes runs/explore/<tag>.json. Examples (2-core CPU, ~15 min each):

    .venv/bin/python scripts/explore_finetune.py tag=ft30 epochs=30 patience=8
    .venv/bin/python scripts/explore_finetune.py tag=ftocc epochs=25 patience=8 aug=photometric_occlude
    .venv/bin/python scripts/explore_finetune.py tag=ftmask epochs=30 patience=8 trainmask=1

Options are key=value: folds, copies, lr, epochs, patience, aug, ft (0: head only), masked, trainmask,
data, weights. The chosen recipe is ``ours`` in model_training/recipes.py; its final numbers come
from ``python -m model_training compare``.
"""
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras

from model_training.backbones import build_base
from model_training.compare import fold_splits, is_pa
from model_training.data import patient_split, read_dataset
from model_training.features import dataset_features
from model_training.heads import apply_head
from model_training.metrics import auroc
from model_training.recipes import OURS
from model_training.train import sample_weights

CACHE = 'runs/cache'
TOP = ['conv_pad_12', 'conv_dw_12', 'conv_dw_12_bn', 'conv_dw_12_relu', 'conv_pw_12', 'conv_pw_12_bn',
       'conv_pw_12_relu', 'conv_dw_13', 'conv_dw_13_bn', 'conv_dw_13_relu']

def args():
    a = dict(folds='F1,F2,F3,F4,random', copies=3, trainable='conv_dw_12,conv_pw_12,conv_dw_13',
             data='../shared/data/cxr', weights='../shared/weights/mobilenet_v1_1.0_224_imagenet_partial.npz',
             lr=1e-4, epochs=12, trainmask=0, aug='photometric', ft=1, masked=1, patience=4, tag='ft', batch=32, head_epochs=60)
    for s in sys.argv[1:]:
        k, v = s.split('=')
        a[k] = type(a[k])(v)
    return a

A = args()
W = A['weights']
os.makedirs('runs/explore', exist_ok=True)
ds = read_dataset(A['data'])
spec = OURS.preprocess('mobilenet')
versions = []
for k in range(A['copies'] + 1):
    f, _ = dataset_features(ds, spec, architecture='mobilenet', weights=W, layer='conv_pw_11_relu',
                            cache_dir=CACHE, show_progress=True,
                            augment_seed=None if k == 0 else k, augment_kind='none' if k == 0 else A['aug'])
    versions.append(f)
if A['masked']:
    from model_training.audit import mask_border
    from model_training.backbones import cut_model
    from model_training.data import load_images
    from model_training.features import cached_features, extract_features
    b0, _ = build_base('mobilenet', weights=W)
    masked_feats = cached_features(CACHE, lambda: extract_features(cut_model(b0, 'conv_pw_11_relu'), mask_border(load_images(ds, spec, CACHE)), spec), kind='masked_pw11_v1')
if A['trainmask']:
    from model_training.augment import photometric_augmenter
    imgs = load_images(ds, spec, CACHE)
    mv = [masked_feats]
    for k in range(1, A['copies'] + 1):
        aug = photometric_augmenter('photometric', k)
        def masked_aug(b, s0, aug=aug):
            return mask_border(aug(b, s0))
        mv.append(cached_features(CACHE, lambda f=masked_aug: extract_features(
            cut_model(b0, 'conv_pw_11_relu'), imgs, spec, augment=f), kind='masked_photo_pw11_v1', k=k))
    plain_feats = versions[0]
    versions = mv
base, init = build_base('mobilenet', weights=W)
y = ds.labels('covid')
views = ds.views()

def build_top(seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((14, 14, 512))
    x = inp
    for name in TOP:
        src = base.get_layer(name)
        layer = src.__class__.from_config(src.get_config())
        x = layer(x)
        layer.set_weights(src.get_weights())
        layer.trainable = name in A['trainable'].split(',')
        if name.endswith('_bn'):
            layer.trainable = False
    fmap = x
    out = apply_head(fmap, 'gap_dense', hidden=OURS.hidden, dropout=OURS.dropout, l2=OURS.l2, seed=seed)
    return keras.Model(inp, out)

def pooled_top(model, feats, bs=128):
    # frozen top (original weights) to pooled dw13 features
    outs = []
    for s in range(0, len(feats), bs):
        outs.append(np.asarray(model(feats[s:s + bs].astype(np.float32), training=False)))
    return np.concatenate(outs)

def predict(model, feats, idx, bs=128):
    out = []
    for s in range(0, len(idx), bs):
        out.append(np.asarray(model(feats[idx[s:s + bs]].astype(np.float32), training=False))[:, 0])
    return np.concatenate(out)

# pooled dw13 features from the frozen top (for phase A)
frozen = build_top(0)
gap_model = keras.Model(frozen.input, keras.layers.GlobalAveragePooling2D()(frozen.get_layer(index=len(TOP)).output))
t0 = time.time()
pooled = [pooled_top(gap_model, v) for v in versions]
print('pooled', time.time() - t0, flush=True)

def run_fold(name, split, seed=0):
    tr, va, te = map(np.array, (split.train, split.val, split.test))
    w = sample_weights(ds, tr, OURS).astype(np.float32)
    model = build_top(seed)
    head_layers = [lyr for lyr in model.layers if lyr.name.startswith('head_') and lyr.name != 'head_gap']
    # phase A: head only on pooled features
    hin = keras.Input((1024,))
    h = hin
    for lyr in head_layers:
        h = lyr(h)
    head = keras.Model(hin, h)
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss='categorical_crossentropy')
    rng = np.random.default_rng(seed)
    tgt = np.eye(2, dtype=np.float32)[1 - y]
    best, bad = (-1, None), 0
    for _ep in range(A['head_epochs']):
        order = rng.permutation(len(tr))
        ver = rng.integers(0, len(pooled), len(tr))
        for s in range(0, len(tr), 64):
            ii = order[s:s + 64]
            xb = np.stack([pooled[v][tr[i]] for v, i in zip(ver[ii], ii, strict=False)])
            head.train_on_batch(xb, tgt[tr[ii]], sample_weight=w[ii])
        a = auroc(y[va], np.asarray(head(pooled[0][va], training=False))[:, 0])
        if a > best[0] + 1e-5:
            best, bad = (a, head.get_weights()), 0
        else:
            bad += 1
            if bad >= 10:
                break
    head.set_weights(best[1])
    res = {}
    pa = np.array([is_pa(v) for v in views[te]])
    def score(tag, p):
        r = {'val_auroc': None, 'test_auroc': auroc(y[te], p)}
        if pa.any() and len(set(y[te][pa])) == 2:
            r['pa_auroc'] = auroc(y[te][pa], p[pa])
        r['acc05'] = float(((p >= 0.5) == (y[te] == 1)).mean())
        for src in sorted(set(ds.sources()[te])):
            m = (ds.sources()[te] == src) & (y[te] == 0)
            if m.sum() > 20:
                r[f'p_{src}_normal'] = float(p[m].mean())
        return r
    pA = predict(model, versions[0], te)
    res['A'] = score('A', pA)
    res['A']['val_auroc'] = best[0]
    if A['masked']:
        res['A']['masked_auroc'] = auroc(y[te], predict(model, masked_feats, te))
    if A['trainmask']:
        res['A']['unmasked_auroc'] = auroc(y[te], predict(model, plain_feats, te))
    print(name, 'A', json.dumps(res['A']), flush=True)
    if not A['ft']:
        return res
    # phase B: fine-tune top + head
    model.compile(optimizer=keras.optimizers.Adam(A['lr']), loss='categorical_crossentropy')
    bestB, bad = (best[0], model.get_weights()), 0
    hist = []
    for ep in range(A['epochs']):
        t1 = time.time()
        order = rng.permutation(len(tr))
        ver = rng.integers(0, len(versions), len(tr))
        for s in range(0, len(tr), A['batch']):
            ii = order[s:s + A['batch']]
            xb = np.stack([versions[v][tr[i]] for v, i in zip(ver[ii], ii, strict=False)]).astype(np.float32)
            model.train_on_batch(xb, tgt[tr[ii]], sample_weight=w[ii])
        a = auroc(y[va], predict(model, versions[0], va))
        hist.append(round(a, 4))
        print(f'  {name} ep{ep+1} val {a:.4f} {time.time()-t1:.0f}s', flush=True)
        if a > bestB[0] + 1e-5:
            bestB, bad = (a, model.get_weights()), 0
        else:
            bad += 1
            if bad >= A['patience']:
                break
    model.set_weights(bestB[1])
    print('  pw12 change', float(np.abs(model.get_layer('conv_pw_12').get_weights()[0] - base.get_layer('conv_pw_12').get_weights()[0]).mean()), flush=True)
    pB = predict(model, versions[0], te)
    res['B'] = score('B', pB)
    if A['masked']:
        res['B']['masked_auroc'] = auroc(y[te], predict(model, masked_feats, te))
    res['B']['val_auroc'] = bestB[0]
    res['B']['hist'] = hist
    print(name, 'B', json.dumps(res['B']), flush=True)
    return res

splits = fold_splits(ds, 0)
splits['random'] = patient_split(ds, val_fraction=0.15, test_fraction=0.15, seed=0)
out = {}
for name in A['folds'].split(','):
    out[name] = run_fold(name, splits[name])
    json.dump({'args': A, 'res': out}, open(f"runs/explore/{A['tag']}.json", 'w'), indent=1)
