//! A provider described by the job's template (JSON):
//!
//! ```json
//! {
//!   "url": "https://geo.example.kr/v1/reverse?x={lon}&y={lat}&apiKey={key}",
//!   "headers": { "Accept": "application/json" },
//!   "address": "/result/0/jibun",
//!   "road_address": "/result/0/road",
//!   "building_name": "/result/0/building"
//! }
//! ```
//!
//! `url` holds `{lon}` and `{lat}` (WGS84 degrees) and optionally `{key}` (the configured key,
//! percent-encoded); a `url` starting with `/` is relative to the configured base URL. Header
//! values may hold `{key}` too. The three fields are JSON pointers (RFC 6901) into the answer;
//! a pointer that is absent, or whose target is missing, null or empty, gives no value, and
//! no value for all three means no result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    coord, json, text, Answer, AttemptError, ConfigError, Endpoint, EndpointSetup, ProviderInfo,
    ProviderSpec, Query, Request,
};
use crate::secret::{percent_encode, Secret};

pub struct Template;
pub static TEMPLATE: Template = Template;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub address: Option<String>,
    pub road_address: Option<String>,
    pub building_name: Option<String>,
}

impl TemplateConfig {
    pub fn from_value(v: &Value) -> Result<TemplateConfig, String> {
        let cfg: TemplateConfig =
            serde_json::from_value(v.clone()).map_err(|e| format!("template: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        for p in ["{lon}", "{lat}"] {
            if !self.url.contains(p) {
                return Err(format!("template url must contain {p}"));
            }
        }
        let pointers = [&self.address, &self.road_address, &self.building_name];
        if pointers.iter().all(|p| p.is_none()) {
            return Err(
                "template needs at least one of address, road_address, building_name".into(),
            );
        }
        for p in pointers.into_iter().flatten() {
            if !(p.is_empty() || p.starts_with('/')) {
                return Err(format!(
                    "template pointer {p:?} is not a JSON pointer (it starts with /)"
                ));
            }
        }
        Ok(())
    }

    fn uses_key(&self) -> bool {
        self.url.contains("{key}") || self.headers.values().any(|v| v.contains("{key}"))
    }
}

static INFO: ProviderInfo = ProviderInfo {
    name: "template",
    title: "the template's provider",
    takes_config: true,
    ..ProviderInfo::DEFAULT
};

impl ProviderSpec for Template {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }
    fn endpoint(&self, setup: EndpointSetup<'_>) -> Result<Box<dyn Endpoint>, ConfigError> {
        let config = setup
            .config
            .ok_or(ConfigError::MissingConfig(self.name()))?;
        let template = TemplateConfig::from_value(config).map_err(ConfigError::Template)?;
        if template.uses_key() && setup.key.is_none() {
            return Err(ConfigError::MissingKey(self.name()));
        }
        if template.url.starts_with('/') && setup.base_url.is_empty() {
            return Err(ConfigError::Template(
                "template url is relative (starts with /) but no base URL is set".into(),
            ));
        }
        Ok(Box::new(TemplateEndpoint {
            base: setup.base_url,
            key: setup.key,
            template,
        }))
    }
}

#[derive(Debug)]
struct TemplateEndpoint {
    base: String,
    key: Option<Secret>,
    template: TemplateConfig,
}

impl Endpoint for TemplateEndpoint {
    fn request(&self, query: &Query<'_>) -> Option<Request> {
        let Query::Point { lon, lat } = *query else {
            return None;
        };
        let (lon, lat) = (coord(lon), coord(lat));
        let key = self.key.as_ref().map_or("", |k| k.expose());
        let fill = |s: &str, key: &str| {
            s.replace("{lon}", &lon)
                .replace("{lat}", &lat)
                .replace("{key}", key)
        };
        let mut url = fill(&self.template.url, &percent_encode(key));
        if url.starts_with('/') {
            url = format!("{}{url}", self.base);
        }
        Some(Request {
            url,
            headers: self
                .template
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), fill(v, key)))
                .collect(),
        })
    }

    fn parse(&self, _query: &Query<'_>, status: u16, body: &[u8]) -> Result<Answer, AttemptError> {
        let v = json("the template's provider", status, body)?;
        Ok(parse_template(&v, &self.template))
    }
}

fn parse_template(v: &Value, t: &TemplateConfig) -> Answer {
    let at = |p: &Option<String>| p.as_deref().and_then(|p| text(v.pointer(p)));
    Answer::reverse(at(&t.address), at(&t.road_address), at(&t.building_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(text: &str) -> Result<TemplateConfig, String> {
        TemplateConfig::from_value(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn pointers_to_missing_targets_are_null() {
        let t = config(
            r#"{"url": "/r?x={lon}&y={lat}", "address": "/a/0/name", "road_address": "/nope",
                "building_name": ""}"#,
        )
        .unwrap();
        let Answer::Found(f) = parse_template(&json!({"a": [{"name": "X동 1"}]}), &t) else {
            panic!("expected an address")
        };
        assert_eq!(f.fields.get("address").map(String::as_str), Some("X동 1"));
        assert!(!f.fields.contains_key("road_address"));
        // "" points at the whole document, which is not text.
        assert!(!f.fields.contains_key("building_name"));
        assert_eq!(parse_template(&json!({}), &t), Answer::NoResult);
        assert!(config(r#"{"url": "/r?x={lon}", "address": "/a"}"#).is_err());
        assert!(config(r#"{"url": "/r?x={lon}&y={lat}"}"#).is_err());
        assert!(config(r#"{"url": "/r?x={lon}&y={lat}", "address": "a"}"#).is_err());
    }

    #[test]
    fn a_template_needs_what_it_uses() {
        let cfg = json!({"url": "http://h/r?x={lon}&y={lat}&k={key}", "address": "/a"});
        let setup = |key: Option<Secret>| EndpointSetup {
            base_url: String::new(),
            key,
            config: Some(&cfg),
        };
        assert!(matches!(
            TEMPLATE.endpoint(setup(None)),
            Err(ConfigError::MissingKey(_))
        ));
        let e = TEMPLATE.endpoint(setup(Some(Secret::new("a b")))).unwrap();
        let r = e.request(&Query::Point { lon: 1.5, lat: 2.0 }).unwrap();
        assert_eq!(r.url, "http://h/r?x=1.5&y=2&k=a%20b");
        let missing = EndpointSetup {
            base_url: String::new(),
            key: None,
            config: None,
        };
        assert!(matches!(
            TEMPLATE.endpoint(missing),
            Err(ConfigError::MissingConfig(_))
        ));
    }
}
