//! Disk spool for the QuestDB sink: segment files, oldest first, each deleted only after QuestDB
//! acknowledged its rows (or, for rows QuestDB refuses, after they are in the dead-letter file).
//!
//! Format: one record per line, `<crc32c as 8 hex digits> <record as JSON>`. JSON keeps a segment
//! readable by a person; the records' float fields write NaN and the infinities as strings
//! (`records::lossless_f64`), decimals as strings, so every value comes back exactly. The checksum
//! catches a line that still parses but was damaged (a flipped digit). Lines are read one by one:
//! an unreadable line is handed back with its reason (the sink puts it in the dead-letter file) and
//! never takes its neighbours with it. Lines without a checksum (spools of earlier versions) are
//! read as plain JSON.
//!
//! Durability: a segment is written to a temporary file, fsynced, renamed into place, and the
//! folder is fsynced, so after a power cut a segment is either whole or absent.
//!
//! Bounds: `spool_max_bytes` is a soft cap: when reached the sink stops taking rows (back-pressure)
//! instead of dropping any. At shutdown the sink may write past it into a reserve
//! (`spool_reserve_bytes`), so what is in memory is never dropped; it logs when it does.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::records::Record;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "spool full: {bytes} bytes used of questdb.spool_max_bytes = {max} in {path}; sources are paused until QuestDB takes rows again"
    )]
    Full { bytes: u64, max: u64, path: PathBuf },
    #[error(
        "spool reserve exhausted: {bytes} bytes used, questdb.spool_max_bytes + spool_reserve_bytes = {max} in {path}"
    )]
    ReserveFull { bytes: u64, max: u64, path: PathBuf },
}

/// A spool line that could not be read back.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// `segment-….jsonl:<line>`.
    pub origin: String,
    /// The line as found (lossy UTF-8).
    pub text: String,
    pub reason: String,
}

/// The oldest segment, read line by line.
#[derive(Debug, Default)]
pub struct Peeked {
    pub rows: Vec<Record>,
    pub bad: Vec<BadLine>,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    rows: usize,
    bytes: u64,
}

/// Which cap a push may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// `spool_max_bytes`: normal operation.
    Soft,
    /// `spool_max_bytes + spool_reserve_bytes`: shutdown, so nothing in memory is dropped.
    Reserve,
}

/// The spool: a queue of segment files.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    reserve_bytes: u64,
    segments: VecDeque<Segment>,
    next_seq: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One record as one spool line (with its checksum and newline).
pub fn encode_line(r: &Record, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let json = serde_json::to_vec(r)?;
    out.extend_from_slice(format!("{:08x} ", crc32c::crc32c(&json)).as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
    Ok(())
}

/// Why a spool line cannot be read back (it is dead-lettered with this reason).
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("no checksum prefix (`<8 hex digits> <json>`)")]
    NoChecksum,
    #[error("checksum is not 8 hex digits")]
    BadChecksum,
    #[error("checksum mismatch (line says {want:08x}, content is {got:08x}): the line was damaged")]
    Damaged { want: u32, got: u32 },
    #[error("not a record: {0}")]
    NotARecord(#[from] serde_json::Error),
}

/// One spool line (without its newline) back to its record, or why it cannot be.
pub fn decode_line(line: &[u8]) -> Result<Record, LineError> {
    let json = if line.first() == Some(&b'{') {
        // a line of an earlier version's spool: plain JSON, no checksum
        line
    } else {
        let (sum, json) = match (line.get(..8), line.get(8), line.get(9..)) {
            (Some(sum), Some(b' '), Some(json)) => (sum, json),
            _ => return Err(LineError::NoChecksum),
        };
        let want = std::str::from_utf8(sum)
            .ok()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .ok_or(LineError::BadChecksum)?;
        let got = crc32c::crc32c(json);
        if got != want {
            return Err(LineError::Damaged { want, got });
        }
        json
    };
    Ok(serde_json::from_slice(json)?)
}

impl Spool {
    /// Open (or create) the spool folder and pick up segments left by a previous run.
    pub fn open(dir: &Path, max_bytes: u64, reserve_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(seq) = name
                .strip_prefix("segment-")
                .and_then(|s| s.strip_suffix(".jsonl"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                found.push((seq, entry.path()));
            }
        }
        found.sort();
        let mut segments = VecDeque::new();
        for (_, path) in &found {
            let bytes = fs::metadata(path).map_err(io(path))?.len();
            let f = fs::File::open(path).map_err(io(path))?;
            let rows = BufReader::new(f).split(b'\n').count();
            segments.push_back(Segment {
                path: path.clone(),
                rows,
                bytes,
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            reserve_bytes,
            next_seq: found.last().map(|(s, _)| s + 1).unwrap_or(0),
            segments,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn rows(&self) -> usize {
        self.segments.iter().map(|s| s.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// True when the spool holds more than its soft cap (it wrote into the reserve).
    pub fn in_reserve(&self) -> bool {
        self.bytes() > self.max_bytes
    }

    /// Append rows as a new segment, durably (fsynced file and folder). `Full` / `ReserveFull`
    /// (and nothing written) if it would exceed the cap.
    pub fn push(&mut self, rows: &[Record], cap: Cap) -> Result<(), SpoolError> {
        let mut text = Vec::with_capacity(rows.len() * 300);
        for r in rows {
            encode_line(r, &mut text).map_err(|e| SpoolError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(e),
            })?;
        }
        let used = self.bytes();
        let after = used + text.len() as u64;
        match cap {
            Cap::Soft if after > self.max_bytes => {
                return Err(SpoolError::Full {
                    bytes: used,
                    max: self.max_bytes,
                    path: self.dir.clone(),
                });
            }
            Cap::Reserve if after > self.max_bytes.saturating_add(self.reserve_bytes) => {
                return Err(SpoolError::ReserveFull {
                    bytes: used,
                    max: self.max_bytes.saturating_add(self.reserve_bytes),
                    path: self.dir.clone(),
                });
            }
            _ => {}
        }
        let path = self
            .dir
            .join(format!("segment-{:012}.jsonl", self.next_seq));
        let tmp = path.with_extension("tmp");
        let written = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_data()
        })();
        if let Err(e) = written {
            // a full disk leaves a partial temporary file: remove it, the rows stay with the caller
            let _ = fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
        // rename is atomic: a crash never leaves a half-written segment behind
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // and the rename itself survives a power cut once the folder is synced
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        self.next_seq += 1;
        self.segments.push_back(Segment {
            path,
            rows: rows.len(),
            bytes: text.len() as u64,
        });
        Ok(())
    }

    /// Read the oldest segment without removing it: its readable rows, and each line that could
    /// not be read with its reason.
    pub fn peek(&self) -> Result<Option<Peeked>, SpoolError> {
        let Some(seg) = self.segments.front() else {
            return Ok(None);
        };
        let f = fs::File::open(&seg.path).map_err(io(&seg.path))?;
        let name = seg
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut out = Peeked {
            rows: Vec::with_capacity(seg.rows),
            bad: Vec::new(),
        };
        for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
            let line = line.map_err(io(&seg.path))?;
            if line.is_empty() {
                continue;
            }
            match decode_line(&line) {
                Ok(r) => out.rows.push(r),
                Err(e) => out.bad.push(BadLine {
                    origin: format!("{name}:{}", i + 1),
                    text: String::from_utf8_lossy(&line).into_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        Ok(Some(out))
    }

    /// Delete the oldest segment (after its rows were acknowledged or dead-lettered).
    pub fn pop(&mut self) -> Result<(), SpoolError> {
        if let Some(seg) = self.segments.pop_front() {
            fs::remove_file(&seg.path).map_err(io(&seg.path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn rows(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::Funnel(FunnelStep {
                    ts: "2026-11-20T10:30:00Z".parse().unwrap(),
                    bucket: Bucket::Hour,
                    day: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
                    stage: "view_item".into(),
                    traffic_source: format!("s{i}"),
                    source: "t".into(),
                    count: i as u64,
                })
            })
            .collect()
    }

    /// A warm-up anomaly row as the models write it: NaN bands (the defect of issue 9.1).
    fn warm_up_anomaly() -> Record {
        Record::Anomalies(AnomalyRow {
            ts: "2026-11-20T10:30:00Z".parse().unwrap(),
            series: "spend".into(),
            platform: "meta".into(),
            campaign_id: "c1".into(),
            value: 12.5,
            expected: f64::NAN,
            lower: f64::NEG_INFINITY,
            upper: f64::INFINITY,
            score: 0.0,
            is_anomaly: false,
            detector: "robust_seasonal".into(),
        })
    }

    #[test]
    fn segments_survive_a_restart_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 0).unwrap();
        s.push(&rows(3), Cap::Soft).unwrap();
        s.push(&rows(2), Cap::Soft).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20, 0).unwrap();
        assert_eq!(s.rows(), 5);
        assert_eq!(s.peek().unwrap().unwrap().rows.len(), 3);
        s.pop().unwrap();
        assert_eq!(s.peek().unwrap().unwrap().rows, rows(2));
        s.pop().unwrap();
        assert!(s.is_empty());
        assert!(s.peek().unwrap().is_none());
    }

    #[test]
    fn nan_bands_round_trip_with_their_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 0).unwrap();
        let mut batch = rows(2);
        batch.insert(1, warm_up_anomaly());
        s.push(&batch, Cap::Soft).unwrap();
        let got = s.peek().unwrap().unwrap();
        assert!(got.bad.is_empty(), "{:?}", got.bad);
        assert_eq!(got.rows.len(), 3);
        let Record::Anomalies(a) = &got.rows[1] else {
            panic!("order kept")
        };
        assert!(a.expected.is_nan());
        assert_eq!(a.lower, f64::NEG_INFINITY);
        assert_eq!(a.upper, f64::INFINITY);
        assert_eq!(got.rows[0], batch[0]);
        assert_eq!(got.rows[2], batch[2]);
    }

    #[test]
    fn full_spool_refuses_and_keeps_what_it_has_then_the_reserve_takes_more() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 600, 4000).unwrap();
        s.push(&rows(2), Cap::Soft).unwrap();
        let e = s.push(&rows(10), Cap::Soft).unwrap_err();
        assert!(matches!(e, SpoolError::Full { .. }));
        assert!(e.to_string().contains("spool_max_bytes"), "{e}");
        assert_eq!(s.rows(), 2);
        assert!(!s.in_reserve());
        s.push(&rows(10), Cap::Reserve).unwrap();
        assert_eq!(s.rows(), 12);
        assert!(s.in_reserve());
        let e = s.push(&rows(100), Cap::Reserve).unwrap_err();
        assert!(matches!(e, SpoolError::ReserveFull { .. }), "{e}");
    }

    #[test]
    fn a_bad_line_is_handed_back_with_its_reason_and_its_neighbours_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 0).unwrap();
        s.push(&rows(3), Cap::Soft).unwrap();
        drop(s);
        let path = dir.path().join("segment-000000000000.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        // a digit flipped in the middle line: still JSON, but not what was written
        lines[1] = lines[1].replace("\"count\":1", "\"count\":7");
        let damaged = format!("{}\nnot json\n{}\n", lines.join("\n"), "");
        std::fs::write(&path, damaged).unwrap();
        let s = Spool::open(dir.path(), 1 << 20, 0).unwrap();
        let got = s.peek().unwrap().unwrap();
        let all = rows(3);
        assert_eq!(got.rows, vec![all[0].clone(), all[2].clone()]);
        assert_eq!(got.bad.len(), 2, "{:?}", got.bad);
        assert_eq!(got.bad[0].origin, "segment-000000000000.jsonl:2");
        assert!(
            got.bad[0].reason.contains("checksum mismatch"),
            "{:?}",
            got.bad[0]
        );
        assert_eq!(got.bad[1].origin, "segment-000000000000.jsonl:4");
        assert!(got.bad[1].reason.contains("checksum"), "{:?}", got.bad[1]);
    }

    #[test]
    fn lines_of_an_earlier_version_without_checksum_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::to_string(&rows(1)[0]).unwrap();
        std::fs::write(
            dir.path().join("segment-000000000007.jsonl"),
            format!("{json}\n"),
        )
        .unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 0).unwrap();
        assert_eq!(s.peek().unwrap().unwrap().rows, rows(1));
        s.push(&rows(1), Cap::Soft).unwrap();
        assert!(dir.path().join("segment-000000000008.jsonl").exists());
    }

    // ---- property test: every value of every record type round-trips ----

    /// Floats including NaN, the infinities, -0.0, subnormals and the extremes.
    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            any::<f64>(),
        ]
    }

    /// Decimals over the whole range of `rust_decimal` (28 digits, any scale), not just money.
    fn any_decimal() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            Just(Decimal::MAX),
            Just(Decimal::MIN),
            Just(Decimal::ZERO),
            (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
            (
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<bool>(),
                0u32..=28
            )
                .prop_map(|(lo, mid, hi, neg, s)| Decimal::from_parts(lo, mid, hi, neg, s)),
        ]
    }

    /// Strings: empty, long (64 KiB), any Unicode, quotes, newlines and control characters.
    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("x".repeat(65_536)),
            Just("line\nbreak \"quoted\" \\ back\u{0}nul\u{2028}".to_string()),
            any::<String>(),
        ]
    }

    fn any_ts() -> impl Strategy<Value = chrono::DateTime<chrono::Utc>> {
        // microsecond instants from 1900 to 2200 (QuestDB's resolution), and nanoseconds
        (
            -2_208_988_800_000_000i64..7_258_118_400_000_000i64,
            0u32..1000,
        )
            .prop_map(|(us, ns)| {
                chrono::DateTime::from_timestamp_micros(us).unwrap()
                    + chrono::Duration::nanoseconds(i64::from(ns))
            })
    }

    fn any_opt() -> impl Strategy<Value = Option<String>> {
        prop_oneof![Just(None), any_string().prop_map(Some)]
    }

    fn any_record() -> BoxedStrategy<Record> {
        let bucket = prop_oneof![Just(Bucket::Hour), Just(Bucket::Day)];
        let day = (-100_000i32..100_000)
            .prop_map(|d| chrono::NaiveDate::from_num_days_from_ce_opt(730_000 + d).unwrap());
        let campaign = (
            any_ts(),
            bucket.clone(),
            day.clone(),
            (any_string(), any_string(), any_string(), any_string()),
            (any_decimal(), any_decimal(), any_decimal(), any_decimal()),
            (any::<u64>(), any::<u64>(), any_f64(), any_string()),
        )
            .prop_map(
                |(ts, bucket, day, (p, a, c, name), (s, cv, sa, cva), (imp, clk, conv, cur))| {
                    Record::CampaignStats(CampaignStat {
                        ts,
                        bucket,
                        day,
                        key: CampaignKey {
                            platform: p,
                            account: a,
                            campaign_id: c,
                        },
                        campaign_name: name,
                        source: "src".into(),
                        spend: s,
                        conversion_value: cv,
                        spend_account: sa,
                        conversion_value_account: cva,
                        account_currency: cur.clone(),
                        currency: cur,
                        impressions: imp,
                        clicks: clk,
                        conversions: conv,
                    })
                },
            )
            .boxed();
        // an ad row: a campaign row plus the ad set / ad group and ad (issue 10)
        let ad = (
            campaign.clone(),
            (any_string(), any_string(), any_string(), any_string()),
        )
            .prop_map(|(r, (adset_id, adset_name, ad_id, ad_name))| {
                let Record::CampaignStats(stat) = r else {
                    unreachable!("the campaign strategy makes campaign rows")
                };
                Record::AdStats(crate::records::AdStat {
                    stat,
                    ad: crate::records::AdRef {
                        adset_id,
                        adset_name,
                        ad_id,
                        ad_name,
                    },
                })
            });
        let kind = prop_oneof![
            Just(OrderKind::Order),
            Just(OrderKind::Refund),
            Just(OrderKind::Cancellation)
        ];
        let order = (
            any_ts(),
            day.clone(),
            kind,
            (any_string(), any_string(), any_decimal(), any_decimal()),
            (any_opt(), any_opt(), any_opt(), any_opt(), any_opt()),
            any::<u32>(),
        )
            .prop_map(
                |(ts, day, kind, (e, o, amt, shop), (cu, ci, us, um, uc), items)| {
                    Record::Orders(OrderEvent {
                        ts,
                        day,
                        event_id: e,
                        order_id: o,
                        kind,
                        amount: amt,
                        amount_shop: shop,
                        shop_currency: "INR".into(),
                        currency: "INR".into(),
                        customer_id: cu,
                        city: ci,
                        utm_source: us,
                        utm_medium: um,
                        utm_campaign: uc,
                        items,
                        source: "s".into(),
                    })
                },
            );
        let funnel = (
            any_ts(),
            bucket,
            day,
            any_string(),
            any_string(),
            any::<u64>(),
        )
            .prop_map(|(ts, bucket, day, stage, tsrc, count)| {
                Record::Funnel(FunnelStep {
                    ts,
                    bucket,
                    day,
                    stage,
                    traffic_source: tsrc,
                    source: "s".into(),
                    count,
                })
            });
        let forecast = (
            any_ts(),
            any_ts(),
            any_string(),
            any::<i64>(),
            (any_f64(), any_f64(), any_f64(), any_f64(), any_f64()),
        )
            .prop_map(|(ts, g, series, h, (y, l8, u8, l9, u9))| {
                Record::Forecasts(ForecastRow {
                    ts,
                    generated_at: g,
                    model: "hw".into(),
                    series,
                    horizon_hours: h,
                    yhat: y,
                    yhat_lower_80: l8,
                    yhat_upper_80: u8,
                    yhat_lower_95: l9,
                    yhat_upper_95: u9,
                })
            });
        let anomaly = (
            any_ts(),
            any_string(),
            (any_f64(), any_f64(), any_f64(), any_f64(), any_f64()),
            any::<bool>(),
        )
            .prop_map(|(ts, series, (v, e, l, u, s), is_anomaly)| {
                Record::Anomalies(AnomalyRow {
                    ts,
                    series,
                    platform: "meta".into(),
                    campaign_id: "c".into(),
                    value: v,
                    expected: e,
                    lower: l,
                    upper: u,
                    score: s,
                    is_anomaly,
                    detector: "d".into(),
                })
            });
        let action = (any_ts(), any_string(), any_string(), any::<bool>()).prop_map(
            |(ts, reason, detail, dry_run)| {
                Record::Actions(ActionRow {
                    ts,
                    action_id: "a1".into(),
                    event: "executed".into(),
                    actor: "rules".into(),
                    mode: "recommend".into(),
                    dry_run,
                    rule: "cpa".into(),
                    kind: "pause".into(),
                    platform: "meta".into(),
                    account: "act".into(),
                    campaign_id: "c".into(),
                    campaign_name: "n".into(),
                    reason,
                    rule_values: "{}".into(),
                    state_before: String::new(),
                    state_after: String::new(),
                    result: "ok".into(),
                    detail,
                    idempotency_key: "k".into(),
                })
            },
        );
        prop_oneof![
            campaign.boxed(),
            order.boxed(),
            funnel.boxed(),
            forecast.boxed(),
            anomaly.boxed(),
            action.boxed(),
            ad.boxed()
        ]
        .boxed()
    }

    /// Every float field of a record, and the record with them zeroed (to compare the rest).
    fn split_floats(r: &Record) -> (Vec<f64>, Record) {
        let mut r = r.clone();
        let floats = match &mut r {
            Record::CampaignStats(c) => vec![std::mem::take(&mut c.conversions)],
            Record::AdStats(a) => vec![std::mem::take(&mut a.stat.conversions)],
            Record::Forecasts(f) => [
                &mut f.yhat,
                &mut f.yhat_lower_80,
                &mut f.yhat_upper_80,
                &mut f.yhat_lower_95,
                &mut f.yhat_upper_95,
            ]
            .into_iter()
            .map(std::mem::take)
            .collect(),
            Record::Anomalies(a) => [
                &mut a.value,
                &mut a.expected,
                &mut a.lower,
                &mut a.upper,
                &mut a.score,
            ]
            .into_iter()
            .map(std::mem::take)
            .collect(),
            _ => Vec::new(),
        };
        (floats, r)
    }

    /// Every decimal field with its scale (1.10 must stay 1.10, not become 1.1).
    fn decimals(r: &Record) -> Vec<(Decimal, u32)> {
        let d = |v: Decimal| (v, v.scale());
        match r {
            Record::CampaignStats(c) => vec![
                d(c.spend),
                d(c.conversion_value),
                d(c.spend_account),
                d(c.conversion_value_account),
            ],
            Record::Orders(o) => vec![d(o.amount), d(o.amount_shop)],
            Record::AdStats(a) => vec![
                d(a.stat.spend),
                d(a.stat.conversion_value),
                d(a.stat.spend_account),
                d(a.stat.conversion_value_account),
            ],
            _ => Vec::new(),
        }
    }

    /// Equality that treats every NaN as equal to NaN and tells -0.0 from 0.0 (bit for bit,
    /// except NaN payloads, which JSON cannot carry and nothing downstream reads), and compares
    /// decimals with their scale.
    fn same(a: &Record, b: &Record) -> bool {
        let (fa, ra) = split_floats(a);
        let (fb, rb) = split_floats(b);
        let floats_equal = fa.len() == fb.len()
            && fa
                .iter()
                .zip(&fb)
                .all(|(x, y)| (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits());
        floats_equal && ra == rb && decimals(a) == decimals(b)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Every record written to the spool comes back identical, in order, with nothing set aside.
        #[test]
        fn every_record_round_trips_through_the_spool(batch in proptest::collection::vec(any_record(), 1..8)) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Spool::open(dir.path(), u64::MAX / 4, 0).unwrap();
            s.push(&batch, Cap::Soft).unwrap();
            let s = Spool::open(dir.path(), u64::MAX / 4, 0).unwrap();
            let got = s.peek().unwrap().unwrap();
            prop_assert!(got.bad.is_empty(), "{:?}", got.bad);
            prop_assert_eq!(got.rows.len(), batch.len());
            for (a, b) in batch.iter().zip(&got.rows) {
                prop_assert!(same(a, b), "{:?}\n!=\n{:?}", a, b);
            }
        }

        /// The decoder never panics, whatever bytes a damaged segment holds: it returns a record
        /// or a reason.
        #[test]
        fn the_decoder_never_panics_on_damaged_lines(
            r in any_record(),
            cut in any::<usize>(),
            flip in any::<(usize, u8)>(),
            junk in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut line = Vec::new();
            encode_line(&r, &mut line).unwrap();
            line.pop();
            let mut damaged = line.clone();
            let i = flip.0 % damaged.len();
            damaged[i] ^= flip.1 | 1;
            let truncated = &line[..cut % line.len()];
            for l in [&damaged[..], truncated, &junk[..]] {
                if let Ok(back) = decode_line(l) {
                    // a damaged line is only ever accepted if its checksum still matches, i.e. it
                    // is the line that was written (truncation at 0 bytes aside)
                    prop_assert!(same(&back, &r), "damaged line accepted as {:?}", back);
                }
            }
        }
    }
}
