//! A provider that exists only in this crate's tests: it shows that a provider is this one
//! file plus its line in the registry. It answers a point with the point itself as text.

use serde_json::Value;

use super::{
    coord, json, text, Answer, AttemptError, ConfigError, Endpoint, EndpointSetup, ProviderInfo,
    ProviderSpec, Query, Request,
};

pub struct Echo;
pub static ECHO: Echo = Echo;

static INFO: ProviderInfo = ProviderInfo {
    name: "echo",
    title: "Echo",
    base_url_env: Some("GEOBATCH_ECHO_BASE_URL"),
    default_rate_per_sec: 1000.0,
    ..ProviderInfo::DEFAULT
};

impl ProviderSpec for Echo {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }
    fn endpoint(&self, setup: EndpointSetup<'_>) -> Result<Box<dyn Endpoint>, ConfigError> {
        if setup.base_url.is_empty() {
            return Err(ConfigError::BadBaseUrl(String::new()));
        }
        Ok(Box::new(EchoEndpoint {
            base: setup.base_url,
        }))
    }
}

#[derive(Debug)]
struct EchoEndpoint {
    base: String,
}

impl Endpoint for EchoEndpoint {
    fn request(&self, query: &Query<'_>) -> Option<Request> {
        let Query::Point { lon, lat } = *query else {
            return None;
        };
        Some(Request {
            url: format!("{}/echo?lon={}&lat={}", self.base, coord(lon), coord(lat)),
            headers: vec![],
        })
    }

    /// `{"echo": "lon,lat"}`.
    fn parse(&self, _query: &Query<'_>, status: u16, body: &[u8]) -> Result<Answer, AttemptError> {
        let v: Value = json("echo", status, body)?;
        Ok(Answer::reverse(text(v.get("echo")), None, None))
    }
}
