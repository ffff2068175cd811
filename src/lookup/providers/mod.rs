//! The address providers: each one file here, and one line in [`all`].
//!
//! A provider is a [`ProviderSpec`] (its name, the variables that hold its key and base URL,
//! its defaults) that binds to an [`Endpoint`] (a base URL and key): the endpoint builds the
//! request for a [`Query`] and reads a successful answer into an [`Answer`]. HTTP status codes,
//! retries, pacing and the circuit breaker are the client's business, the same for every
//! provider.

#[cfg(test)]
mod echo;
mod kakao;
mod nominatim;
pub mod template;
mod vworld;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::error::{AttemptError, ConfigError, LookupError, TransientKind};
use crate::secret::Secret;

/// Every provider this build knows, in the order users see them.
pub fn all() -> &'static [&'static dyn ProviderSpec] {
    static ALL: &[&dyn ProviderSpec] = &[
        &kakao::KAKAO,
        &vworld::VWORLD,
        &nominatim::NOMINATIM,
        &template::TEMPLATE,
        #[cfg(test)]
        &echo::ECHO,
    ];
    ALL
}

/// The provider called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static dyn ProviderSpec> {
    all()
        .iter()
        .copied()
        .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
}

/// The names of the providers that geocode.
pub fn geocoder_names() -> Vec<&'static str> {
    all()
        .iter()
        .filter(|p| p.geocodes())
        .map(|p| p.name())
        .collect()
}

/// The names of every provider.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name()).collect()
}

/// What is asked of a provider.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Query<'a> {
    /// Reverse lookup: the address at a WGS84 point.
    Point { lon: f64, lat: f64 },
    /// Geocoding: the point of an address (cleaned text), of the kind asked.
    Address { text: &'a str, kind: AddressKind },
}

/// Which form of an address a geocoding request asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    Any,
    Road,
    Parcel,
}

/// How precise a geocoding match is: a region-level hit never passes for a building.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchType {
    Building,
    Road,
    Parcel,
    Region,
}

impl MatchType {
    /// The text of the `match_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Building => "building",
            MatchType::Road => "road",
            MatchType::Parcel => "parcel",
            MatchType::Region => "region",
        }
    }

    /// Precise enough to give the row a position: anything but a region.
    pub fn locates(self) -> bool {
        self != MatchType::Region
    }
}

/// A request to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// A provider's answer; what the lookup cache keeps (as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    NoResult,
    Found(Found),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Found {
    /// Geocoding: the WGS84 point of the best candidate. Reverse lookups: None.
    pub point: Option<(f64, f64)>,
    /// Named output values (reverse: address, road_address, building_name); no empty ones.
    pub fields: BTreeMap<String, String>,
    /// Geocoding: how precise the best candidate is.
    pub match_type: Option<MatchType>,
    /// Geocoding: how many candidates the provider returned.
    pub candidates: u32,
}

/// The columns a reverse lookup adds, in order.
pub const REVERSE_FIELDS: [&str; 3] = ["address", "road_address", "building_name"];

impl Answer {
    /// A reverse lookup's answer from its three values; none of them is no result.
    pub fn reverse(
        address: Option<String>,
        road_address: Option<String>,
        building_name: Option<String>,
    ) -> Answer {
        let fields: BTreeMap<String, String> = REVERSE_FIELDS
            .iter()
            .zip([address, road_address, building_name])
            .filter_map(|(k, v)| {
                v.map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .map(|v| (k.to_string(), v))
            })
            .collect();
        if fields.is_empty() {
            Answer::NoResult
        } else {
            Answer::Found(Found {
                fields,
                ..Found::default()
            })
        }
    }
}

/// A provider bound to a base URL and key.
pub trait Endpoint: Send + Sync + fmt::Debug {
    /// The request for `query`; None when this provider cannot answer that kind of query.
    fn request(&self, query: &Query<'_>) -> Option<Request>;
    /// Reads a 2xx answer.
    fn parse(&self, query: &Query<'_>, status: u16, body: &[u8]) -> Result<Answer, AttemptError>;
    /// The provider's own code for a refused key (401/403 body), when it names one.
    fn error_code(&self, _body: &[u8]) -> Option<String> {
        None
    }
    /// What to tell the user about a refused key, when the body says more than "wrong key".
    fn key_hint(&self, _status: u16, _body: &[u8]) -> Option<String> {
        None
    }
}

/// What an endpoint is bound to.
pub struct EndpointSetup<'a> {
    /// Without a trailing slash; empty for a provider with no default and none configured.
    pub base_url: String,
    pub key: Option<Secret>,
    /// The job's `lookup_template`, for a provider that takes one.
    pub config: Option<&'a Value>,
}

/// What a provider is, as data: its names, where it lives, its key and its defaults.
#[derive(Debug)]
pub struct ProviderInfo {
    /// The name users give (`kakao`).
    pub name: &'static str,
    /// The name in messages (`Kakao`).
    pub title: &'static str,
    /// The public service; None when the configuration says where (a template).
    pub default_base_url: Option<&'static str>,
    /// The variable that overrides the base URL (tests, proxies, self-hosted services).
    pub base_url_env: Option<&'static str>,
    /// The variable holding the provider's own key.
    pub key_env: Option<&'static str>,
    pub needs_key: bool,
    /// Whether the job gives this provider a configuration (`lookup_template`).
    pub takes_config: bool,
    /// Requests per second when the job sets none.
    pub default_rate_per_sec: f64,
    /// Whether answers may be kept in the cache (a provider's terms may forbid it).
    pub may_cache: bool,
    /// Geocoding: the address kinds asked, in order, until one gives a match.
    pub address_kinds: &'static [AddressKind],
    /// Whether it answers geocoding queries (address → point).
    pub geocodes: bool,
}

impl ProviderInfo {
    /// A provider with every default: no key, no configuration, 10 requests/s, cacheable.
    pub const DEFAULT: ProviderInfo = ProviderInfo {
        name: "",
        title: "",
        default_base_url: None,
        base_url_env: None,
        key_env: None,
        needs_key: false,
        takes_config: false,
        default_rate_per_sec: 10.0,
        may_cache: true,
        address_kinds: &[AddressKind::Any],
        geocodes: false,
    };
}

/// A provider: what it is ([`ProviderInfo`]) and how to bind it to a base URL and key.
pub trait ProviderSpec: Send + Sync + 'static {
    fn info(&self) -> &'static ProviderInfo;
    fn endpoint(&self, setup: EndpointSetup<'_>) -> Result<Box<dyn Endpoint>, ConfigError>;

    fn name(&self) -> &'static str {
        self.info().name
    }
    fn title(&self) -> &'static str {
        self.info().title
    }
    fn default_base_url(&self) -> Option<&'static str> {
        self.info().default_base_url
    }
    fn base_url_env(&self) -> Option<&'static str> {
        self.info().base_url_env
    }
    fn key_env(&self) -> Option<&'static str> {
        self.info().key_env
    }
    fn needs_key(&self) -> bool {
        self.info().needs_key
    }
    fn takes_config(&self) -> bool {
        self.info().takes_config
    }
    fn default_rate_per_sec(&self) -> f64 {
        self.info().default_rate_per_sec
    }
    fn may_cache(&self) -> bool {
        self.info().may_cache
    }
    fn address_kinds(&self) -> &'static [AddressKind] {
        self.info().address_kinds
    }
    fn geocodes(&self) -> bool {
        self.info().geocodes
    }
}

impl fmt::Debug for dyn ProviderSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// Helpers the providers share.

/// An answer that lacks what its provider always sends.
pub(crate) fn unparseable(provider: &str, what: &str) -> AttemptError {
    AttemptError::Permanent(LookupError::Unparseable {
        reason: format!("{provider} answer has no {what}"),
    })
}

/// The JSON of a 2xx answer, or why it is not JSON.
pub(crate) fn json(provider: &str, status: u16, body: &[u8]) -> Result<Value, AttemptError> {
    serde_json::from_slice(body).map_err(|e| {
        AttemptError::Permanent(LookupError::Unparseable {
            reason: format!("{provider} answered HTTP {status} with no JSON: {e}"),
        })
    })
}

/// A value as text: trimmed strings and numbers; empty, null and anything else is none.
pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A geocoded position as the provider sent it (`"126.97"` or a number): WGS84 lon/lat, or an
/// error; an unreadable or impossible position never becomes a point.
pub(crate) fn lon_lat(
    provider: &str,
    lon: Option<&Value>,
    lat: Option<&Value>,
) -> Result<(f64, f64), AttemptError> {
    let read = |v: Option<&Value>| text(v).and_then(|t| t.parse::<f64>().ok());
    match (read(lon), read(lat)) {
        (Some(x), Some(y))
            if x.is_finite() && y.is_finite() && x.abs() <= 180.0 && y.abs() <= 90.0 =>
        {
            Ok((x, y))
        }
        _ => Err(unparseable(provider, "readable position (lon/lat)")),
    }
}

/// The columns a geocoding answer fills besides the position.
pub const GEOCODE_FIELDS: [&str; 2] = ["matched_address", "building_name"];

/// A geocoding answer.
pub(crate) fn geocoded(
    point: (f64, f64),
    matched_address: Option<String>,
    building_name: Option<String>,
    match_type: MatchType,
    candidates: u64,
) -> Answer {
    let fields = GEOCODE_FIELDS
        .iter()
        .zip([matched_address, building_name])
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k.to_string(), v)))
        .collect();
    Answer::Found(Found {
        point: Some(point),
        fields,
        match_type: Some(match_type),
        candidates: candidates.clamp(1, u64::from(u32::MAX)) as u32,
    })
}

/// A coordinate as sent: the shortest text that reads back as the same f64.
pub(crate) fn coord(x: f64) -> String {
    format!("{x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_names_each_provider_once() {
        let names = names();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert!(find("KAKAO").is_some() && find("google").is_none());
        assert!(all().iter().all(|p| !p.title().is_empty()));
    }

    #[test]
    fn answers_round_trip_through_their_cached_form() {
        let a = Answer::reverse(
            Some("서울 중구 태평로1가 31".into()),
            None,
            Some(" ".into()),
        );
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Answer>(&json).unwrap(), a);
        assert_eq!(
            serde_json::to_string(&Answer::NoResult).unwrap(),
            "\"no_result\""
        );
        // The form migration 0003 writes for answers cached by earlier versions.
        let old: Answer =
            serde_json::from_str(r#"{"found":{"fields":{"address":"X동 1"}}}"#).unwrap();
        assert_eq!(old, Answer::reverse(Some("X동 1".into()), None, None));
        assert_eq!(
            Answer::reverse(None, Some("".into()), None),
            Answer::NoResult
        );
    }
}
