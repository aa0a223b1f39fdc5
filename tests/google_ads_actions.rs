//! The Google Ads actions client on the one OAuth flow (`platforms::google::GoogleOAuth`), against
//! a local fake OAuth 2.0 token endpoint and a fake Google Ads REST API replaying Google's
//! documented formats: the token endpoint takes `grant_type=refresh_token` form posts and answers
//! `{"access_token", "expires_in", "token_type": "Bearer"}`; `googleAds:search` answers
//! `{"results": [...]}`; `campaigns:mutate` takes `{"operations": [{"update", "updateMask"}]}` and
//! answers `{"results": [{"resourceName"}]}`; a bad token is HTTP 401 `UNAUTHENTICATED`.
//!
//! Checks: an access token that has expired is refreshed exactly once before a pause, and the
//! pause goes out with the new token; a token endpoint 5xx is retried (4 times, then the action is
//! retryable, never refused); a 401 (token revoked early) refreshes once and resends, and a second
//! 401 is not retried forever.

mod common;

use adpulse::actions::config::GoogleAdsActionsConfig;
use adpulse::actions::platform::{AdPlatform, CampaignStatus, GoogleAds, PlatformError};
use adpulse::base::Secret;
use adpulse::platforms::google::{GoogleAdsApiConfig, GoogleOAuthConfig};
use adpulse::records::CampaignKey;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const REFRESH: &str = "1//refresh-token-Kq7";
const CLIENT_SECRET: &str = "client-secret-Vb3";
const DEVELOPER: &str = "dev-token-Hn5";

/// One call the fake ads API saw: path, authorization, developer-token, login-customer-id, body.
type AdsRequest = (String, String, String, String, Value);

/// What the fakes saw and how they answer.
#[derive(Default)]
struct Fakes {
    /// Every form posted to the token endpoint.
    token_requests: Mutex<Vec<HashMap<String, String>>>,
    /// Token endpoint answers still to fail with 503 before it issues tokens.
    token_503s: Mutex<u32>,
    /// `expires_in` of each token issued, in order (the last one repeats).
    expires_in: Mutex<Vec<u64>>,
    /// Access tokens issued so far.
    issued: Mutex<usize>,
    /// Access tokens the ads API refuses with 401.
    revoked: Mutex<Vec<String>>,
    /// Every ads API call.
    ads_requests: Mutex<Vec<AdsRequest>>,
}

async fn token(State(f): State<Arc<Fakes>>, body: String) -> axum::response::Response {
    f.token_requests.lock().unwrap().push(
        form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect(),
    );
    {
        let mut fail = f.token_503s.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
        }
    }
    let (issued, expires_in) = {
        let mut n = f.issued.lock().unwrap();
        *n += 1;
        let e = f.expires_in.lock().unwrap();
        (*n, e.get(*n - 1).or(e.last()).copied().unwrap_or(3599))
    };
    axum::Json(json!({
        "access_token": format!("ya29.token-{issued}"),
        "expires_in": expires_in,
        "scope": "https://www.googleapis.com/auth/adwords",
        "token_type": "Bearer"
    }))
    .into_response()
}

async fn ads(
    State(f): State<Arc<Fakes>>,
    uri: axum::http::Uri,
    h: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    let auth = common::header(&h, "authorization");
    f.ads_requests.lock().unwrap().push((
        uri.path().to_string(),
        auth.clone(),
        common::header(&h, "developer-token"),
        common::header(&h, "login-customer-id"),
        body.clone(),
    ));
    let token = auth.strip_prefix("Bearer ").unwrap_or("");
    if token.is_empty() || f.revoked.lock().unwrap().iter().any(|r| r == token) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "status": "UNAUTHENTICATED"}})),
        )
            .into_response();
    }
    if uri.path().ends_with("googleAds:search") {
        return axum::Json(json!({"results": [{
            "campaign": {"resourceName": "customers/1234567890/campaigns/456", "status": "ENABLED", "id": "456"},
            "campaignBudget": {"resourceName": "customers/1234567890/campaignBudgets/789", "amountMicros": "5000000000"}
        }], "fieldMask": "campaign.id,campaign.status,campaignBudget.resourceName,campaignBudget.amountMicros"}))
        .into_response();
    }
    axum::Json(json!({"results": [{"resourceName": "customers/1234567890/campaigns/456"}]}))
        .into_response()
}

struct Setup {
    fakes: Arc<Fakes>,
    client: GoogleAds,
    key: CampaignKey,
    _dir: tempfile::TempDir,
}

async fn setup(fakes: Fakes) -> Setup {
    let fakes = Arc::new(fakes);
    let app = axum::Router::new()
        .route("/token", post(token))
        .route("/v21/customers/{customer}/{action}", post(ads))
        .with_state(fakes.clone());
    let base = common::serve_fake(app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, value: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{value}\n")).unwrap();
        Some(p)
    };
    let cfg = GoogleAdsActionsConfig {
        api: GoogleAdsApiConfig {
            base_url: base.clone(),
            login_customer_id: Some("999-000-1111".into()),
            timeout_secs: 10,
            ..GoogleAdsApiConfig::default()
        },
        oauth: GoogleOAuthConfig {
            token_url: format!("{base}/token"),
            client_id_file: file("cid", "client-id.apps.googleusercontent.com"),
            client_secret_file: file("cs", CLIENT_SECRET),
            refresh_token_file: file("rt", REFRESH),
            ..GoogleOAuthConfig::default()
        },
        ..GoogleAdsActionsConfig::default()
    };
    assert_eq!(
        cfg.api.api_version, "v21",
        "the fake serves the pinned version"
    );
    let client = GoogleAds::new(&cfg, Secret::new(DEVELOPER));
    let key = CampaignKey {
        platform: "google_ads".into(),
        account: "123-456-7890".into(),
        campaign_id: "456".into(),
    };
    Setup {
        fakes,
        client,
        key,
        _dir: dir,
    }
}

fn mutates(f: &Fakes) -> Vec<AdsRequest> {
    f.ads_requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.0.ends_with("campaigns:mutate"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_pause_after_the_token_expired_refreshes_exactly_once_and_succeeds() {
    // token 1 lives 60 s: the client renews a minute before expiry, so it is already stale
    // when the pause comes; token 2 lives an hour. The first token request fails with a 503.
    let s = setup(Fakes {
        token_503s: Mutex::new(1),
        expires_in: Mutex::new(vec![60, 3599]),
        ..Fakes::default()
    })
    .await;
    let state = s.client.get_campaign(&s.key).await.unwrap();
    assert_eq!(state.status, CampaignStatus::Active);
    assert_eq!(state.daily_budget, Some(rust_decimal::Decimal::from(5000)));
    let before_pause = s.fakes.token_requests.lock().unwrap().len();
    assert_eq!(before_pause, 2, "one 503, retried once, gave token 1");

    s.client
        .set_status(&s.key, CampaignStatus::Paused)
        .await
        .unwrap();

    let tokens = s.fakes.token_requests.lock().unwrap().clone();
    assert_eq!(
        tokens.len() - before_pause,
        1,
        "the pause refreshed exactly once: {tokens:?}"
    );
    for form in &tokens {
        assert_eq!(form["grant_type"], "refresh_token");
        assert_eq!(form["refresh_token"], REFRESH, "trimmed, from the file");
        assert_eq!(form["client_secret"], CLIENT_SECRET);
        assert_eq!(form["client_id"], "client-id.apps.googleusercontent.com");
    }
    let m = mutates(&s.fakes);
    assert_eq!(m.len(), 1, "one mutate: {m:?}");
    let (path, auth, dev, login, body) = &m[0];
    assert_eq!(path, "/v21/customers/1234567890/campaigns:mutate");
    assert_eq!(auth, "Bearer ya29.token-2", "sent with the refreshed token");
    assert_eq!(dev, DEVELOPER);
    assert_eq!(login, "9990001111");
    assert_eq!(
        body,
        &json!({"operations": [{
            "update": {"resourceName": "customers/1234567890/campaigns/456", "status": "PAUSED"},
            "updateMask": "status"
        }]})
    );
}

#[tokio::test]
async fn a_401_refreshes_once_and_resends_but_not_forever() {
    // token 1 is revoked before it expires: the API answers 401, the client refreshes and resends
    let s = setup(Fakes {
        revoked: Mutex::new(vec!["ya29.token-1".into()]),
        ..Fakes::default()
    })
    .await;
    s.client
        .set_status(&s.key, CampaignStatus::Paused)
        .await
        .unwrap();
    let m = mutates(&s.fakes);
    let auths: Vec<&str> = m.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(auths, ["Bearer ya29.token-1", "Bearer ya29.token-2"]);
    assert_eq!(s.fakes.token_requests.lock().unwrap().len(), 2);

    // every token refused (the refresh token's grant no longer covers the account): one
    // refresh, one resend, then a refusal that names the cause, not a loop
    s.fakes
        .revoked
        .lock()
        .unwrap()
        .extend(["ya29.token-2".to_string(), "ya29.token-3".to_string()]);
    let e = s
        .client
        .set_status(&s.key, CampaignStatus::Active)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PlatformError::Rejected { message, .. } if message.contains("UNAUTHENTICATED")),
        "{e:?}"
    );
    assert_eq!(mutates(&s.fakes).len(), 4, "two more sends, no more");
    assert_eq!(s.fakes.token_requests.lock().unwrap().len(), 3);
}

/// A token endpoint that keeps answering 503: the flow tries it once and retries it 4 times (the
/// backoff in `GoogleOAuth::access_token`), then the action is "try again later", never a
/// refusal, and nothing reaches the ads API without a token.
#[tokio::test]
async fn a_token_endpoint_down_is_retried_then_retryable_never_refused() {
    let s = setup(Fakes {
        token_503s: Mutex::new(100),
        ..Fakes::default()
    })
    .await;
    let e = s.client.get_campaign(&s.key).await.unwrap_err();
    assert!(
        matches!(&e, PlatformError::Retryable { message, .. } if message.contains("HTTP 503")),
        "{e:?}"
    );
    assert_eq!(
        s.fakes.token_requests.lock().unwrap().len(),
        5,
        "one attempt and 4 retries"
    );
    assert!(s.fakes.ads_requests.lock().unwrap().is_empty());
    // the endpoint is back: the next call gets its token and reads the campaign
    *s.fakes.token_503s.lock().unwrap() = 0;
    let state = s.client.get_campaign(&s.key).await.unwrap();
    assert_eq!(state.status, CampaignStatus::Active);
}
