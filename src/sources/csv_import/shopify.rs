//! Rows of a Shopify orders export: one row per line item, the first row of an order carrying
//! its totals and the following rows (same `Name`, no `Created at`) only their items. An order
//! is held until its last row has been read (they are contiguous), so memory stays one order.
//! Refunds are booked negative whatever sign the export writes them with.

use chrono::{DateTime, Utc};
use std::collections::VecDeque;

use super::cells;
use super::headers::header_key;
use super::{Ctx, ImportOptions, Item, Rejected, cell, resolve_currency};
use crate::normalize::{Observation, OrderOrigin, RawOrder};
use crate::records::OrderKind;

/// Where the Shopify columns are (the export's headers are English in every shop language).
#[derive(Debug, Clone, Default)]
pub struct ShopColumns {
    name: Option<usize>,
    created: Option<usize>,
    total: Option<usize>,
    refunded: Option<usize>,
    currency: Option<usize>,
    email: Option<usize>,
    city: Option<usize>,
    qty: Option<usize>,
    status: Option<usize>,
    landing: Option<usize>,
    names: Vec<String>,
}

impl ShopColumns {
    pub fn new(header: &[String]) -> Self {
        let keys: Vec<String> = header.iter().map(|h| header_key(h).0).collect();
        let find = |variants: &[&str]| {
            variants
                .iter()
                .find_map(|v| keys.iter().position(|k| k == v))
        };
        Self {
            name: find(&["name"]),
            created: find(&["created at"]),
            total: find(&["total"]),
            refunded: find(&["refunded amount"]),
            currency: find(&["currency"]),
            email: find(&["email", "customer id"]),
            city: find(&["billing city", "shipping city"]),
            qty: find(&["lineitem quantity"]),
            status: find(&["financial status"]),
            landing: find(&["landing site"]),
            names: header.to_vec(),
        }
    }

    fn col(&self, i: Option<usize>) -> String {
        i.and_then(|i| self.names.get(i))
            .cloned()
            .unwrap_or_default()
    }
}

/// The order being read: its first line, the order, and its refund or cancellation.
#[derive(Debug, Default)]
pub struct OrderState {
    open: Option<(u64, RawOrder, Option<RawOrder>)>,
}

impl OrderState {
    /// The order in progress is complete: hand it on.
    pub fn finish(&mut self, out: &mut VecDeque<Item>) {
        if let Some((line, order, refund)) = self.open.take() {
            let mut observations = vec![Observation::Order(order)];
            observations.extend(refund.map(Observation::Order));
            out.push_back(Item::Good { line, observations });
        }
    }

    pub fn row(
        &mut self,
        ctx: &Ctx,
        opts: &ImportOptions,
        line: u64,
        f: &[String],
        out: &mut VecDeque<Item>,
    ) {
        let c = &ctx.shop;
        let reject = |out: &mut VecDeque<Item>, i: Option<usize>, reason: String| {
            out.push_back(Item::Rejected(Rejected {
                line,
                column: c.col(i),
                reason,
            }))
        };
        let name = cell(f, c.name).to_string();
        if name.is_empty() {
            return reject(out, c.name, "order name is empty".into());
        }
        let qty = match cells::parse_amount(cell(f, c.qty), ctx.style)
            .and_then(|a| {
                if cell(f, c.qty).is_empty() {
                    Ok(1)
                } else {
                    cells::to_count(a.value)
                }
            })
            .and_then(|q| u32::try_from(q).map_err(|_| cells::CellError::ItemsTooLarge(q)))
        {
            Ok(q) => q,
            Err(e) => return reject(out, c.qty, e.to_string()),
        };
        // a further line item of the open order: only its items count
        if let Some((_, open, _)) = self.open.as_mut()
            && open.order_id == name
            && cell(f, c.created).is_empty()
        {
            match open.items.checked_add(qty) {
                Some(n) => open.items = n,
                None => reject(
                    out,
                    c.qty,
                    format!(
                        "the order's items add up past the largest item count stored ({})",
                        u32::MAX
                    ),
                ),
            }
            return;
        }
        self.finish(out);
        let created = cell(f, c.created);
        let ts = match DateTime::parse_from_str(created, "%Y-%m-%d %H:%M:%S %z")
            .map(|d| d.with_timezone(&Utc))
            .or_else(|_| DateTime::parse_from_rfc3339(created).map(|d| d.with_timezone(&Utc)))
        {
            Ok(t) => t,
            Err(_) => match cells::parse_date(created, opts.day_first) {
                Ok(d) => crate::normalize::day_start(d, opts.timezone),
                Err(e) => return reject(out, c.created, e.to_string()),
            },
        };
        if let Err(e) = opts
            .days
            .check(ts.with_timezone(&opts.timezone).date_naive())
        {
            return reject(out, c.created, e.to_string());
        }
        let amount = |i: Option<usize>| -> Result<cells::Amount, cells::CellError> {
            let a = cells::parse_amount(cell(f, i), ctx.style)?;
            cells::check_money(a.value)?;
            Ok(a)
        };
        let total = match amount(c.total) {
            Ok(a) if a.value.is_sign_negative() && !a.value.is_zero() => {
                return reject(
                    out,
                    c.total,
                    format!("{} is negative (an order total cannot be)", a.value),
                );
            }
            Ok(a) => a,
            Err(e) => return reject(out, c.total, e.to_string()),
        };
        let refunded = match amount(c.refunded) {
            Ok(a) => a,
            Err(e) => return reject(out, c.refunded, e.to_string()),
        };
        let currency = match resolve_currency(
            c.currency.map(|i| cell(f, Some(i))),
            &[(&total, c.col(c.total)), (&refunded, c.col(c.refunded))],
            None,
            opts.currency.as_deref(),
        ) {
            Ok(cur) => cur,
            Err((col, reason)) => {
                out.push_back(Item::Rejected(Rejected {
                    line,
                    column: if col.is_empty() {
                        c.col(c.currency)
                    } else {
                        col
                    },
                    reason,
                }));
                return;
            }
        };
        let (utm_source, utm_medium, utm_campaign) = crate::sources::utm::utm(cell(f, c.landing));
        let status = cell(f, c.status).to_lowercase();
        let order = RawOrder {
            ts,
            event_id: name.clone(),
            order_id: name.clone(),
            kind: OrderKind::Order,
            amount: total.value,
            currency,
            origin: OrderOrigin {
                customer_id: Some(cell(f, c.email).to_string()).filter(|s| !s.is_empty()),
                city: Some(cell(f, c.city).to_string()).filter(|s| !s.is_empty()),
                utm_source,
                utm_medium,
                utm_campaign,
            },
            items: qty,
        };
        // The export has no refund date: the refund is booked at the order's time (documented).
        // Exports write the refunded amount positive or negative; it is money going out either
        // way, so it is booked as minus its magnitude.
        let refund = if status == "voided" {
            Some(RawOrder {
                event_id: format!("{name}-refund"),
                kind: OrderKind::Cancellation,
                amount: -total.value,
                ..order.clone()
            })
        } else if !refunded.value.is_zero() {
            Some(RawOrder {
                event_id: format!("{name}-refund"),
                kind: OrderKind::Refund,
                amount: -refunded.value.abs(),
                ..order.clone()
            })
        } else {
            None
        };
        self.open = Some((line, order, refund));
    }
}
