//! smartcore models with their held-out evaluations: segments and CLV on the real UCI order
//! history (datasets/online-retail), campaign score and conversion probability on seeded
//! synthetic data.

mod common;

use adpulse::models::{cli, scoring, segments};

#[test]
fn segments_and_clv_on_held_out_months() {
    let path = common::dataset("datasets/online-retail/invoices.csv");
    let orders = match segments::read_orders(&path) {
        Ok(o) => o,
        Err(e) => panic!("cannot read orders: {e}"),
    };
    let eval = match segments::evaluate(&orders, 90) {
        Ok(e) => e,
        Err(e) => panic!("segmentation failed: {e}"),
    };
    println!("{}", segments::render(&eval));
    let mut names: Vec<&str> = eval.segments.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert!(
        names.len() >= 5,
        "only {} named segments: {names:?}",
        names.len()
    );
    let seg = |n: &str| eval.segments.iter().find(|s| s.name == n);
    let (Some(champ), Some(lost)) = (seg("champions"), seg("lost")) else {
        panic!("champions and lost segments expected: {names:?}");
    };
    // The segments mean something in the future they were not fitted on.
    assert!(
        champ.holdout_active > 2.0 * lost.holdout_active,
        "champions {:.3} vs lost {:.3}",
        champ.holdout_active,
        lost.holdout_active
    );
    assert!(champ.holdout_revenue > lost.holdout_revenue);
    let c = &eval.clv;
    assert!(
        c.mae_model < c.mae_naive,
        "CLV MAE {} vs naive {}",
        c.mae_model,
        c.mae_naive
    );
    assert!(
        c.top20_share_model > 0.5,
        "top 20% capture {}",
        c.top20_share_model
    );
    assert!(c.top20_share_model <= c.top20_share_oracle + 1e-9);
}

#[test]
fn campaign_and_conversion_models_beat_the_base_rate() {
    let (campaign, ce, conv, ve) = match scoring::evaluate_synthetic() {
        Ok(r) => r,
        Err(e) => panic!("scoring failed: {e}"),
    };
    println!("{}", scoring::render(&[(&campaign, &ce), (&conv, &ve)]));
    for e in [&ce, &ve] {
        assert!(e.auc > 0.7, "{}: AUC {}", e.name, e.auc);
        assert!(
            e.brier < e.brier_base,
            "{}: Brier {} vs {}",
            e.name,
            e.brier,
            e.brier_base
        );
        assert!(
            e.max_calibration_gap < 0.1,
            "{}: calibration gap {}",
            e.name,
            e.max_calibration_gap
        );
    }
    // Recent ROAS is what predicts next week's profitability.
    let roas = campaign.coefficients[0];
    assert!(roas > 0.0, "{campaign:?}");
    // An add-to-cart raises the conversion probability.
    assert!(conv.coefficients[4] > 0.0, "{conv:?}");
}

#[test]
fn reports_render() {
    let mut out = Vec::new();
    if let Err(e) = cli::scoring_report(&mut out) {
        panic!("scoring report: {e}");
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("| campaign profitable next week |"), "{text}");
    assert!(text.contains("synthetic"), "{text}");
}
