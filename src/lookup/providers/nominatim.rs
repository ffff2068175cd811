//! Nominatim (OpenStreetMap): `reverse`, jsonv2. Its usage policy allows 1 request/s and wants
//! a real User-Agent (the client sends one).

use serde_json::Value;

use super::{
    coord, json, text, unparseable, Answer, AttemptError, ConfigError, Endpoint, EndpointSetup,
    LookupError, ProviderInfo, ProviderSpec, Query, Request,
};

pub struct Nominatim;
pub static NOMINATIM: Nominatim = Nominatim;

static INFO: ProviderInfo = ProviderInfo {
    name: "nominatim",
    title: "Nominatim",
    default_base_url: Some("https://nominatim.openstreetmap.org"),
    base_url_env: Some("GEOBATCH_NOMINATIM_BASE_URL"),
    // Its usage policy: at most 1 request/s.
    default_rate_per_sec: 1.0,
    ..ProviderInfo::DEFAULT
};

impl ProviderSpec for Nominatim {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }
    fn endpoint(&self, setup: EndpointSetup<'_>) -> Result<Box<dyn Endpoint>, ConfigError> {
        Ok(Box::new(NominatimEndpoint {
            base: setup.base_url,
        }))
    }
}

#[derive(Debug)]
struct NominatimEndpoint {
    base: String,
}

impl Endpoint for NominatimEndpoint {
    fn request(&self, query: &Query<'_>) -> Option<Request> {
        match *query {
            Query::Point { lon, lat } => Some(Request {
                url: format!(
                    "{}/reverse?format=jsonv2&lat={}&lon={}&addressdetails=1",
                    self.base,
                    coord(lat),
                    coord(lon)
                ),
                headers: vec![],
            }),
            Query::Address { .. } => None,
        }
    }

    fn parse(&self, _query: &Query<'_>, status: u16, body: &[u8]) -> Result<Answer, AttemptError> {
        parse_reverse(&json("nominatim", status, body)?, status)
    }

    fn error_code(&self, body: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        text(v.pointer("/error/code"))
    }
}

/// `reverse` (jsonv2): `{"display_name":…,"name":…,"category":…,"address":{"road":…,
/// "house_number":…,"building":…}}`; `{"error":"Unable to geocode"}` is no result.
fn parse_reverse(v: &Value, status: u16) -> Result<Answer, AttemptError> {
    if let Some(err) = v.get("error") {
        return match err.as_str() {
            Some("Unable to geocode") => Ok(Answer::NoResult),
            _ => Err(AttemptError::Permanent(LookupError::Rejected {
                status,
                reason: format!(
                    "nominatim: {}",
                    crate::lookup::snippet(err.to_string().as_bytes())
                ),
            })),
        };
    }
    let display = v
        .get("display_name")
        .ok_or_else(|| unparseable("nominatim", "display_name"))?;
    let addr = v.get("address");
    let part = |name: &str| text(addr.and_then(|a| a.get(name)));
    let road = part("road").map(|road| match part("house_number") {
        Some(n) => format!("{road} {n}"),
        None => road,
    });
    let is_building = v.get("category").and_then(Value::as_str) == Some("building")
        || v.get("addresstype").and_then(Value::as_str) == Some("building");
    let building = part("building").or_else(|| is_building.then(|| text(v.get("name"))).flatten());
    Ok(Answer::reverse(text(Some(display)), road, building))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_display_name_and_parts() {
        let v = json!({"place_id": 1, "category": "building", "type": "yes", "name": "서울특별시청",
            "display_name": "서울특별시청, 110, 세종대로, 중구, 서울특별시, 04524, 대한민국",
            "address": {"house_number": "110", "road": "세종대로", "city": "서울특별시"}});
        let Answer::Found(f) = parse_reverse(&v, 200).unwrap() else {
            panic!("expected an address")
        };
        assert_eq!(f.fields["road_address"], "세종대로 110");
        assert_eq!(f.fields["building_name"], "서울특별시청");
        let v = json!({"error": "Unable to geocode"});
        assert_eq!(parse_reverse(&v, 200).unwrap(), Answer::NoResult);
    }
}
