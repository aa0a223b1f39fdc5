//! CSV import of the files people actually export: Meta Ads Manager, Google Ads reports and
//! Shopify orders. This module turns a file into a stream of [`Item`]s (good rows as
//! observations, bad rows named with line, column and reason, summary rows skipped); the
//! `import` command (`crate::commands::import`) sums rows that share a key and emits them
//! through the pipeline like every other source.
//!
//! - `decode`: encoding (UTF-8, UTF-16 LE/BE, Latin-1 rows) and delimiter;
//! - `headers` + `headers.toml`: header names in English, Spanish, French, German, Portuguese;
//! - `cells`: numbers, currencies, counts, dates, exact splits;
//! - `ads`: Meta and Google Ads rows; `shopify`: order rows; `aggregate`: summing by key.

mod ads;
pub mod aggregate;
pub mod cells;
pub mod decode;
pub mod headers;
mod shopify;

use chrono::NaiveDate;
use chrono_tz::Tz;
use std::collections::VecDeque;
use std::io::Read;

use crate::normalize::Observation;
pub use aggregate::{Key, Parsed, parse};
pub use cells::{DayWindow, DecimalStyle};
use decode::FileEncoding;
use headers::{Columns, Field, Lang};

/// Kept at its old path until every caller uses `crate::sources::utm`.
pub use crate::sources::utm::utm;

/// Which export a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// Meta Ads Manager report export (campaign or ad level, one row per day).
    Meta,
    /// Google Ads campaign report (one row per campaign and day, segments allowed).
    GoogleAds,
    /// Shopify orders export (one row per line item; the first row of an order has the totals).
    Shopify,
}

impl ImportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Meta => "meta",
            ImportFormat::GoogleAds => "google_ads",
            ImportFormat::Shopify => "shopify",
        }
    }

    fn title(self) -> &'static str {
        match self {
            ImportFormat::Meta => "Meta Ads Manager",
            ImportFormat::GoogleAds => "Google Ads",
            ImportFormat::Shopify => "Shopify orders",
        }
    }
}

/// What the importer needs to know that the file may not say.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Account id when the file has no account column.
    pub account: String,
    /// Currency when the file has no currency column or header unit. No default: amounts whose
    /// currency is unknown are row errors.
    pub currency: Option<String>,
    /// Timezone of the account or shop: its days become instants in it.
    pub timezone: Tz,
    /// Read `03/04/2026` as 3 April (Indian and European exports) rather than 4 March.
    pub day_first: bool,
    /// Decimal separator for cells that do not tell ("1,234").
    pub decimal: DecimalStyle,
    /// Spread a row that covers several days evenly over them (approximate) instead of
    /// rejecting it.
    pub allow_ranges: bool,
    /// Longest range a row may cover with `allow_ranges`, in days.
    pub max_range_days: u32,
    /// Days accepted.
    pub days: DayWindow,
    /// Longest field accepted, in bytes; longer ones are row errors.
    pub max_field_bytes: usize,
}

impl ImportOptions {
    /// Defaults for an import run on `today`: days from 2005-01-01 (before any of the three
    /// platforms' reporting as it is exported today) to tomorrow (a timezone east of UTC may
    /// already report it); fields up to 64 KiB (a Shopify note is the longest real field).
    pub fn new(account: impl Into<String>, timezone: Tz, today: NaiveDate) -> Self {
        Self {
            account: account.into(),
            currency: None,
            timezone,
            day_first: true,
            decimal: DecimalStyle::Auto,
            allow_ranges: false,
            max_range_days: 366,
            days: DayWindow {
                earliest: NaiveDate::from_ymd_opt(2005, 1, 1).unwrap_or(NaiveDate::MIN),
                latest: today.succ_opt().unwrap_or(today),
            },
            max_field_bytes: 64 * 1024,
        }
    }
}

/// A row that was not imported.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// 1-based line in the file where the row starts.
    pub line: u64,
    /// Header of the offending column as written (empty when the row as a whole is at fault).
    pub column: String,
    pub reason: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {:?}: {}",
            self.line, self.column, self.reason
        )
    }
}

/// A row left out on purpose: a summary or total row the export adds.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: skipped, {}", self.line, self.reason)
    }
}

/// What one row of the file became.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A good row and what it observed (several observations for a spread range, or an order
    /// and its refund).
    Good {
        line: u64,
        observations: Vec<Observation>,
    },
    Rejected(Rejected),
    Skipped(Skipped),
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot read the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error(
        "no {what} header row in the first {lines} lines (looked for {wanted}, with comma, tab or semicolon between columns): is this a {what} export?"
    )]
    NoHeader {
        what: &'static str,
        wanted: String,
        lines: usize,
    },
    #[error(
        "line {line}: the header has no day column ({wanted}): download the report segmented by day (Google Ads: Segment > Time > Day; Meta: Breakdown > By time > Day)"
    )]
    NoDay { line: u64, wanted: String },
}

/// Lines searched for the header (Google Ads puts a title and a date range before it).
const HEADER_SEARCH_LINES: usize = 20;

/// Header detection: whether `fields` is the header row of `format`.
fn header_status(format: ImportFormat, fields: &[String]) -> HeaderStatus {
    match format {
        ImportFormat::Shopify => {
            let keys: Vec<String> = fields.iter().map(|f| headers::header_key(f).0).collect();
            if ["name", "created at", "total"]
                .iter()
                .all(|k| keys.iter().any(|x| x == k))
            {
                HeaderStatus::Yes
            } else {
                HeaderStatus::No
            }
        }
        ImportFormat::Meta | ImportFormat::GoogleAds => {
            let cols = Columns::new(fields, aliases(format));
            if !(cols.has(Field::CampaignName) && cols.has(Field::Spend)) {
                HeaderStatus::No
            } else if cols.has(Field::Day) || cols.has(Field::ReportingStarts) {
                HeaderStatus::Yes
            } else {
                HeaderStatus::NoDay
            }
        }
    }
}

enum HeaderStatus {
    Yes,
    No,
    NoDay,
}

fn aliases(format: ImportFormat) -> &'static headers::AliasMap {
    match format {
        ImportFormat::GoogleAds => &headers::ALIASES.google_ads,
        _ => &headers::ALIASES.meta,
    }
}

fn wanted(format: ImportFormat) -> String {
    match format {
        ImportFormat::Meta => {
            "\"Campaign name\", \"Day\" or \"Reporting starts\", \"Amount spent\"".into()
        }
        ImportFormat::GoogleAds => "\"Campaign\", \"Day\", \"Cost\"".into(),
        ImportFormat::Shopify => "\"Name\", \"Created at\", \"Total\"".into(),
    }
}

/// A CSV reader of `input` split at `delimiter` that treats every line as a record (the header is
/// found, not assumed first) and allows rows of any length (they are checked per row).
fn records<R: Read>(input: R, delimiter: u8) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(input)
}

/// The delimiter and the index of the header record, found by parsing the file's first bytes
/// with each candidate delimiter: the one that yields a recognisable header wins (a count of
/// commas would pick "," in a tab-separated file full of "1,234").
fn sniff_layout(
    format: ImportFormat,
    head: &[u8],
    encoding: FileEncoding,
) -> Result<(u8, usize), ImportError> {
    let mut no_day = None;
    for delim in [b',', b'\t', b';'] {
        let mut rdr = records(head, delim);
        let mut rec = csv::ByteRecord::new();
        for i in 0..HEADER_SEARCH_LINES {
            match rdr.read_byte_record(&mut rec) {
                Ok(true) => {}
                // the sniffed prefix may end mid-record: what it holds was looked at
                Ok(false) | Err(_) => break,
            }
            let Ok(f) = decode::fields(&rec, encoding, usize::MAX) else {
                continue;
            };
            match header_status(format, &f.fields) {
                HeaderStatus::Yes => return Ok((delim, i)),
                HeaderStatus::NoDay => {
                    no_day.get_or_insert(rec.position().map_or(0, |p| p.line()));
                }
                HeaderStatus::No => {}
            }
        }
    }
    if let Some(line) = no_day {
        return Err(ImportError::NoDay {
            line,
            wanted: "\"Day\", \"Día\", \"Jour\", \"Tag\", \"Dia\"".into(),
        });
    }
    Err(ImportError::NoHeader {
        what: format.title(),
        wanted: wanted(format),
        lines: HEADER_SEARCH_LINES,
    })
}

/// A streaming reader of one export: holds one record at a time (plus the 64 KiB it sniffed),
/// whatever the file's size.
pub struct Reader {
    format: ImportFormat,
    opts: ImportOptions,
    csv: csv::Reader<Box<dyn Read>>,
    rec: csv::ByteRecord,
    encoding: FileEncoding,
    delimiter: u8,
    ctx: Ctx,
    orders: shopify::OrderState,
    out: VecDeque<Item>,
    done: bool,
    /// Rows read as Latin-1 because they were not valid UTF-8.
    pub latin1_rows: u64,
    /// Things about the file as a whole the user should know (e.g. "Results" not counted).
    pub warnings: Vec<String>,
}

/// What the row parsers need from the header.
pub(crate) struct Ctx {
    pub cols: Columns,
    pub style: DecimalStyle,
    /// Header unit of the spend column ("Amount spent (INR)").
    pub header_currency: Option<String>,
    /// Shopify columns, by folded header name.
    pub shop: shopify::ShopColumns,
}

impl Reader {
    pub fn new(
        format: ImportFormat,
        raw: impl Read + 'static,
        opts: &ImportOptions,
    ) -> Result<Self, ImportError> {
        let decoded = decode::decode(raw)?;
        let (delimiter, header_index) = sniff_layout(format, &decoded.head, decoded.encoding)?;
        let stream: Box<dyn Read> =
            Box::new(std::io::Cursor::new(decoded.head).chain(decoded.rest));
        let mut csv = records(stream, delimiter);
        let mut rec = csv::ByteRecord::new();
        for _ in 0..=header_index {
            csv.read_byte_record(&mut rec)?;
        }
        let header = decode::fields(&rec, decoded.encoding, usize::MAX)
            .map(|f| f.fields)
            .unwrap_or_default();
        let cols = Columns::new(&header, aliases(format));
        let style = match opts.decimal {
            DecimalStyle::Auto
                if cols
                    .langs
                    .iter()
                    .any(|l| matches!(l, Lang::Fr | Lang::De | Lang::Pt)) =>
            {
                DecimalStyle::Comma
            }
            DecimalStyle::Auto if cols.langs.contains(&Lang::Es) => DecimalStyle::Auto,
            DecimalStyle::Auto => DecimalStyle::Point,
            s => s,
        };
        let header_currency = cols
            .get(Field::Spend)
            .and_then(|i| cols.units.get(&i))
            .cloned();
        let mut warnings = Vec::new();
        if format == ImportFormat::Meta
            && !cols.has(Field::Purchases)
            && cols.has(Field::Results)
            && !cols.has(Field::ResultIndicator)
        {
            warnings.push(format!(
                "{:?} is not counted as conversions: the file has no \"Result indicator\" column saying its results are purchases (add \"Purchases\" or \"Result indicator\" to the export)",
                cols.name(cols.get(Field::Results))
            ));
        }
        let shop = shopify::ShopColumns::new(&header);
        Ok(Self {
            format,
            opts: opts.clone(),
            csv,
            rec,
            encoding: decoded.encoding,
            delimiter,
            ctx: Ctx {
                cols,
                style,
                header_currency,
                shop,
            },
            orders: shopify::OrderState::default(),
            out: VecDeque::new(),
            done: false,
            latin1_rows: 0,
            warnings,
        })
    }

    /// The encoding the file was read in.
    pub fn encoding(&self) -> &'static str {
        self.encoding.as_str()
    }

    /// The column delimiter found.
    pub fn delimiter(&self) -> char {
        char::from(self.delimiter)
    }

    fn read_row(&mut self) -> Result<bool, ImportError> {
        if !self.csv.read_byte_record(&mut self.rec)? {
            return Ok(false);
        }
        let line = self.rec.position().map_or(0, |p| p.line());
        let decoded = decode::fields(&self.rec, self.encoding, self.opts.max_field_bytes);
        // a huge field grew the record's buffer: give the memory back
        if self.rec.as_slice().len() > self.opts.max_field_bytes {
            self.rec = csv::ByteRecord::new();
        }
        let f = match decoded {
            Ok(f) => f,
            Err(i) => {
                self.out.push_back(Item::Rejected(Rejected {
                    line,
                    column: self.ctx.cols.name(Some(i)),
                    reason: format!(
                        "field longer than {} bytes (the limit for one cell)",
                        self.opts.max_field_bytes
                    ),
                }));
                return Ok(true);
            }
        };
        if f.fields.iter().all(|c| c.trim().is_empty()) {
            return Ok(true);
        }
        if let Some(i) = f.undecodable {
            self.out.push_back(Item::Rejected(Rejected {
                line,
                column: self.ctx.cols.name(Some(i)),
                reason: format!("bytes that are not valid {}", self.encoding.as_str()),
            }));
            return Ok(true);
        }
        if f.latin1 {
            self.latin1_rows += 1;
        }
        match self.format {
            ImportFormat::Meta | ImportFormat::GoogleAds => {
                let item = ads::row(self.format, &self.ctx, &self.opts, line, &f.fields);
                self.out.push_back(item);
            }
            ImportFormat::Shopify => {
                self.orders
                    .row(&self.ctx, &self.opts, line, &f.fields, &mut self.out);
            }
        }
        Ok(true)
    }
}

impl Iterator for Reader {
    type Item = Result<Item, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.out.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match self.read_row() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    self.orders.finish(&mut self.out);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// A cell of `fields` by optional column index, trimmed ("" when absent).
pub(crate) fn cell(fields: &[String], i: Option<usize>) -> &str {
    i.and_then(|i| fields.get(i)).map_or("", |s| s.trim())
}

/// The currency of a row's amounts: the currency column, else an ISO code in the amount
/// cells, else the header's unit, else `--currency`; a bare symbol alone never decides
/// (`$` is a dozen currencies) and never defaults.
pub(crate) fn resolve_currency(
    column: Option<&str>,
    amounts: &[(&cells::Amount, String)],
    header: Option<&str>,
    flag: Option<&str>,
) -> Result<String, (String, String)> {
    let mut from_cells: Option<(&str, &String)> = None;
    for (a, col) in amounts {
        if let Some(c) = &a.code {
            match from_cells {
                Some((prev, _)) if prev != c => {
                    return Err((
                        col.clone(),
                        format!("names {c} while another amount of the row names {prev}"),
                    ));
                }
                _ => from_cells = Some((c, col)),
            }
        }
    }
    let column = column.filter(|c| !c.is_empty());
    if let Some(c) = column
        && !headers::is_currency_code(c)
    {
        return Err((
            String::new(),
            format!("currency {c:?} is not an ISO 4217 code"),
        ));
    }
    if let (Some(c), Some((cell, col))) = (column, from_cells)
        && c != cell
    {
        return Err((
            col.clone(),
            format!("names {cell} but the row's currency column says {c}"),
        ));
    }
    let chosen = column
        .map(str::to_string)
        .or_else(|| from_cells.map(|(c, _)| c.to_string()))
        .or_else(|| header.map(str::to_string))
        .or_else(|| flag.map(str::to_string));
    let symbol = amounts
        .iter()
        .find_map(|(a, col)| a.symbol.map(|s| (s, col)));
    match (chosen, symbol) {
        (Some(c), Some((s, col))) => match cells::symbol_currency(s) {
            Some(meant) if meant != c => Err((
                col.clone(),
                format!("the symbol {s} means {meant}, but the row's currency is {c}"),
            )),
            _ => Ok(c),
        },
        (Some(c), None) => Ok(c),
        (None, Some((s, col))) => Err((
            col.clone(),
            format!(
                "the amount is written with {s} but the file has no currency column or code: pass --currency with the account's ISO code (e.g. --currency USD)"
            ),
        )),
        (None, None) => Err((
            amounts.first().map(|(_, c)| c.clone()).unwrap_or_default(),
            "no currency: the file has no currency column and no (XXX) code in the header; pass --currency with the account's ISO code (e.g. --currency INR)".into(),
        )),
    }
}
