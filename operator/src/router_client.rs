//! Client for the router's admin and status API.
//!
//! The operator never talks to shards directly: registration, reset and
//! status all go through the router, which knows placement. Every call is
//! idempotent, so the reconciler can repeat them on each pass (routers are
//! stateless and may have restarted since the last registration).

use serde_json::json;
use std::time::Duration;
use trusty_core::IndexId;
use trusty_core::api::types::IndexStatus as ClusterIndexStatus;
use trusty_core::error_chain::one_line;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("router unreachable at {url}: {}", one_line(.source))]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("router answered {status} to {method} {url}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("router sent an unreadable answer to {url}: {}", one_line(.source))]
    Decode {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("index {0} is not known to the router")]
    NotFound(String),
}

#[derive(Clone, Debug)]
pub struct RouterClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl RouterClient {
    pub fn new(base: impl Into<String>, token: Option<String>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()?;
        Ok(RouterClient {
            base: base.into().trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn admin(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    async fn send(&self, url: &str, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, RouterError> {
        rb.send().await.map_err(|source| RouterError::Unreachable {
            url: url.to_string(),
            source,
        })
    }

    async fn fail(method: &'static str, url: String, resp: reqwest::Response) -> RouterError {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let body = crate::status::truncate(body, 512);
        RouterError::Status {
            method,
            url,
            status,
            body,
        }
    }

    /// Registers the index with `replicas` owners; `preload` asks the owners
    /// to warm it now (only worth it when it is new or has a new version:
    /// re-registering on every resync must not reload what was evicted).
    /// 200, 201 and 409 (already registered) all mean the cluster knows the index.
    pub async fn register(&self, id: &IndexId, replicas: i32, preload: bool) -> Result<(), RouterError> {
        let url = format!("{}/v1/admin/indexes/{id}", self.base);
        let rb = self
            .admin(self.http.post(&url))
            .json(&json!({ "replicas": replicas, "preload": preload }));
        let resp = self.send(&url, rb).await?;
        match resp.status().as_u16() {
            200..=299 | 409 => Ok(()),
            _ => Err(Self::fail("POST", url, resp).await),
        }
    }

    /// Asks every owner to drop a failed state and load again.
    pub async fn reset(&self, id: &IndexId) -> Result<(), RouterError> {
        self.post_action(id, "reset").await
    }

    /// Asks owners to pick up a newly published version.
    pub async fn reload(&self, id: &IndexId) -> Result<(), RouterError> {
        self.post_action(id, "reload").await
    }

    async fn post_action(&self, id: &IndexId, action: &'static str) -> Result<(), RouterError> {
        let url = format!("{}/v1/admin/indexes/{id}/{action}", self.base);
        let resp = self.send(&url, self.admin(self.http.post(&url))).await?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(RouterError::NotFound(id.to_string())),
            _ => Err(Self::fail("POST", url, resp).await),
        }
    }

    /// Unregisters the index; an unknown index is already unregistered.
    pub async fn unregister(&self, id: &IndexId) -> Result<(), RouterError> {
        let url = format!("{}/v1/admin/indexes/{id}", self.base);
        let resp = self.send(&url, self.admin(self.http.delete(&url))).await?;
        match resp.status().as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(Self::fail("DELETE", url, resp).await),
        }
    }

    /// The cluster's view of the index: version, counts, state per owner.
    pub async fn status(&self, id: &IndexId) -> Result<ClusterIndexStatus, RouterError> {
        let url = format!("{}/v1/indexes/{id}", self.base);
        let resp = self.send(&url, self.http.get(&url)).await?;
        match resp.status().as_u16() {
            200..=299 => resp.json().await.map_err(|source| RouterError::Decode { url, source }),
            404 => Err(RouterError::NotFound(id.to_string())),
            _ => Err(Self::fail("GET", url, resp).await),
        }
    }
}
