//! How the action center writes numbers and times for MOI's team: rupees with Indian digit
//! grouping (₹4,04,436: thousands, then groups of two), percentages, and times in IST. Display
//! only: amounts are rounded to whole rupees here, never in what is stored or executed.

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

/// Group an unsigned digit string the Indian way: the last three digits, then pairs.
fn group_indian(digits: &str) -> String {
    let n = digits.len();
    if n <= 3 {
        return digits.to_string();
    }
    let (head, tail) = digits.split_at(n - 3);
    let mut out = String::new();
    let first = head.len() % 2;
    if first == 1 {
        out.push_str(&head[..1]);
    }
    for (i, pair) in head.as_bytes()[first..].chunks(2).enumerate() {
        if i > 0 || first == 1 {
            out.push(',');
        }
        out.push_str(std::str::from_utf8(pair).unwrap_or_default());
    }
    out.push(',');
    out.push_str(tail);
    out
}

/// Whole rupees with Indian grouping: `₹4,04,436`, `−₹1,200`.
pub fn inr(d: Decimal) -> String {
    let r = d.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    let neg = r.is_sign_negative() && !r.is_zero();
    let digits = r.abs().trunc().to_string();
    format!("{}₹{}", if neg { "−" } else { "" }, group_indian(&digits))
}

/// Rupees with paise, for budgets and caps: `₹1,00,000.50`.
pub fn inr_paise(d: Decimal) -> String {
    let r = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let neg = r.is_sign_negative() && !r.is_zero();
    let a = r.abs();
    let whole = a.trunc();
    let frac = ((a - whole) * Decimal::from(100)).trunc();
    format!(
        "{}₹{}.{:02}",
        if neg { "−" } else { "" },
        group_indian(&whole.to_string()),
        frac
    )
}

/// A fraction as a percentage with one decimal (`-0.91` → `−91.0%`); `—` when missing.
pub fn pct(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => {
            let s = format!("{:.1}%", v * 100.0);
            s.replacen('-', "−", 1)
        }
        _ => "—".into(),
    }
}

/// A time in IST: `01 Dec 2026, 15:45 IST`.
pub fn ist(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Kolkata)
        .format("%d %b %Y, %H:%M IST")
        .to_string()
}

/// A time in IST with seconds, for the audit trail.
pub fn ist_secs(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Kolkata)
        .format("%Y-%m-%d %H:%M:%S IST")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn indian_grouping_matches_the_seed() {
        // the seed writes its loss as 4,04,436 INR
        assert_eq!(inr(dec!(404436)), "₹4,04,436");
        assert_eq!(inr(dec!(404435.6)), "₹4,04,436");
        assert_eq!(inr(dec!(27899)), "₹27,899");
        assert_eq!(inr(dec!(2750)), "₹2,750");
        assert_eq!(inr(dec!(999)), "₹999");
        assert_eq!(inr(dec!(0.4)), "₹0");
        assert_eq!(inr(dec!(-0.4)), "₹0");
        assert_eq!(inr(dec!(-1200)), "−₹1,200");
        assert_eq!(inr(dec!(12345678)), "₹1,23,45,678");
        assert_eq!(inr(dec!(123456789)), "₹12,34,56,789");
        assert_eq!(inr_paise(dec!(100000.5)), "₹1,00,000.50");
        assert_eq!(inr_paise(dec!(-5.25)), "−₹5.25");
    }

    #[test]
    fn percentages_and_ist() {
        assert_eq!(pct(Some(-0.91)), "−91.0%");
        assert_eq!(pct(Some(3.5)), "350.0%");
        assert_eq!(pct(None), "—");
        assert_eq!(pct(Some(f64::NAN)), "—");
        let t: DateTime<Utc> = "2026-12-01T10:15:00Z".parse().unwrap();
        assert_eq!(ist(t), "01 Dec 2026, 15:45 IST");
    }
}
