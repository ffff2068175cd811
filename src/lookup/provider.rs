//! What each provider is asked and how its answer is read.
//!
//! Each provider is a request (URL, headers) built from a WGS84 lon/lat, and a reading of a
//! successful (2xx) JSON answer. HTTP status codes are classified once, in `super`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Address, LookupError, LookupOutcome, Provider, Secret};

/// A provider described by a configuration file (JSON):
///
/// ```json
/// {
///   "url": "https://geo.example.kr/v1/reverse?x={lon}&y={lat}&apiKey={key}",
///   "headers": { "Accept": "application/json" },
///   "address": "/result/0/jibun",
///   "road_address": "/result/0/road",
///   "building_name": "/result/0/building"
/// }
/// ```
///
/// `url` holds `{lon}` and `{lat}` (WGS84 degrees) and optionally `{key}` (the configured key,
/// percent-encoded); a `url` starting with `/` is relative to the configured base URL. Header
/// values may hold `{key}` too. The three fields are JSON pointers (RFC 6901) into the answer;
/// a pointer that is absent, or whose target is missing, null or empty, gives no value, and
/// no value for all three means no result.
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
    pub fn from_json(text: &str) -> Result<TemplateConfig, String> {
        let cfg: TemplateConfig =
            serde_json::from_str(text).map_err(|e| format!("template: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<TemplateConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("template {}: {e}", path.display()))?;
        TemplateConfig::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn validate(&self) -> Result<(), String> {
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

    pub(crate) fn uses_key(&self) -> bool {
        self.url.contains("{key}") || self.headers.values().any(|v| v.contains("{key}"))
    }
}

/// One attempt that did not give an answer.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// Not worth repeating.
    Permanent(LookupError),
    /// Worth repeating after a pause.
    Transient {
        kind: TransientKind,
        reason: String,
        retry_after: Option<Duration>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransientKind {
    RateLimited,
    Server,
    Timeout,
    Connect,
    Other,
}

/// A provider with its base URL and key: builds requests, reads answers.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) provider: Provider,
    base: String,
    key: Option<Secret>,
    template: Option<TemplateConfig>,
}

/// A request to send, before the client sees it.
pub(crate) struct Request {
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Endpoint {
    pub(crate) fn new(
        provider: Provider,
        base: String,
        key: Option<Secret>,
        template: Option<TemplateConfig>,
    ) -> Endpoint {
        Endpoint {
            provider,
            base: base.trim_end_matches('/').to_string(),
            key,
            template,
        }
    }

    /// The key (empty without one), for requests and for scrubbing texts.
    pub(crate) fn key(&self) -> &str {
        self.key.as_ref().map_or("", |k| k.expose())
    }

    pub(crate) fn request(&self, lon: f64, lat: f64) -> Request {
        let (lon, lat) = (coord(lon), coord(lat));
        match self.provider {
            Provider::Kakao => Request {
                url: format!(
                    "{}/v2/local/geo/coord2address.json?x={lon}&y={lat}",
                    self.base
                ),
                headers: vec![("Authorization".into(), format!("KakaoAK {}", self.key()))],
            },
            Provider::Vworld => Request {
                url: format!(
                    "{}/req/address?service=address&request=getAddress&version=2.0\
                     &crs=epsg:4326&point={lon},{lat}&format=json&type=both&key={}",
                    self.base,
                    percent_encode(self.key())
                ),
                headers: vec![],
            },
            Provider::Nominatim => Request {
                url: format!(
                    "{}/reverse?format=jsonv2&lat={lat}&lon={lon}&addressdetails=1",
                    self.base
                ),
                headers: vec![],
            },
            Provider::Template => {
                let t = self.template.as_ref().expect("checked by Lookup::new");
                let fill = |s: &str, key: &str| {
                    s.replace("{lon}", &lon)
                        .replace("{lat}", &lat)
                        .replace("{key}", key)
                };
                let mut url = fill(&t.url, &percent_encode(self.key()));
                if url.starts_with('/') {
                    url = format!("{}{url}", self.base);
                }
                Request {
                    url,
                    headers: t
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), fill(v, self.key())))
                        .collect(),
                }
            }
        }
    }

    /// Reads a 2xx answer.
    pub(crate) fn parse(&self, status: u16, body: &[u8]) -> Result<LookupOutcome, AttemptError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            AttemptError::Permanent(LookupError::Unparseable {
                reason: format!("{} answered HTTP {status} with no JSON: {e}", self.provider),
            })
        })?;
        match self.provider {
            Provider::Kakao => parse_kakao(&v),
            Provider::Vworld => parse_vworld(&v, status),
            Provider::Nominatim => parse_nominatim(&v, status),
            Provider::Template => Ok(parse_template(
                &v,
                self.template.as_ref().expect("checked by Lookup::new"),
            )),
        }
    }

    /// The provider's own code for a refused key, when its error body names one.
    pub(crate) fn error_code(&self, body: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let code = match self.provider {
            // {"errorType":"AccessDeniedError","message":"cannot find appKey"}
            Provider::Kakao => v.get("errorType"),
            Provider::Vworld => v.pointer("/response/error/code"),
            Provider::Nominatim => v.pointer("/error/code"),
            Provider::Template => None,
        }?;
        Some(match code {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

fn permanent_unparseable(provider: Provider, what: &str) -> AttemptError {
    AttemptError::Permanent(LookupError::Unparseable {
        reason: format!("{provider} answer has no {what}"),
    })
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn outcome(address: Address) -> LookupOutcome {
    if address.address.is_none()
        && address.road_address.is_none()
        && address.building_name.is_none()
    {
        LookupOutcome::NoResult
    } else {
        LookupOutcome::Found(address)
    }
}

/// Kakao Local `coord2address`: `{"meta":{"total_count":1},"documents":[{"road_address":{…}|null,
/// "address":{…}}]}`; no document is no result.
fn parse_kakao(v: &Value) -> Result<LookupOutcome, AttemptError> {
    let docs = v
        .get("documents")
        .and_then(Value::as_array)
        .ok_or_else(|| permanent_unparseable(Provider::Kakao, "documents"))?;
    let Some(doc) = docs.first() else {
        return Ok(LookupOutcome::NoResult);
    };
    Ok(outcome(Address {
        address: text(doc.pointer("/address/address_name")),
        road_address: text(doc.pointer("/road_address/address_name")),
        building_name: text(doc.pointer("/road_address/building_name")),
    }))
}

/// VWorld `getAddress` 2.0: `{"response":{"status":"OK"|"NOT_FOUND"|"ERROR", "result":[{"type":
/// "parcel"|"road","text":…,"structure":{…,"detail":…}}], "error":{"code":…,"text":…}}}`.
/// Errors come as HTTP 200 with status ERROR.
fn parse_vworld(v: &Value, status: u16) -> Result<LookupOutcome, AttemptError> {
    let response = v
        .get("response")
        .ok_or_else(|| permanent_unparseable(Provider::Vworld, "response"))?;
    match response.get("status").and_then(Value::as_str) {
        Some("OK") => {
            let results = response
                .get("result")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let of_type = |t: &str| {
                results
                    .iter()
                    .find(|r| r.get("type").and_then(Value::as_str) == Some(t))
            };
            let (parcel, road) = (of_type("parcel"), of_type("road"));
            Ok(outcome(Address {
                address: text(parcel.and_then(|r| r.get("text"))),
                road_address: text(road.and_then(|r| r.get("text"))),
                building_name: text(road.and_then(|r| r.pointer("/structure/detail")))
                    .or_else(|| text(parcel.and_then(|r| r.pointer("/structure/detail")))),
            }))
        }
        Some("NOT_FOUND") => Ok(LookupOutcome::NoResult),
        Some("ERROR") => {
            let code = text(response.pointer("/error/code")).unwrap_or_default();
            let message = text(response.pointer("/error/text")).unwrap_or_default();
            Err(match code.as_str() {
                "INVALID_KEY" | "INCORRECT_KEY" | "UNAVAILABLE_KEY" | "UNREGISTERED_KEY" => {
                    AttemptError::Permanent(LookupError::InvalidKey {
                        provider: Provider::Vworld,
                        status,
                        code: Some(code),
                    })
                }
                "OVER_REQUEST_LIMIT" => AttemptError::Permanent(LookupError::QuotaExhausted {
                    provider: Provider::Vworld,
                    resets_at_ms: super::next_utc_midnight_ms(),
                }),
                "SYSTEM_ERROR" | "UNKNOWN_ERROR" => AttemptError::Transient {
                    kind: TransientKind::Server,
                    reason: format!("vworld {code}: {message}"),
                    retry_after: None,
                },
                _ => AttemptError::Permanent(LookupError::Rejected {
                    status,
                    reason: format!("vworld {code}: {message}"),
                }),
            })
        }
        _ => Err(permanent_unparseable(Provider::Vworld, "status")),
    }
}

/// Nominatim `reverse` (jsonv2): `{"display_name":…,"name":…,"category":…,"address":{"road":…,
/// "house_number":…,"building":…}}`; `{"error":"Unable to geocode"}` is no result.
fn parse_nominatim(v: &Value, status: u16) -> Result<LookupOutcome, AttemptError> {
    if let Some(err) = v.get("error") {
        return match err.as_str() {
            Some("Unable to geocode") => Ok(LookupOutcome::NoResult),
            _ => Err(AttemptError::Permanent(LookupError::Rejected {
                status,
                reason: format!("nominatim: {}", super::snippet(err.to_string().as_bytes())),
            })),
        };
    }
    let display = v
        .get("display_name")
        .ok_or_else(|| permanent_unparseable(Provider::Nominatim, "display_name"))?;
    let addr = v.get("address");
    let part = |name: &str| text(addr.and_then(|a| a.get(name)));
    let road = part("road").map(|road| match part("house_number") {
        Some(n) => format!("{road} {n}"),
        None => road,
    });
    let is_building = v.get("category").and_then(Value::as_str) == Some("building")
        || v.get("addresstype").and_then(Value::as_str) == Some("building");
    let building = part("building").or_else(|| is_building.then(|| text(v.get("name"))).flatten());
    Ok(outcome(Address {
        address: text(Some(display)),
        road_address: road,
        building_name: building,
    }))
}

fn parse_template(v: &Value, t: &TemplateConfig) -> LookupOutcome {
    let at = |p: &Option<String>| p.as_deref().and_then(|p| text(v.pointer(p)));
    outcome(Address {
        address: at(&t.address),
        road_address: at(&t.road_address),
        building_name: at(&t.building_name),
    })
}

/// A coordinate as sent: the shortest text that reads back as the same f64.
fn coord(x: f64) -> String {
    format!("{x}")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn found(o: Result<LookupOutcome, AttemptError>) -> Address {
        match o {
            Ok(LookupOutcome::Found(a)) => a,
            other => panic!("expected Found, got {other:?}"),
        }
    }

    #[test]
    fn kakao_reads_parcel_road_and_building() {
        let v = json!({"meta": {"total_count": 1}, "documents": [{
            "road_address": {"address_name": "서울특별시 중구 세종대로 110", "building_name": "서울특별시청",
                              "zone_no": "04524", "underground_yn": "N"},
            "address": {"address_name": "서울 중구 태평로1가 31", "mountain_yn": "N"}}]});
        let a = found(parse_kakao(&v));
        assert_eq!(a.address.as_deref(), Some("서울 중구 태평로1가 31"));
        assert_eq!(
            a.road_address.as_deref(),
            Some("서울특별시 중구 세종대로 110")
        );
        assert_eq!(a.building_name.as_deref(), Some("서울특별시청"));
        let v = json!({"meta": {"total_count": 1}, "documents": [{
            "road_address": null, "address": {"address_name": "경기 양평군 서종면 1"}}]});
        let a = found(parse_kakao(&v));
        assert_eq!((a.road_address, a.building_name), (None, None));
        let v = json!({"meta": {"total_count": 0}, "documents": []});
        assert!(matches!(parse_kakao(&v), Ok(LookupOutcome::NoResult)));
        assert!(matches!(
            parse_kakao(&json!({"x": 1})),
            Err(AttemptError::Permanent(LookupError::Unparseable { .. }))
        ));
    }

    #[test]
    fn vworld_reads_results_and_error_codes() {
        let v = json!({"response": {"status": "OK", "result": [
            {"type": "parcel", "text": "서울특별시 중구 태평로1가 31", "structure": {"detail": ""}},
            {"type": "road", "text": "서울특별시 중구 세종대로 110 (태평로1가)",
             "structure": {"detail": "서울특별시청"}}]}});
        let a = found(parse_vworld(&v, 200));
        assert_eq!(a.address.as_deref(), Some("서울특별시 중구 태평로1가 31"));
        assert_eq!(a.building_name.as_deref(), Some("서울특별시청"));
        let v = json!({"response": {"status": "NOT_FOUND"}});
        assert!(matches!(parse_vworld(&v, 200), Ok(LookupOutcome::NoResult)));
        let v = json!({"response": {"status": "ERROR",
            "error": {"level": "1", "code": "INVALID_KEY", "text": "등록되지 않은 인증키입니다."}}});
        assert!(matches!(
            parse_vworld(&v, 200),
            Err(AttemptError::Permanent(LookupError::InvalidKey { .. }))
        ));
        let v = json!({"response": {"status": "ERROR", "error": {"code": "SYSTEM_ERROR"}}});
        assert!(matches!(
            parse_vworld(&v, 200),
            Err(AttemptError::Transient { .. })
        ));
        let v = json!({"response": {"status": "ERROR", "error": {"code": "OVER_REQUEST_LIMIT"}}});
        assert!(matches!(
            parse_vworld(&v, 200),
            Err(AttemptError::Permanent(LookupError::QuotaExhausted { .. }))
        ));
        let v = json!({"response": {"status": "ERROR", "error": {"code": "INVALID_RANGE"}}});
        assert!(matches!(
            parse_vworld(&v, 200),
            Err(AttemptError::Permanent(LookupError::Rejected { .. }))
        ));
    }

    #[test]
    fn nominatim_reads_display_name_and_parts() {
        let v = json!({"place_id": 1, "category": "building", "type": "yes", "name": "서울특별시청",
            "display_name": "서울특별시청, 110, 세종대로, 중구, 서울특별시, 04524, 대한민국",
            "address": {"house_number": "110", "road": "세종대로", "city": "서울특별시"}});
        let a = found(parse_nominatim(&v, 200));
        assert_eq!(a.road_address.as_deref(), Some("세종대로 110"));
        assert_eq!(a.building_name.as_deref(), Some("서울특별시청"));
        let v = json!({"error": "Unable to geocode"});
        assert!(matches!(
            parse_nominatim(&v, 200),
            Ok(LookupOutcome::NoResult)
        ));
    }

    #[test]
    fn template_pointers_missing_targets_are_null() {
        let t = TemplateConfig::from_json(
            r#"{"url": "/r?x={lon}&y={lat}", "address": "/a/0/name", "road_address": "/nope",
                "building_name": ""}"#,
        )
        .unwrap();
        let a = match parse_template(&json!({"a": [{"name": "X동 1"}]}), &t) {
            LookupOutcome::Found(a) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(a.address.as_deref(), Some("X동 1"));
        assert_eq!(a.road_address, None);
        // "" points at the whole document, which is not text.
        assert_eq!(a.building_name, None);
        assert_eq!(parse_template(&json!({}), &t), LookupOutcome::NoResult);
        assert!(TemplateConfig::from_json(r#"{"url": "/r?x={lon}", "address": "/a"}"#).is_err());
        assert!(TemplateConfig::from_json(r#"{"url": "/r?x={lon}&y={lat}"}"#).is_err());
        assert!(
            TemplateConfig::from_json(r#"{"url": "/r?x={lon}&y={lat}", "address": "a"}"#).is_err()
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn requests_carry_the_key_only_where_the_provider_wants_it() {
        let key = Some(Secret::new("k/ 1"));
        let e = Endpoint::new(Provider::Kakao, "http://h/".into(), key.clone(), None);
        let r = e.request(127.0, 37.5);
        assert_eq!(
            r.url,
            "http://h/v2/local/geo/coord2address.json?x=127&y=37.5"
        );
        assert_eq!(
            r.headers,
            vec![("Authorization".into(), "KakaoAK k/ 1".into())]
        );
        let e = Endpoint::new(Provider::Vworld, "http://h".into(), key, None);
        assert!(e.request(127.0, 37.5).url.ends_with("&key=k%2F%201"));
        assert!(e.request(127.0, 37.5).url.contains("point=127,37.5"));
    }
}
