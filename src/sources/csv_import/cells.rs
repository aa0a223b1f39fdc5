//! Cell parsing shared by the importers: numbers as the exports write them (currency symbols and
//! codes, Western, Indian and European grouping, decimal comma), counts that must fit their
//! column, dates in a sane window, and the exact even split of a multi-day row.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::str::FromStr;

/// Which character separates decimals when a cell alone cannot tell ("1,234" or "1.234").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecimalStyle {
    /// From the header's language: English point; French, German and Portuguese comma; Spanish
    /// (comma in Spain, point in Mexico) makes such a cell a row error asking for the flag.
    Auto,
    /// 1,234.56
    Point,
    /// 1.234,56
    Comma,
}

/// A number cell: its value, and the currency it names, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Amount {
    pub value: Decimal,
    /// ISO code written in the cell ("INR 0.07", "12 USD").
    pub code: Option<String>,
    /// Currency symbol written in the cell ("$", "€", "₹").
    pub symbol: Option<&'static str>,
}

/// Symbols, longest first so "US$" and "R$" win over "$". The second item is the one currency
/// the symbol means, when it means only one; `$` and `Rs` name several.
const SYMBOLS: &[(&str, Option<&str>)] = &[
    ("US$", Some("USD")),
    ("R$", Some("BRL")),
    ("Rs.", None),
    ("Rs", None),
    ("₹", Some("INR")),
    ("€", Some("EUR")),
    ("£", Some("GBP")),
    ("¥", None),
    ("$", None),
];

/// The one currency `symbol` stands for, when unambiguous.
pub fn symbol_currency(symbol: &str) -> Option<&'static str> {
    SYMBOLS
        .iter()
        .find(|(s, _)| *s == symbol)
        .and_then(|(_, c)| *c)
}

/// Largest magnitude QuestDB's DECIMAL(18,6) money columns hold (12 integer digits).
pub fn max_money() -> Decimal {
    Decimal::from_str("999999999999.999999").unwrap_or(Decimal::MAX)
}

/// Why a number did not parse (the cell itself is added by [`CellError::Number`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberProblem {
    #[error("is not a number")]
    NotANumber,
    #[error(
        "is ambiguous ({0} could group thousands or separate decimals): pass --decimal point or --decimal comma"
    )]
    Ambiguous(char),
    #[error("is not a number (mixed separators)")]
    MixedSeparators,
    #[error("is not a number (unexpected digit grouping)")]
    Grouping,
    #[error("is too large to be exact (more than 28 digits)")]
    TooManyDigits,
}

/// Why a cell was refused; the message is the row's rejection reason in the import summary.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CellError {
    #[error("{cell:?} {problem}")]
    Number {
        cell: String,
        problem: NumberProblem,
    },
    #[error("{0} has more than 6 decimals (money is stored in micro-units, and would be rounded)")]
    TooManyDecimals(Decimal),
    #[error("{0} is beyond what the money columns hold (12 integer digits)")]
    BeyondMoneyColumns(Decimal),
    #[error("{0} is negative")]
    Negative(Decimal),
    #[error("{0} is not a whole number")]
    NotWhole(Decimal),
    #[error("{0} is above the largest count stored ({max})", max = u64::MAX)]
    CountTooLarge(Decimal),
    #[error("{0} items is above the largest item count stored ({max})", max = u32::MAX)]
    ItemsTooLarge(u64),
    #[error("{0:?} is not a date (expected e.g. 2026-11-20 or 20/11/2026)")]
    NotADate(String),
    #[error(
        "{day} is outside the accepted days {earliest}..={latest} (a typo, or a placeholder date?)"
    )]
    OutsideDays {
        day: NaiveDate,
        earliest: NaiveDate,
        latest: NaiveDate,
    },
}

/// Parse a money or count cell. Empty, `-` and `--` are zero (how the exports write "none").
pub fn parse_amount(cell: &str, style: DecimalStyle) -> Result<Amount, CellError> {
    let mut s = cell.trim();
    let mut symbol = None;
    let mut code = None;
    // a leading or trailing ISO code: "INR 1,234", "1.234,56 EUR"
    if s.len() > 3 {
        let (head, tail) = (s.get(..3), s.get(s.len() - 3..));
        if let Some(h) = head.filter(|h| super::headers::is_currency_code(h))
            && !s[3..].starts_with(|c: char| c.is_ascii_alphabetic())
        {
            code = Some(h.to_string());
            s = s[3..].trim();
        } else if let Some(t) = tail.filter(|t| super::headers::is_currency_code(t))
            && !s[..s.len() - 3].ends_with(|c: char| c.is_ascii_alphabetic())
        {
            code = Some(t.to_string());
            s = s[..s.len() - 3].trim();
        }
    }
    let mut owned = s.to_string();
    for (sym, _) in SYMBOLS {
        if owned.contains(sym) {
            owned = owned.replacen(sym, "", 1);
            symbol = Some(*sym);
            break;
        }
    }
    let s: String = owned
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\'' | '\u{2009}'))
        .collect();
    if s.is_empty() || s == "-" || s == "--" {
        return Ok(Amount {
            value: Decimal::ZERO,
            code,
            symbol,
        });
    }
    let (neg, body) = if let Some(inner) = s.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        (true, inner)
    } else if let Some(rest) = s.strip_prefix('-') {
        (true, rest)
    } else {
        (false, s.as_str())
    };
    let value = plain_number(body, style).map_err(|problem| CellError::Number {
        cell: cell.to_string(),
        problem,
    })?;
    Ok(Amount {
        value: if neg { -value } else { value },
        code,
        symbol,
    })
}

/// Digits with grouping and one decimal separator.
fn plain_number(body: &str, style: DecimalStyle) -> Result<Decimal, NumberProblem> {
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b',' || b == b'.')
    {
        return Err(NumberProblem::NotANumber);
    }
    let commas = body.matches(',').count();
    let dots = body.matches('.').count();
    // which separator is the decimal one (None: the number has no decimals)
    let decimal = match (commas, dots) {
        (0, 0) => None,
        (_, 0) | (0, _) => {
            let sep = if commas > 0 { ',' } else { '.' };
            let n = commas + dots;
            let after = body.rsplit(sep).next().map_or(0, str::len);
            if n > 1 {
                None // 1,234,567 / 12,34,567 / 1.234.567: grouping only
            } else if after != 3 {
                Some(sep) // 12,5 / 0.07 / 1234.5678
            } else {
                // "1,234" or "1.234": the file's style decides
                match style {
                    DecimalStyle::Point => (sep == '.').then_some('.'),
                    DecimalStyle::Comma => (sep == ',').then_some(','),
                    DecimalStyle::Auto => {
                        return Err(NumberProblem::Ambiguous(sep));
                    }
                }
            }
        }
        _ => {
            // both: the last one separates decimals
            let last_comma = body.rfind(',').unwrap_or(0);
            let last_dot = body.rfind('.').unwrap_or(0);
            Some(if last_comma > last_dot { ',' } else { '.' })
        }
    };
    let (int, frac) = match decimal {
        Some(sep) => match body.rsplit_once(sep) {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        },
        None => (body, None),
    };
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(NumberProblem::NotANumber);
    }
    let group = match decimal {
        Some(',') => '.',
        Some(_) => ',',
        None if commas > 0 => ',',
        None => '.',
    };
    if int.contains(if group == ',' { '.' } else { ',' }) {
        return Err(NumberProblem::MixedSeparators);
    }
    if int.contains(group) {
        let groups: Vec<&str> = int.split(group).collect();
        let first_ok = !groups[0].is_empty() && groups[0].len() <= 3;
        let last_ok = groups.last().is_some_and(|g| g.len() == 3);
        let middle = &groups[1..groups.len() - 1];
        let western = middle.iter().all(|g| g.len() == 3);
        let indian = group == ',' && middle.iter().all(|g| g.len() == 2);
        if !(first_ok && last_ok && (western || indian)) {
            return Err(NumberProblem::Grouping);
        }
    }
    let digits = int.replace(group, "");
    if digits.is_empty() {
        return Err(NumberProblem::NotANumber);
    }
    let total_digits = digits.trim_start_matches('0').len() + frac.map_or(0, str::len);
    if total_digits > 28 {
        return Err(NumberProblem::TooManyDigits);
    }
    let plain = match frac {
        Some(f) => format!("{digits}.{f}"),
        None => digits,
    };
    Decimal::from_str(&plain).map_err(|_| NumberProblem::NotANumber)
}

/// A money amount: at most 6 decimals (QuestDB keeps micro-units; more would be rounded) and
/// within DECIMAL(18,6).
pub fn check_money(v: Decimal) -> Result<Decimal, CellError> {
    if v.normalize().scale() > 6 {
        return Err(CellError::TooManyDecimals(v));
    }
    if v.abs() > max_money() {
        return Err(CellError::BeyondMoneyColumns(v));
    }
    Ok(v)
}

/// A count cell: whole, non-negative, and within `u64`.
pub fn to_count(v: Decimal) -> Result<u64, CellError> {
    if v.is_sign_negative() && !v.is_zero() {
        return Err(CellError::Negative(v));
    }
    if !v.fract().is_zero() {
        return Err(CellError::NotWhole(v));
    }
    rust_decimal::prelude::ToPrimitive::to_u64(&v).ok_or(CellError::CountTooLarge(v))
}

/// Parse a date in the formats the exports use.
pub fn parse_date(cell: &str, day_first: bool) -> Result<NaiveDate, CellError> {
    let whole = cell.trim();
    // timestamps: keep the date part
    let s = whole
        .split(['T', ' '])
        .next()
        .filter(|d| d.len() >= 8 && !d.contains(','))
        .unwrap_or(whole);
    let numeric = if day_first {
        ["%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y"]
    } else {
        ["%m/%d/%Y", "%m-%d-%Y", "%m.%d.%Y"]
    };
    for f in ["%Y-%m-%d", "%Y/%m/%d"]
        .iter()
        .chain(numeric.iter())
        .chain(["%d-%b-%Y", "%d %b %Y", "%b %d, %Y", "%B %d, %Y", "%d %B %Y"].iter())
    {
        if let Ok(d) =
            NaiveDate::parse_from_str(whole, f).or_else(|_| NaiveDate::parse_from_str(s, f))
        {
            return Ok(d);
        }
    }
    Err(CellError::NotADate(cell.to_string()))
}

/// The days an import accepts: nothing before `earliest` (older than any ad platform's
/// reporting) and nothing after `latest` (a day can only be reported once it has begun).
#[derive(Debug, Clone, Copy)]
pub struct DayWindow {
    pub earliest: NaiveDate,
    pub latest: NaiveDate,
}

impl DayWindow {
    pub fn check(&self, d: NaiveDate) -> Result<NaiveDate, CellError> {
        if d < self.earliest || d > self.latest {
            return Err(CellError::OutsideDays {
                day: d,
                earliest: self.earliest,
                latest: self.latest,
            });
        }
        Ok(d)
    }
}

/// Split `total` into `n` parts that sum to it exactly, in steps of the amount's smallest unit
/// (at least 0.01): each part is the floor of the share, and the remainder units go one each to
/// the first parts, so the same input always splits the same way.
pub fn split_money(total: Decimal, n: u32) -> Vec<Decimal> {
    let n = n.max(1);
    let scale = total.scale().max(2);
    let mut units = total;
    units.rescale(scale);
    let m = units.mantissa();
    let (q, r) = (m.div_euclid(i128::from(n)), m.rem_euclid(i128::from(n)));
    (0..i128::from(n))
        .map(|i| Decimal::from_i128_with_scale(q + i128::from(i < r), scale))
        .collect()
}

/// Split a count into `n` whole parts that sum to it exactly (remainder to the first parts).
pub fn split_count(total: u64, n: u32) -> Vec<u64> {
    let n = u64::from(n.max(1));
    let (q, r) = (total / n, total % n);
    (0..n).map(|i| q + u64::from(i < r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn v(s: &str) -> Decimal {
        parse_amount(s, DecimalStyle::Point).unwrap().value
    }

    #[test]
    fn numbers_with_symbols_and_indian_grouping_are_exact() {
        assert_eq!(v("₹1,23,456.78"), dec!(123456.78));
        assert_eq!(v("1,234,567.89"), dec!(1234567.89));
        assert_eq!(v("Rs. 2,499"), dec!(2499));
        assert_eq!(v("INR 0.07"), dec!(0.07));
        assert_eq!(v("--"), dec!(0));
        assert_eq!(v(""), dec!(0));
        assert_eq!(v("(12.50)"), dec!(-12.50));
        for bad in ["1,2,3", "12,34,5", "abc", "1.2.3,4,5", "1,,2"] {
            assert!(parse_amount(bad, DecimalStyle::Point).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimal_comma_and_currency_codes() {
        let c = |s| parse_amount(s, DecimalStyle::Comma).unwrap();
        assert_eq!(c("1.234,56 €").value, dec!(1234.56));
        assert_eq!(c("1.234,56 €").symbol, Some("€"));
        assert_eq!(c("R$ 1.234,56").symbol, Some("R$"));
        assert_eq!(c("1.234").value, dec!(1234));
        assert_eq!(c("12,5").value, dec!(12.5));
        assert_eq!(c("1 234,56 EUR").code.as_deref(), Some("EUR"));
        // unambiguous whatever the style
        assert_eq!(v("12,50"), dec!(12.50));
        assert_eq!(v("1.234,56"), dec!(1234.56));
        // ambiguous without a style
        assert!(parse_amount("1,234", DecimalStyle::Auto).is_err());
        assert_eq!(
            parse_amount("1,234.5", DecimalStyle::Auto).unwrap().value,
            dec!(1234.5)
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let huge = parse_amount("99999999999999999999999999999999", DecimalStyle::Point);
        let e = huge.unwrap_err();
        assert!(
            matches!(
                e,
                CellError::Number {
                    problem: NumberProblem::TooManyDigits,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("too large"), "{e}");
        let e = to_count(dec!(18446744073709551616)).unwrap_err();
        assert_eq!(e, CellError::CountTooLarge(dec!(18446744073709551616)));
        assert!(e.to_string().contains("above"), "{e}");
        assert_eq!(to_count(dec!(18446744073709551615)).unwrap(), u64::MAX);
        assert!(to_count(dec!(-1)).is_err());
        assert!(check_money(dec!(1000000000000)).is_err());
        assert!(check_money(dec!(0.0000001)).is_err());
        assert_eq!(check_money(dec!(2.500000000)).unwrap(), dec!(2.5));
    }

    #[test]
    fn dates_in_export_formats() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
        for s in [
            "2026-11-03",
            "03/11/2026",
            "03-Nov-2026",
            "Nov 3, 2026",
            "2026-11-03 10:15:00",
        ] {
            assert_eq!(parse_date(s, true).unwrap(), d, "{s}");
        }
        assert_eq!(parse_date("11/03/2026", false).unwrap(), d);
        assert!(parse_date("yesterday", true).is_err());
    }

    #[test]
    fn splits_sum_exactly() {
        let parts = split_money(dec!(100.00), 3);
        assert_eq!(parts, vec![dec!(33.34), dec!(33.33), dec!(33.33)]);
        assert_eq!(parts.iter().sum::<Decimal>(), dec!(100.00));
        assert_eq!(split_money(dec!(7), 7), vec![dec!(1.00); 7]);
        assert_eq!(
            split_money(dec!(0.05), 7).iter().sum::<Decimal>(),
            dec!(0.05)
        );
        assert_eq!(split_count(10, 4), vec![3, 3, 2, 2]);
    }
}
