//! Shopify order depth (issue 16) against a local GraphQL server replaying the documented 2025-10
//! shapes (`tests/fixtures/shopify/orders_lines.json`): line items with their costs, discounts,
//! GST and shipping, refunds per line (merchandise and refunded shipping), and customer journeys, into a real QuestDB. Every expected
//! figure is computed here from the fixture's JSON, not by the source's code; money is compared
//! to the paisa.

mod common;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::post;
use common::*;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

fn fixture() -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/shopify/orders_lines.json")).unwrap()
}

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v["shopMoney"]["amount"].as_str().unwrap()).unwrap()
}

/// The fallback margin the test configures for earrings.
const EARRINGS_MARGIN: &str = "0.55";

/// Per order: (total paid, net sales + shipping, tax, refunded merchandise and shipping, COGS of the kept
/// units with the fallback applied, lines without any cost).
fn expected() -> BTreeMap<String, (Decimal, Decimal, Decimal, Decimal, Decimal, u64)> {
    let page: Value = serde_json::from_str(&fixture()).unwrap();
    let mut out = BTreeMap::new();
    for o in page["data"]["orders"]["nodes"].as_array().unwrap() {
        let mut net = Decimal::ZERO;
        let mut tax = Decimal::ZERO;
        let mut cogs = Decimal::ZERO;
        let mut missing = 0;
        let mut refunded_qty: BTreeMap<String, i64> = BTreeMap::new();
        let mut refunded = Decimal::ZERO;
        for r in o["refunds"].as_array().unwrap() {
            for rl in r["refundLineItems"]["nodes"].as_array().unwrap() {
                *refunded_qty
                    .entry(rl["lineItem"]["id"].as_str().unwrap().into())
                    .or_default() += rl["quantity"].as_i64().unwrap();
                refunded += dec(&rl["subtotalSet"]);
            }
            // shipping given back (taxes not included in this shop: the subtotal is before tax)
            for sl in r["refundShippingLines"]["nodes"]
                .as_array()
                .into_iter()
                .flatten()
            {
                refunded += dec(&sl["subtotalAmountSet"]);
            }
        }
        for li in o["lineItems"]["nodes"].as_array().unwrap() {
            let q = Decimal::from(li["quantity"].as_i64().unwrap());
            let discounts: Decimal = li["discountAllocations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| dec(&a["allocatedAmountSet"]))
                .sum();
            let line_net = dec(&li["originalUnitPriceSet"]) * q - discounts;
            net += line_net;
            tax += li["taxLines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| dec(&t["priceSet"]))
                .sum::<Decimal>();
            let kept = q - Decimal::from(
                refunded_qty
                    .get(li["id"].as_str().unwrap())
                    .copied()
                    .unwrap_or(0),
            );
            let cost = &li["variant"]["inventoryItem"]["unitCost"];
            if let Some(c) = cost["amount"].as_str() {
                cogs += Decimal::from_str(c).unwrap() * kept;
            } else if li["product"]["productType"] == "Earrings" {
                let unit = (line_net / q
                    * (Decimal::ONE - Decimal::from_str(EARRINGS_MARGIN).unwrap()))
                .round_dp(2);
                cogs += unit * kept;
            } else {
                missing += 1;
            }
        }
        let shipping: Decimal = o["shippingLines"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| dec(&s["discountedPriceSet"]))
            .sum();
        let total = dec(&o["totalPriceSet"]);
        assert_eq!(net + tax + shipping, total, "the fixture's order adds up");
        out.insert(
            o["name"].as_str().unwrap().to_string(),
            (total, net + shipping, tax, refunded, cogs, missing),
        );
    }
    out
}

fn money(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("not money: {v}"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_costs_refunds_and_journeys_to_the_paisa() {
    let q = QuestDb::start().await;
    let app = Router::new().route(
        "/admin/api/2025-10/graphql.json",
        post(|body: axum::Json<Value>| async move {
            // the nested lists are asked for with their page sizes
            assert_eq!(body.0["variables"]["lines"], 50);
            assert!(
                body.0["query"]
                    .as_str()
                    .unwrap()
                    .contains("customerOrderIndex")
            );
            ([("content-type", "application/json")], fixture()).into_response()
        }),
    );
    let base = serve_fake(app).await;
    let dir = tempfile::tempdir().unwrap();
    let token = secret_file(dir.path(), "token", "shpat_lines");
    let cfg = source_test_config(
        dir.path(),
        Some(&q.url()),
        &format!(
            r#"
[[sources]]
type = "shopify"
name = "shop"
shop_domain = "moi-jewellery.myshopify.com"
base_url = "{base}"
access_token_file = "{token}"
interval_secs = 3600
[sources.fallback_margin_by_product_type]
Earrings = "{EARRINGS_MARGIN}"
"#
        ),
    );
    let mut cfg = cfg;
    // the fixture's orders are of November 2026: keep them in the live store whatever today is
    cfg.general.retention_days = 3650;
    let running = adpulse::app::start(cfg).await.unwrap();
    q.wait_for_count("SELECT count() FROM order_lines", 3.0)
        .await;
    q.wait_for_count("SELECT count() FROM touchpoints", 4.0)
        .await;

    let want = expected();
    for (order, (total, net, tax, refunded, cogs, missing)) in &want {
        let r = q
            .rows(&format!(
                "SELECT sum(net_sales + shipping_charged), sum(tax), sum(refunded_amount), \
                 sum(unit_cost * (quantity - refunded_quantity)), \
                 sum(CASE WHEN cost_source = 'missing' THEN 1 ELSE 0 END), \
                 sum(net_sales + shipping_charged + tax) \
                 FROM order_lines WHERE order_id = '{order}'"
            ))
            .await;
        assert_eq!(money(&r[0][0]), *net, "{order}: net sales + shipping");
        assert_eq!(money(&r[0][1]), *tax, "{order}: tax");
        assert_eq!(money(&r[0][2]), *refunded, "{order}: refunded");
        assert_eq!(
            money(&r[0][5]),
            *total,
            "{order}: the lines add up to the order"
        );
        if *missing == 0 {
            assert_eq!(money(&r[0][3]), *cogs, "{order}: COGS");
        }
        assert_eq!(r[0][4].as_i64(), Some(*missing as i64), "{order}: missing");
        // the order's own row carries the same total
        let o = q
            .rows(&format!(
                "SELECT amount FROM orders WHERE order_id = '{order}' AND kind = 'order'"
            ))
            .await;
        assert_eq!(money(&o[0][0]), *total);
    }
    // per line: the refunded earring back in stock, the fallback cost's source recorded
    let lines = q
        .rows(
            "SELECT sku, quantity, refunded_quantity, cost_source, new_customer, city, province, \
             country, shipping_charged FROM order_lines ORDER BY sku",
        )
        .await;
    let by_sku: BTreeMap<String, &Vec<Value>> = lines
        .iter()
        .map(|l| (l[0].as_str().unwrap().to_string(), l))
        .collect();
    assert_eq!(by_sku["MOI-ER-006"][2], 1);
    assert_eq!(by_sku["MOI-ER-006"][3], "fallback_margin");
    assert_eq!(by_sku["MOI-RG-001"][3], "inventory_item");
    assert_eq!(by_sku["MOI-BR-001"][3], "missing");
    assert_eq!(by_sku["MOI-RG-001"][4], true, "customer order index 1");
    assert_eq!(by_sku["MOI-BR-001"][4], false, "customer order index 3");
    assert_eq!(by_sku["MOI-RG-001"][5], "Jaipur");
    assert_eq!(by_sku["MOI-RG-001"][6], "Rajasthan");
    assert_eq!(by_sku["MOI-RG-001"][7], "India");
    // 99.00 of shipping split by net sales (2,601 : 1,980), to the paisa, in full
    let ship: Decimal = [&by_sku["MOI-RG-001"][8], &by_sku["MOI-ER-006"][8]]
        .iter()
        .map(|v| money(v))
        .sum();
    assert_eq!(ship, Decimal::from(99));
    assert_eq!(money(&by_sku["MOI-RG-001"][8]), Decimal::new(5621, 2));
    // the 49.50 of shipping refunded on #2001 split the same way: 49.50 × 2,601 / 4,581 = 28.105
    // -> 28.11 to the ring (which was not returned), the rest (21.39) beside the earring's 990.00
    let refunded = q
        .rows("SELECT sku, refunded_amount FROM order_lines WHERE order_id = '#2001' ORDER BY sku")
        .await;
    assert_eq!(refunded[0][0], "MOI-ER-006");
    assert_eq!(money(&refunded[0][1]), Decimal::new(101139, 2));
    assert_eq!(money(&refunded[1][1]), Decimal::new(2811, 2));
    // journeys: #2001's three moments in time order, #2002's single visit from its landing page
    let touches = q
        .rows("SELECT journey_id, position, channel FROM touchpoints ORDER BY journey_id, position")
        .await;
    let got: Vec<(String, i64, String)> = touches
        .iter()
        .map(|t| {
            (
                t[0].as_str().unwrap().into(),
                t[1].as_i64().unwrap(),
                t[2].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("#2001".into(), 1, "organic:instagram.com".into()),
            ("#2001".into(), 2, "meta:120210000000001".into()),
            ("#2001".into(), 3, "google_ads:21000000002".into()),
            ("#2002".into(), 1, "google_ads:21000000001".into()),
        ]
    );
    // the SKU without a cost is reported, never given one
    let addr = running.addr;
    let m = eventually(
        "missing cost in /metrics",
        Duration::from_secs(30),
        || async {
            let (_, m) = get(&format!("http://{addr}/metrics")).await;
            metric(&m, "adpulse_profit_lines_missing_cost{sku=\"MOI-BR-001\"}").map(|_| m)
        },
    )
    .await;
    assert_eq!(
        metric(&m, "adpulse_profit_lines_missing_cost{sku=\"MOI-BR-001\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "adpulse_profit_lines_missing_cost{sku=\"MOI-ER-006\"}"),
        None,
        "a fallback margin is a cost"
    );
    running.stop().await;
}
