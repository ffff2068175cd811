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
//!
//! Only `http://` and `https://` URLs are taken, with a fixed host (no placeholder before the
//! path), so the key goes only to the host the template names. On a server, templates are the
//! operator's: [`load_templates`] reads the named templates of `GEOBATCH_LOOKUP_TEMPLATES`.

use std::collections::BTreeMap;
use std::path::Path;

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
        if !self.url.starts_with('/') {
            fixed_host(&self.url)?;
        }
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

/// The `scheme://host:port` of an absolute template URL: http or https only, and no
/// placeholder in it (the key must go to the host the template names, nowhere else).
fn fixed_host(url: &str) -> Result<String, String> {
    let shown = crate::job::quote_short(url);
    let lower = url.to_ascii_lowercase();
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|s| lower.starts_with(s).then(|| &url[s.len()..]))
        .ok_or_else(|| {
            format!("template url {shown} is not http:// or https:// (nor a path starting with /)")
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('{') || authority.is_empty() {
        return Err(format!(
            "template url {shown}: the host must be written out (no placeholder)"
        ));
    }
    let parsed = url::Url::parse(&url[..url.len() - rest.len() + authority.len()])
        .map_err(|e| format!("template url {shown}: {e}"))?;
    parsed
        .host_str()
        .map(|h| {
            format!(
                "{}://{h}:{}",
                parsed.scheme(),
                parsed.port_or_known_default().unwrap_or(0)
            )
        })
        .ok_or_else(|| format!("template url {shown} names no host"))
}

/// The operator's named templates: `path` is a JSON file (an object: name -> template) or a
/// directory of such `*.json` files. Each is checked here (an error names the file and the
/// template); a relative url is resolved against `base_url`. The definitions returned are
/// what jobs store.
pub fn load_templates(
    path: &Path,
    base_url: Option<&str>,
) -> Result<BTreeMap<String, Value>, ConfigError> {
    let files = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| ConfigError::Template(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = BTreeMap::new();
    for file in files {
        let bad = |msg: String| ConfigError::Template(format!("{}: {msg}", file.display()));
        let text = std::fs::read_to_string(&file).map_err(|e| bad(e.to_string()))?;
        let named: BTreeMap<String, Value> = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a JSON object of named templates: {e}")))?;
        for (name, definition) in named {
            let bad = |msg: String| {
                bad(format!(
                    "template {}: {msg}",
                    crate::job::quote_short(&name)
                ))
            };
            let mut cfg = TemplateConfig::from_value(&definition).map_err(bad)?;
            if cfg.url.starts_with('/') {
                let base = base_url
                    .map(|b| b.trim().trim_end_matches('/'))
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| {
                        bad("its url is relative (starts with /) but GEOBATCH_TEMPLATE_BASE_URL is unset".into())
                    })?;
                cfg.url = format!("{base}{}", cfg.url);
                cfg.validate().map_err(bad)?;
            }
            let value = serde_json::to_value(&cfg).map_err(|e| bad(e.to_string()))?;
            if out.insert(name.clone(), value).is_some() {
                return Err(bad("defined twice".into()));
            }
        }
    }
    Ok(out)
}

static INFO: ProviderInfo = ProviderInfo {
    name: "template",
    title: "the template's provider",
    base_url_env: Some("GEOBATCH_TEMPLATE_BASE_URL"),
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
        if template.url.starts_with('/') {
            if setup.base_url.is_empty() {
                return Err(ConfigError::Template(
                    "template url is relative (starts with /) but no base URL is set (GEOBATCH_TEMPLATE_BASE_URL)".into(),
                ));
            }
            fixed_host(&setup.base_url).map_err(ConfigError::Template)?;
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

    #[test]
    fn only_http_urls_with_a_written_host() {
        for bad in [
            "file:///etc/passwd?{lon}{lat}",
            "ftp://h/{lon}/{lat}",
            "gopher://h/{lon}{lat}",
            "http://{key}.evil/{lon}/{lat}",
            "https://{lon}/{lat}",
            "h/r?x={lon}&y={lat}",
        ] {
            let e = config(&format!(r#"{{"url": "{bad}", "address": "/a"}}"#)).unwrap_err();
            assert!(e.contains("template url"), "{bad}: {e}");
        }
        for good in ["HTTPS://h:8443/r?x={lon}&y={lat}", "/r?x={lon}&y={lat}"] {
            config(&format!(r#"{{"url": "{good}", "address": "/a"}}"#)).unwrap();
        }
    }

    #[test]
    fn templates_load_from_a_file_or_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.json");
        std::fs::write(
            &one,
            r#"{"geo": {"url": "/r?x={lon}&y={lat}&k={key}", "address": "/a"}}"#,
        )
        .unwrap();
        let e = load_templates(&one, None).unwrap_err().to_string();
        assert!(
            e.contains("one.json") && e.contains("GEOBATCH_TEMPLATE_BASE_URL"),
            "{e}"
        );
        let t = load_templates(&one, Some("http://127.0.0.1:9/")).unwrap();
        assert_eq!(
            t["geo"]["url"],
            "http://127.0.0.1:9/r?x={lon}&y={lat}&k={key}"
        );
        std::fs::write(
            dir.path().join("two.json"),
            r#"{"bad": {"url": "file:///x?{lon}{lat}", "address": "/a"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let e = load_templates(dir.path(), Some("http://h"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("two.json") && e.contains("\"bad\""), "{e}");
        std::fs::remove_file(dir.path().join("two.json")).unwrap();
        let t = load_templates(dir.path(), Some("http://h")).unwrap();
        assert_eq!(t.keys().collect::<Vec<_>>(), ["geo"]);
    }
}
