//! Issues 15 and 16: the attribution job's computation at 10, 1,000 and 10,000 campaigns, on
//! journeys of the scaled demo's shape (`src/sources/demo.rs`: per order, zero to three earlier
//! touches, half of them a random campaign, the rest organic search, organic social or direct,
//! then the campaign that sold it; about 0.21 orders per campaign and day, 12 unconverted
//! journeys per hour over the whole account, whatever its size), over 10 days.
//!
//! For each size it prints the wall and CPU time and the peak heap (a counting global allocator:
//! the most bytes live at once during the step, above what was live before it) of
//! - the Markov fit over every journey (lifetime window): `attribution::fit_markov`;
//! - a whole run's rows: every model in every window, `job::build_rows_with`, rows handed on in
//!   sends of 5,000 and dropped, as the job does;
//! - the same run holding every row at once (`job::build_rows`), as the job did before.
//!
//! `nice -n 10 cargo bench --bench attribution` (`-- 10 1000` for some sizes only).

use std::hint::black_box;
use std::time::Instant;

use adpulse::attribution::job::{Journeys, RunSpec, SpendRow, build_rows, build_rows_with};
use adpulse::attribution::{Journey, Model, Touch, Window, fit_markov};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

/// CPU time of this (single-threaded) process so far (`/proc/self/schedstat`, ns on CPU).
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

/// Run `f`, printing its wall and CPU time and its peak heap above what was live before it.
fn measure<T>(what: &str, campaigns: usize, f: impl FnOnce() -> T) -> T {
    let before = counting_alloc::reset_peak();
    let (t0, c0) = (Instant::now(), cpu_secs());
    let out = black_box(f());
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - c0);
    let peak = counting_alloc::peak() - before;
    println!(
        "{campaigns:>6} campaigns  {what:<34} wall {wall:>8.3} s  CPU {cpu:>8.3} s  peak heap {:>9.2} MiB",
        peak as f64 / (1024.0 * 1024.0)
    );
    out
}

const DAYS: i64 = 10;
/// The demo's six campaigns' orders per day (`sources::demo::campaigns`), repeated at scale.
const ORDERS_PER_DAY: [f64; 6] = [0.075, 0.065, 0.44, 0.59, 0.055, 0.05];

fn channel(c: usize) -> String {
    if c % 6 < 3 {
        format!("meta:1202100000000{:02}{c:05}", c % 6 + 1)
    } else {
        format!("google_ads:210000000{:02}{c:05}", c % 6 - 2)
    }
}

/// Journeys of the demo's shape over `DAYS` days for `campaigns` campaigns.
fn demo_journeys(campaigns: usize, seed: u64) -> Journeys {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let day0 = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let mut out = Journeys::default();
    let mut journey =
        |rng: &mut ChaCha8Rng, id: String, end: DateTime<Utc>, last: usize, sold: bool| {
            let earlier = rng.random_range(0..4usize);
            let mut ts: Vec<DateTime<Utc>> = (0..earlier)
                .map(|_| end - Duration::minutes(rng.random_range(30..(14 * 24 * 60))))
                .collect();
            ts.sort();
            let mut touches: Vec<Touch> = ts
                .into_iter()
                .map(|ts| {
                    let channel = match rng.random_range(0..10u32) {
                        0..=4 => channel(rng.random_range(0..campaigns)),
                        5 | 6 => "organic:google.com".into(),
                        7 | 8 => "organic:instagram.com".into(),
                        _ => "direct".into(),
                    };
                    Touch { ts, channel }
                })
                .collect();
            touches.push(Touch {
                ts: end - Duration::minutes(rng.random_range(1..30)),
                channel: channel(last),
            });
            out.journeys.push(Journey {
                id,
                touches,
                converted_at: sold.then_some(end),
                revenue: if sold {
                    Decimal::new(rng.random_range(150_000..300_000), 2)
                } else {
                    Decimal::ZERO
                },
            });
            let day = (end - t0).num_days();
            out.days
                .push(sold.then(|| day0 + chrono::Days::new(day as u64)));
        };
    // orders: each campaign's expected count over the days, placed at random times
    let mut seq = 0;
    for c in 0..campaigns {
        let expected = ORDERS_PER_DAY[c % 6] * DAYS as f64;
        let n = expected.floor() as usize + usize::from(rng.random_bool(expected.fract()));
        for _ in 0..n {
            seq += 1;
            let end = t0 + Duration::minutes(rng.random_range(0..DAYS * 24 * 60));
            journey(&mut rng, format!("demo-{seq}"), end, c, true);
        }
    }
    // unconverted: none to two an hour, each ending with a random campaign
    for h in 0..DAYS * 24 {
        for k in 0..rng.random_range(0..3u32) {
            let end = t0 + Duration::hours(h) + Duration::minutes(rng.random_range(0..60));
            let c = rng.random_range(0..campaigns);
            journey(&mut rng, format!("visit-{h}-{k}"), end, c, false);
        }
    }
    out
}

fn spend(campaigns: usize) -> Vec<SpendRow> {
    let day0 = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    (0..DAYS as u64)
        .flat_map(|d| {
            (0..campaigns).map(move |c| SpendRow {
                day: day0 + chrono::Days::new(d),
                channel: channel(c),
                spend: Decimal::new(500_000, 2),
                platform_conversions: 0.2,
            })
        })
        .collect()
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 1_000, 10_000]
    } else {
        sizes
    };
    for campaigns in sizes {
        let j = demo_journeys(campaigns, 42);
        let spend = spend(campaigns);
        let touches: usize = j.journeys.iter().map(|j| j.touches.len()).sum();
        println!(
            "{campaigns:>6} campaigns: {} journeys ({} orders), {touches} touches, {} spend rows",
            j.journeys.len(),
            j.days.iter().filter(|d| d.is_some()).count(),
            spend.len()
        );
        let m = measure("Markov fit, lifetime window", campaigns, || {
            fit_markov(&j.journeys, Window::Lifetime)
        });
        println!(
            "{campaigns:>6} campaigns  P(conversion) {:.6}, {} channels",
            m.conversion_probability,
            m.channels.len()
        );
        drop(m);
        let models = Model::all(168.0);
        let rows = measure("one run: 7 models x 5 windows", campaigns, || {
            let mut rows = 0usize;
            let spec = RunSpec {
                models: &models,
                windows: &Window::ALL,
                tz: chrono_tz::Asia::Kolkata,
                currency: "INR",
                markov_max_entries: adpulse::attribution::markov::DEFAULT_MAX_ENTRIES,
                chunk_rows: 5_000,
            };
            let built = build_rows_with(&j, &spend, &spec, Vec::new(), |chunk| rows += chunk.len());
            assert!(built.unsolved.is_empty(), "{:?}", built.unsolved);
            rows
        });
        println!("{campaigns:>6} campaigns  {rows} attribution rows");
        // what a run held before the rows were streamed: every row of every model and window
        let rows = measure("one run, every row held (before)", campaigns, || {
            build_rows(
                &j,
                &spend,
                &models,
                &Window::ALL,
                chrono_tz::Asia::Kolkata,
                "INR",
            )
        });
        drop(rows);
    }
}
