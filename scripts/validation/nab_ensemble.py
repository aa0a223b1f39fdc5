"""Ensemble alert rules over a dump of the detector's per-row scores (tests/models_nab.rs
dump_scores, with the contextual columns knn_l, knn_alpha). Exploration only, kept out of the
tests. Usage: python3 scripts/validation/nab_ensemble.py DUMP_DIR [grid]"""
import sys, itertools
sys.path.insert(0, __file__.rsplit('/', 1)[0])
from nab_rules import load, evaluate, fmt, season

SC = ('normal', 'alert', 'anomalous')

def ens(thr=1.5, min_z=6.0, knn_thr=9.0, quiet=0.25, knn_min_z=0.0, both=None, warm_knn=True):
    """An alert when either detector calls the row anomalous and the episode is new: no
    anomalous row in the last `quiet` cycles."""
    def f(fi):
        cyc = season(fi['step']) or 24
        q = int(round(cyc * quiet))
        out = []; calm = 10**9
        for r in fi['rows']:
            t, v, z, sz, l, st, e = r[:7]
            kl = r[7] if len(r) > 7 else 0.0
            zok = st in SC
            an_z = zok and l >= thr and max(abs(z), abs(sz)) >= min_z
            an_k = kl >= knn_thr and (st in SC or (warm_knn and st == 'warmup')) and (not zok or max(abs(z), abs(sz)) >= knn_min_z)
            if both is not None:
                an_k = an_k or (zok and kl >= both[0] and l >= both[1])
            an = an_z or an_k
            a = an and calm >= q
            calm = 0 if an else calm + 1
            out.append(a)
        return out
    return f

if __name__ == '__main__':
    files = load(sys.argv[1])
    print('z only', fmt(evaluate(files, ens(knn_thr=99))))
    for kt in [1.8, 2.0, 2.2, 2.3]:
        for kz in [0.0, 2.0, 3.0]:
            for q in [0.25, 0.5]:
                print('knn_thr', kt, 'knn_min_z', kz, 'quiet', q, fmt(evaluate(files, ens(knn_thr=kt, knn_min_z=kz, quiet=q))))
