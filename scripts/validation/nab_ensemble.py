"""Ensemble alert rules over a dump of the detector's per-row scores (tests/models_nab.rs
dump_scores, with the contextual columns knn_l, knn_alpha). Exploration only, kept out of the
tests. Usage: python3 scripts/validation/nab_ensemble.py DUMP_DIR [grid]"""
import sys, itertools
sys.path.insert(0, __file__.rsplit('/', 1)[0])
from nab_rules import load, evaluate, fmt, episodes, SC


def ens(thr=1.5, min_z=6.0, knn_thr=9.0, quiet=0.25, knn_min_z=0.0, both=None, warm_knn=True,
        knn_calm=0, recur_shift=None):
    """An alert when either detector calls the row anomalous and the episode is new: no
    anomalous row in the last `quiet` cycles. `knn_calm`: the k-NN judges only contexts with
    no anomalous row in them (knn_window - 1 rows since the last). `recur_shift`: a row the
    dump marks recurrent (column 10) and at least min_z out counts for the z test only
    through |shift_z| >= recur_shift * min_z (the Rust kept rule: knn_calm 3, recur_shift 2)."""
    def anomalous(r, calm):
        z, sz, l, st = r[2], r[3], r[4], r[5]
        kl = r[7] if len(r) > 7 else 0.0
        zok = st in SC
        big = max(abs(z), abs(sz))
        if recur_shift is not None and len(r) > 9 and r[9] and abs(z) >= min_z:
            big = abs(sz) / recur_shift
        an_z = zok and l >= thr and big >= min_z
        an_k = kl >= knn_thr and calm >= knn_calm and (zok or (warm_knn and st == 'warmup')) and (not zok or big >= knn_min_z)
        if both is not None:
            an_k = an_k or (zok and kl >= both[0] and l >= both[1])
        return an_z or an_k
    return lambda fi: episodes(fi, quiet, anomalous)

if __name__ == '__main__':
    files = load(sys.argv[1])
    print('z only', fmt(evaluate(files, ens(knn_thr=99))))
    kept = dict(thr=1.5, min_z=7.0, knn_thr=1.3, warm_knn=False, knn_calm=3)
    print('kept, no recurrence test', fmt(evaluate(files, ens(**kept))))
    print('kept', fmt(evaluate(files, ens(recur_shift=2.0, **kept))))
    for kt in [1.8, 2.0, 2.2, 2.3]:
        for kz in [0.0, 2.0, 3.0]:
            for q in [0.25, 0.5]:
                print('knn_thr', kt, 'knn_min_z', kz, 'quiet', q, fmt(evaluate(files, ens(knn_thr=kt, knn_min_z=kz, quiet=q))))
