//! Google's OAuth 2.0 refresh-token flow, shared by the Google Ads and GA4 sources: an access
//! token is fetched from the token endpoint and reused until a minute before it expires.

use std::time::{Duration, Instant};

use crate::base::Secret;
use crate::sources::http::{SourceError, read_secret};

#[derive(Debug, Clone)]
pub struct GoogleOAuth {
    pub token_url: String,
    pub client_id_env: String,
    pub client_secret_env: String,
    pub client_secret_file: Option<std::path::PathBuf>,
    pub refresh_token_env: String,
    pub refresh_token_file: Option<std::path::PathBuf>,
    pub access: Option<(Secret, Instant)>,
}

impl GoogleOAuth {
    pub async fn access_token(&mut self, http: &reqwest::Client) -> Result<Secret, SourceError> {
        if let Some((t, until)) = &self.access
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let client_id = read_secret(None, &self.client_id_env)?;
        let client_secret =
            read_secret(self.client_secret_file.as_deref(), &self.client_secret_env)?;
        let refresh = read_secret(self.refresh_token_file.as_deref(), &self.refresh_token_env)?;
        let resp = http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", client_id.expose()),
                ("client_secret", client_secret.expose()),
                ("refresh_token", refresh.expose()),
            ])
            .send()
            .await
            .map_err(|e| SourceError::Transport(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| SourceError::Malformed(format!("token response: {}", e.without_url())))?;
        if status >= 400 {
            return Err(SourceError::Auth(format!(
                "token refresh refused: {}",
                v["error"].as_str().unwrap_or("unknown error")
            )));
        }
        let token = v["access_token"]
            .as_str()
            .ok_or_else(|| SourceError::Malformed("token response without access_token".into()))?;
        let ttl = v["expires_in"].as_u64().unwrap_or(3600).saturating_sub(60);
        let t = Secret::new(token);
        self.access = Some((t.clone(), Instant::now() + Duration::from_secs(ttl)));
        Ok(t)
    }
}
