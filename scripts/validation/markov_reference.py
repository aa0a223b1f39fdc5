#!/usr/bin/env python3
"""Reference output for adpulse's attribution models (tests/attribution_reference.rs).

Runs the ChannelAttribution package (Altomare and Loris; the reference implementation of the
Markov-chain removal effect of Anderl et al. 2016) on tests/fixtures/attribution/paths.csv and
writes what it attributes per channel to tests/fixtures/attribution/channelattribution.json.

The paths are a fixed, seeded sample of journeys over five channels (made by --make-paths, committed
so the Rust test and this script read the same input). Regenerate with:

    python3 -m venv /tmp/ca && /tmp/ca/bin/pip install channelattribution matplotlib
    /tmp/ca/bin/python scripts/validation/markov_reference.py

ChannelAttribution estimates the Markov model by simulation; many simulations (nsim_start) keep its
Monte-Carlo error well under the tolerance the Rust test allows against adpulse's exact solution.
"""
import argparse
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PATHS = os.path.join(ROOT, "tests", "fixtures", "attribution", "paths.csv")
OUT = os.path.join(ROOT, "tests", "fixtures", "attribution", "channelattribution.json")
CHANNELS = ["meta_prospecting", "meta_retargeting", "google_search", "google_pmax", "organic"]


def make_paths():
    rng = random.Random(16)
    rows = {}
    for _ in range(4000):
        n = rng.choice([1, 1, 2, 2, 3, 3, 4, 5])
        path = [rng.choice(CHANNELS[:2] + CHANNELS[2:3] * 2 + CHANNELS[3:]) for _ in range(n)]
        # retargeting and search close more often: the data have something to find
        p = 0.04 + 0.05 * ("meta_retargeting" in path) + 0.06 * (path[-1] == "google_search")
        conv = rng.random() < p
        value = round(rng.uniform(2000, 60000), 2) if conv else 0.0
        key = ">".join(path)
        r = rows.setdefault(key, [0, 0, 0.0])
        if conv:
            r[0] += 1
            r[2] = round(r[2] + value, 2)
        else:
            r[1] += 1
    with open(PATHS, "w") as f:
        f.write("path,total_conversions,total_null,total_conversion_value\n")
        for k in sorted(rows):
            c, n, v = rows[k]
            f.write(f"{k},{c},{n},{v:.2f}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--make-paths", action="store_true")
    args = ap.parse_args()
    if args.make_paths:
        make_paths()
    import pandas as pd
    from ChannelAttribution import heuristic_models, markov_model

    data = pd.read_csv(PATHS)
    mm = markov_model(
        data,
        "path",
        "total_conversions",
        var_value="total_conversion_value",
        var_null="total_null",
        order=1,
        out_more=True,
        # Simulated paths stop at max_step; by default that is the longest observed path (5),
        # which cuts off journeys that loop between channels and biases the removal effects
        # (about 5% low here). A long limit lets the simulation approach the chain's exact
        # absorption probabilities, which is what adpulse computes.
        max_step=200,
        nsim_start=5e6,
        seed=16,
        conv_par=0.005,
        verbose=False,
        flg_pro=False,
    )
    res, re = mm["result"], mm["removal_effects"]
    hm = heuristic_models(
        data, "path", "total_conversions", var_value="total_conversion_value", flg_pro=False
    )
    out = {
        "package": "ChannelAttribution",
        "markov": {
            row.channel_name: {
                "conversions": float(row.total_conversions),
                "value": float(row.total_conversion_value),
            }
            for row in res.itertuples()
        },
        "removal_effects": {
            row.channel_name: float(row.removal_effects_conversion) for row in re.itertuples()
        },
        "heuristic": {
            row.channel_name: {
                "first_touch": float(row.first_touch_conversions),
                "last_touch": float(row.last_touch_conversions),
                "linear": float(row.linear_touch_conversions),
            }
            for row in hm.itertuples()
        },
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
