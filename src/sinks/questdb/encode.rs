//! One record as one ILP row (`encode`), and the ILP/HTTP client's configuration string
//! (`conf_string`, with the password escaped the way the client's parser reads it).

use chrono::Utc;
use questdb::ingress::{Buffer, TimestampMicros};

use super::SinkError;
use crate::base::Secret;
use crate::config::QuestDbConfig;
use crate::records::{CampaignStat, Record};

/// Encode one record as an ILP row.
pub fn encode(buf: &mut Buffer, r: &Record, ingested_at: TimestampMicros) -> Result<(), SinkError> {
    let enc = |e: questdb::Error| SinkError::Encode {
        table: r.table(),
        reason: e.to_string(),
    };
    let ts = |t: chrono::DateTime<Utc>| TimestampMicros::new(t.timestamp_micros());
    match r {
        Record::CampaignStats(c) => buf
            .table("campaign_stats")
            .and_then(|b| campaign_symbols(b, c))
            .and_then(|b| campaign_columns(b, c, ingested_at))
            .and_then(|b| b.at(ts(c.ts)))
            .map_err(enc),
        Record::AdStats(a) => buf
            .table("ad_stats")
            .and_then(|b| campaign_symbols(b, &a.stat))
            .and_then(|b| b.symbol("adset_id", &a.ad.adset_id))
            .and_then(|b| b.symbol("ad_id", &a.ad.ad_id))
            .and_then(|b| b.column_str("adset_name", &a.ad.adset_name))
            .and_then(|b| b.column_str("ad_name", &a.ad.ad_name))
            .and_then(|b| campaign_columns(b, &a.stat, ingested_at))
            .and_then(|b| b.at(ts(a.stat.ts)))
            .map_err(enc),
        Record::RegionStats(r) => buf
            .table("region_stats")
            .and_then(|b| campaign_symbols(b, &r.stat))
            .and_then(|b| b.symbol("region", &r.region))
            .and_then(|b| campaign_columns(b, &r.stat, ingested_at))
            .and_then(|b| b.at(ts(r.stat.ts)))
            .map_err(enc),
        Record::Orders(o) => {
            let day = o.day.format("%Y-%m-%d").to_string();
            buf.table("orders")
                .and_then(|b| b.symbol("day", &day))
                .and_then(|b| b.symbol("kind", o.kind.as_str()))
                .and_then(|b| b.symbol("shop_currency", &o.shop_currency))
                .and_then(|b| b.symbol("currency", &o.currency))
                .and_then(|b| b.symbol_opt("city", o.city.as_deref()))
                .and_then(|b| b.symbol_opt("utm_source", o.utm_source.as_deref()))
                .and_then(|b| b.symbol_opt("utm_medium", o.utm_medium.as_deref()))
                .and_then(|b| b.symbol_opt("utm_campaign", o.utm_campaign.as_deref()))
                .and_then(|b| b.symbol("source", &o.source))
                .and_then(|b| b.column_str("event_id", &o.event_id))
                .and_then(|b| b.column_str("order_id", &o.order_id))
                .and_then(|b| b.column_dec("amount", &o.amount))
                .and_then(|b| b.column_dec("amount_shop", &o.amount_shop))
                .and_then(|b| b.column_str_opt("customer_id", o.customer_id.as_deref()))
                .and_then(|b| b.column_i64("items", i64::from(o.items)))
                .and_then(|b| b.column_ts("ingested_at", ingested_at))
                .and_then(|b| b.at(ts(o.ts)))
                .map_err(enc)
        }
        Record::Forecasts(f) => buf
            .table("forecasts")
            .and_then(|b| b.symbol("model", &f.model))
            .and_then(|b| b.symbol("series", &f.series))
            .and_then(|b| b.column_ts("generated_at", ts(f.generated_at)))
            .and_then(|b| b.column_i64("horizon_hours", f.horizon_hours))
            .and_then(|b| b.column_f64("yhat", f.yhat))
            .and_then(|b| b.column_f64("yhat_lower_80", f.yhat_lower_80))
            .and_then(|b| b.column_f64("yhat_upper_80", f.yhat_upper_80))
            .and_then(|b| b.column_f64("yhat_lower_95", f.yhat_lower_95))
            .and_then(|b| b.column_f64("yhat_upper_95", f.yhat_upper_95))
            .and_then(|b| b.at(ts(f.ts)))
            .map_err(enc),
        Record::Anomalies(a) => buf
            .table("anomalies")
            .and_then(|b| b.symbol("series", &a.series))
            .and_then(|b| b.symbol("platform", &a.platform))
            .and_then(|b| b.symbol("campaign_id", &a.campaign_id))
            .and_then(|b| b.symbol("detector", &a.detector))
            .and_then(|b| b.column_f64("value", a.value))
            .and_then(|b| b.column_f64("expected", a.expected))
            .and_then(|b| b.column_f64("lower", a.lower))
            .and_then(|b| b.column_f64("upper", a.upper))
            .and_then(|b| b.column_f64("score", a.score))
            .and_then(|b| b.column_bool("is_anomaly", a.is_anomaly))
            .and_then(|b| b.at(ts(a.ts)))
            .map_err(enc),
        Record::Actions(a) => buf
            .table("actions")
            .and_then(|b| b.symbol("action_id", &a.action_id))
            .and_then(|b| b.symbol("event", &a.event))
            .and_then(|b| b.symbol("actor", &a.actor))
            .and_then(|b| b.symbol("mode", &a.mode))
            .and_then(|b| b.symbol("rule", &a.rule))
            .and_then(|b| b.symbol("kind", &a.kind))
            .and_then(|b| b.symbol("platform", &a.platform))
            .and_then(|b| b.symbol("account", &a.account))
            .and_then(|b| b.symbol("campaign_id", &a.campaign_id))
            .and_then(|b| b.symbol("result", &a.result))
            .and_then(|b| b.column_bool("dry_run", a.dry_run))
            .and_then(|b| b.column_str("campaign_name", &a.campaign_name))
            .and_then(|b| b.column_str("reason", &a.reason))
            .and_then(|b| b.column_str("rule_values", &a.rule_values))
            .and_then(|b| b.column_str("state_before", &a.state_before))
            .and_then(|b| b.column_str("state_after", &a.state_after))
            .and_then(|b| b.column_str("detail", &a.detail))
            .and_then(|b| b.column_str("idempotency_key", &a.idempotency_key))
            .and_then(|b| b.at(ts(a.ts)))
            .map_err(enc),
        Record::OrderLines(l) => {
            let day = l.day.format("%Y-%m-%d").to_string();
            let b = buf
                .table("order_lines")
                .and_then(|b| b.symbol("day", &day))
                .and_then(|b| b.symbol("sku", &l.sku))
                .and_then(|b| b.symbol("product", &l.product))
                .and_then(|b| b.symbol("variant", &l.variant))
                .and_then(|b| b.symbol("product_type", &l.product_type))
                .and_then(|b| b.symbol("cost_source", l.cost_source.as_str()))
                .and_then(|b| b.symbol_opt("city", l.city.as_deref()))
                .and_then(|b| b.symbol_opt("province", l.province.as_deref()))
                .and_then(|b| b.symbol_opt("country", l.country.as_deref()))
                .and_then(|b| b.symbol_opt("utm_campaign", l.utm_campaign.as_deref()))
                .and_then(|b| b.symbol("currency", &l.currency))
                .and_then(|b| b.symbol("source", &l.source))
                .and_then(|b| b.column_str("order_id", &l.order_id))
                .and_then(|b| b.column_str("line_id", &l.line_id))
                .and_then(|b| b.column_i64("quantity", i64::from(l.quantity)))
                .and_then(|b| b.column_dec("unit_price", &l.unit_price))
                .and_then(|b| b.column_dec("discount", &l.discount))
                .and_then(|b| b.column_dec("net_sales", &l.net_sales))
                .and_then(|b| b.column_dec("tax", &l.tax))
                .and_then(|b| b.column_dec("shipping_charged", &l.shipping_charged))
                .map_err(enc)?;
            // a missing cost stays NULL (never 0, which would read as free goods)
            let b = match &l.unit_cost {
                Some(c) => b.column_dec("unit_cost", c).map_err(enc)?,
                None => b,
            };
            b.column_i64("refunded_quantity", i64::from(l.refunded_quantity))
                .and_then(|b| b.column_dec("refunded_amount", &l.refunded_amount))
                .and_then(|b| b.column_str_opt("customer_id", l.customer_id.as_deref()))
                .and_then(|b| b.column_bool("new_customer", l.new_customer))
                .and_then(|b| b.column_ts("ingested_at", ingested_at))
                .and_then(|b| b.at(ts(l.ts)))
                .map_err(enc)
        }
        Record::Touchpoints(t) => buf
            .table("touchpoints")
            .and_then(|b| b.symbol("channel", &t.channel))
            .and_then(|b| b.symbol_opt("utm_source", t.utm_source.as_deref()))
            .and_then(|b| b.symbol_opt("utm_medium", t.utm_medium.as_deref()))
            .and_then(|b| b.symbol_opt("utm_campaign", t.utm_campaign.as_deref()))
            .and_then(|b| b.symbol("source", &t.source))
            .and_then(|b| b.column_str("journey_id", &t.journey_id))
            .and_then(|b| b.column_str_opt("order_id", t.order_id.as_deref()))
            .and_then(|b| b.column_i64("position", i64::from(t.position)))
            .and_then(|b| b.column_str_opt("referrer", t.referrer.as_deref()))
            .and_then(|b| b.column_str_opt("landing_page", t.landing_page.as_deref()))
            .and_then(|b| b.column_ts("ingested_at", ingested_at))
            .and_then(|b| b.at(ts(t.ts)))
            .map_err(enc),
        Record::Attribution(a) => {
            let day = a.day.format("%Y-%m-%d").to_string();
            let b = buf
                .table("attribution")
                .and_then(|b| b.symbol("day", &day))
                .and_then(|b| b.symbol("model", &a.model))
                .and_then(|b| b.symbol("window", &a.window))
                .and_then(|b| b.symbol("channel", &a.channel))
                .and_then(|b| b.symbol("currency", &a.currency))
                .and_then(|b| b.column_f64("conversions", a.conversions))
                .and_then(|b| b.column_dec("revenue", &a.revenue))
                .and_then(|b| b.column_dec("spend", &a.spend))
                .map_err(enc)?;
            let b = match a.platform_conversions {
                Some(c) => b.column_f64("platform_conversions", c).map_err(enc)?,
                None => b,
            };
            let b = match a.roas {
                Some(r) => b.column_f64("roas", r).map_err(enc)?,
                None => b,
            };
            b.column_ts("ingested_at", ingested_at)
                .and_then(|b| b.at(ts(a.ts)))
                .map_err(enc)
        }
        Record::CustomerValue(c) => {
            let day = c.day.format("%Y-%m-%d").to_string();
            let first = c.first_order_day.format("%Y-%m-%d").to_string();
            buf.table("customer_value")
                .and_then(|b| b.symbol("day", &day))
                .and_then(|b| b.symbol("acquisition_channel", &c.acquisition_channel))
                .and_then(|b| b.symbol("currency", &c.currency))
                .and_then(|b| b.column_str("customer_id", &c.customer_id))
                .and_then(|b| b.column_str("first_order_day", &first))
                .and_then(|b| b.column_i64("orders", i64::from(c.orders)))
                .and_then(|b| b.column_i64("repeat_purchases", i64::from(c.repeat_purchases)))
                .and_then(|b| b.column_f64("recency_periods", c.recency_periods))
                .and_then(|b| b.column_f64("age_periods", c.age_periods))
                .and_then(|b| b.column_dec("revenue", &c.revenue))
                .and_then(|b| b.column_f64("p_alive", c.p_alive))
                .and_then(|b| b.column_f64("expected_purchases_6m", c.expected_purchases_6m))
                .and_then(|b| b.column_f64("expected_purchases_12m", c.expected_purchases_12m))
                .and_then(|b| b.column_dec("expected_order_value", &c.expected_order_value))
                .and_then(|b| b.column_dec("clv_6m", &c.clv_6m))
                .and_then(|b| b.column_dec("clv_12m", &c.clv_12m))
                .and_then(|b| b.column_ts("ingested_at", ingested_at))
                .and_then(|b| b.at(ts(c.ts)))
                .map_err(enc)
        }
        Record::CampaignValue(c) => {
            let day = c.day.format("%Y-%m-%d").to_string();
            let mut b = buf
                .table("campaign_value")
                .and_then(|b| b.symbol("day", &day))
                .and_then(|b| b.symbol("channel", &c.channel))
                .and_then(|b| b.symbol("currency", &c.currency))
                .and_then(|b| b.column_i64("customers", i64::from(c.customers)))
                .and_then(|b| b.column_dec("clv_6m_total", &c.clv_6m_total))
                .and_then(|b| b.column_dec("clv_12m_total", &c.clv_12m_total))
                .and_then(|b| b.column_dec("spend", &c.spend))
                .and_then(|b| b.column_i64("new_customers", i64::from(c.new_customers)))
                .map_err(enc)?;
            // what is missing stays NULL (no customers, no spend): never 0
            for (name, v) in [
                ("clv_6m_mean", &c.clv_6m_mean),
                ("clv_12m_mean", &c.clv_12m_mean),
                ("cac", &c.cac),
            ] {
                if let Some(v) = v {
                    b = b.column_dec(name, v).map_err(enc)?;
                }
            }
            for (name, v) in [("ltv_cac_6m", c.ltv_cac_6m), ("ltv_cac_12m", c.ltv_cac_12m)] {
                if let Some(v) = v {
                    b = b.column_f64(name, v).map_err(enc)?;
                }
            }
            b.column_ts("ingested_at", ingested_at)
                .and_then(|b| b.at(ts(c.ts)))
                .map_err(enc)
        }
        Record::Funnel(f) => {
            let day = f.day.format("%Y-%m-%d").to_string();
            buf.table("funnel")
                .and_then(|b| b.symbol("bucket", f.bucket.as_str()))
                .and_then(|b| b.symbol("day", &day))
                .and_then(|b| b.symbol("stage", &f.stage))
                .and_then(|b| b.symbol("traffic_source", &f.traffic_source))
                .and_then(|b| b.symbol("source", &f.source))
                .and_then(|b| b.column_i64("count", f.count as i64))
                .and_then(|b| b.column_ts("ingested_at", ingested_at))
                .and_then(|b| b.at(ts(f.ts)))
                .map_err(enc)
        }
    }
}

/// The symbols of a campaign row (`campaign_stats`, and the campaign part of `ad_stats`); ILP
/// wants every symbol before the first column, hence two halves.
fn campaign_symbols<'b>(
    b: &'b mut Buffer,
    c: &CampaignStat,
) -> Result<&'b mut Buffer, questdb::Error> {
    let day = c.day.format("%Y-%m-%d").to_string();
    b.symbol("bucket", c.bucket.as_str())
        .and_then(|b| b.symbol("day", &day))
        .and_then(|b| b.symbol("platform", &c.key.platform))
        .and_then(|b| b.symbol("account", &c.key.account))
        .and_then(|b| b.symbol("campaign_id", &c.key.campaign_id))
        .and_then(|b| b.symbol("source", &c.source))
        .and_then(|b| b.symbol("account_currency", &c.account_currency))
        .and_then(|b| b.symbol("currency", &c.currency))
}

/// The columns of a campaign row, after its symbols.
fn campaign_columns<'b>(
    b: &'b mut Buffer,
    c: &CampaignStat,
    ingested_at: TimestampMicros,
) -> Result<&'b mut Buffer, questdb::Error> {
    b.column_str("campaign_name", &c.campaign_name)
        .and_then(|b| b.column_dec("spend", &c.spend))
        .and_then(|b| b.column_dec("conversion_value", &c.conversion_value))
        .and_then(|b| b.column_dec("spend_account", &c.spend_account))
        .and_then(|b| b.column_dec("conversion_value_account", &c.conversion_value_account))
        .and_then(|b| b.column_i64("impressions", c.impressions as i64))
        .and_then(|b| b.column_i64("clicks", c.clicks as i64))
        .and_then(|b| b.column_f64("conversions", c.conversions))
        .and_then(|b| b.column_ts("ingested_at", ingested_at))
}

/// A value in a questdb-rs configuration string: `;` ends a value there, so a literal `;` is
/// written twice (`;;`, as the client's parser reads it). Control characters cannot be written at
/// all: the error says so without showing the value.
fn conf_value(what: &str, v: &str) -> Result<String, SinkError> {
    if v.chars().any(|c| c.is_control()) {
        return Err(SinkError::Password(format!(
            "the {what} contains a control character, which QuestDB's client cannot take"
        )));
    }
    Ok(v.replace(';', ";;"))
}

/// ILP/HTTP configuration string (contains the password: never log it).
pub fn conf_string(cfg: &QuestDbConfig, password: Option<&Secret>) -> Result<String, SinkError> {
    let url = reqwest::Url::parse(&cfg.http_url).map_err(|e| SinkError::Unreachable {
        url: cfg.http_url.clone(),
        reason: e.to_string(),
    })?;
    let scheme = if url.scheme() == "https" {
        "https"
    } else {
        "http"
    };
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port_or_known_default().unwrap_or(9000);
    // retry_timeout=0: this sink owns retries (backoff, spool), the client must not block on them.
    let mut s = format!(
        "{scheme}::addr={host}:{port};request_timeout={};retry_timeout=0;protocol_version=auto;",
        cfg.request_timeout_secs * 1000
    );
    if let Some(u) = &cfg.username {
        s.push_str(&format!("username={};", conf_value("username", u)?));
        if let Some(p) = password {
            s.push_str(&format!(
                "password={};",
                conf_value("password", p.expose())?
            ));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_string_never_contains_password_unless_user_set() {
        let cfg = QuestDbConfig::default();
        let s = conf_string(&cfg, Some(&Secret::new("pw"))).unwrap();
        assert!(!s.contains("pw;"));
        assert!(s.starts_with("http::addr=127.0.0.1:9000;"));
    }

    #[test]
    fn a_password_with_semicolons_reaches_the_client_whole() {
        let cfg = QuestDbConfig {
            username: Some("admin".into()),
            ..QuestDbConfig::default()
        };
        let pw = "s3cr;et;;=x;request_timeout=1;";
        let s = conf_string(&cfg, Some(&Secret::new(pw))).unwrap();
        // parsed by the same parser questdb-rs uses: the password comes back whole, and its tail
        // did not turn into client options
        let parsed = questdb_confstr::parse_conf_str(&s).unwrap();
        assert_eq!(parsed.get("password"), Some(pw));
        assert_eq!(parsed.get("request_timeout"), Some("10000"));
        assert_eq!(parsed.get("username"), Some("admin"));
    }

    #[test]
    fn a_password_with_a_newline_is_an_error_that_does_not_show_it() {
        let cfg = QuestDbConfig {
            username: Some("admin".into()),
            ..QuestDbConfig::default()
        };
        let e = conf_string(&cfg, Some(&Secret::new("ab\ncd"))).unwrap_err();
        assert!(e.to_string().contains("control character"), "{e}");
        assert!(!e.to_string().contains("ab"), "{e}");
    }
}
