#!/usr/bin/env python3
"""statsforecast on the series of adpulse's one-core speed bench (issue 14, item 6).

Not a test: a measurement to put beside `benches/models_speed.rs` in docs/models.md.

1. Export the bench's 1,000 demo-like hourly series of 90 days (the same seeds):
       ADPULSE_EXPORT_SERIES=/tmp/bench_series.csv nice -n 10 cargo bench --bench models_speed
   (it also prints adpulse's hold-out MASE on the split below).
2. In a virtualenv with `pip install statsforecast`:
       nice -n 10 python3 scripts/validation/statsforecast_bench.py /tmp/bench_series.csv

For each model (SeasonalNaive, AutoETS, AutoARIMA, season 24) it times, on one core
(`n_jobs=1`, CPU time of this process), fitting and forecasting 48 h of every series with 80%
and 95% intervals, and reports the mean hold-out MASE: the last 48 h of each series are held
out, the model is fitted on the rest, and the forecast MAE is divided by the in-sample MAE of
the seasonal naive (m = 24) on the fitted part, as the bench does for adpulse. A first fit of one
series is run before timing so that numba's compilation is not counted. `--limit N` runs the
first N series only (AutoARIMA is slow); the per-series figure is then extrapolated and said so.
"""

import argparse
import sys
import time

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import AutoARIMA, AutoETS, SeasonalNaive

H = 48
M = 24


def mase(train: np.ndarray, test: np.ndarray, fc: np.ndarray) -> float:
    scale = np.mean(np.abs(train[M:] - train[:-M]))
    return float(np.mean(np.abs(fc - test)) / scale)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("series_csv")
    ap.add_argument("--limit", type=int, default=0, help="first N series only (0 = all)")
    ap.add_argument("--models", default="SeasonalNaive,AutoETS,AutoARIMA")
    args = ap.parse_args()

    df = pd.read_csv(args.series_csv)
    df["ds"] = pd.to_datetime(df["ds"], unit="s")
    ids = df["unique_id"].drop_duplicates().tolist()
    if args.limit:
        ids = ids[: args.limit]
        df = df[df["unique_id"].isin(ids)]
    df = df.sort_values(["unique_id", "ds"])
    n_series = len(ids)
    makers = {
        "SeasonalNaive": lambda: SeasonalNaive(season_length=M),
        "AutoETS": lambda: AutoETS(season_length=M),
        "AutoARIMA": lambda: AutoARIMA(season_length=M),
    }
    parts = [g for _, g in df.groupby("unique_id", sort=False)]
    train = pd.concat([g.iloc[:-H] for g in parts])
    test = {uid: g["y"].to_numpy()[-H:] for uid, g in zip(ids, parts)}
    trainv = {uid: g["y"].to_numpy()[:-H] for uid, g in zip(ids, parts)}
    full = df

    print(f"{n_series} series of {len(parts[0])} hourly points; horizon {H}; one core (n_jobs=1)")
    for name in args.models.split(","):
        # Warm-up: numba compiles on the first call.
        sf = StatsForecast(models=[makers[name]()], freq="h", n_jobs=1)
        sf.forecast(df=full[full["unique_id"] == ids[0]], h=H, level=[80, 95])

        sf = StatsForecast(models=[makers[name]()], freq="h", n_jobs=1)
        c0, w0 = time.process_time(), time.perf_counter()
        sf.forecast(df=full, h=H, level=[80, 95])
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0

        sf = StatsForecast(models=[makers[name]()], freq="h", n_jobs=1)
        fc = sf.forecast(df=train, h=H)
        col = [c for c in fc.columns if c not in ("unique_id", "ds")][0]
        scores = []
        for uid, g in fc.groupby("unique_id", sort=False):
            scores.append(mase(trainv[uid], test[uid], g[col].to_numpy()))
        extra = ""
        if n_series != 1000:
            extra = f" (x {1000 / n_series:.0f} for 1,000 series: {cpu * 1000 / n_series:.1f} s CPU)"
        print(
            f"{name}: fit + forecast {H} h with 80/95% intervals, {n_series} series: "
            f"CPU {cpu:.2f} s, wall {wall:.2f} s{extra}; hold-out MASE {np.mean(scores):.4f}"
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
