//! Nominatim (OpenStreetMap): `reverse` and `search` (geocoding, Korea only), jsonv2. Its usage policy allows 1 request/s and wants
//! a real User-Agent (the client sends one).

use serde_json::Value;

use super::{
    coord, geocoded, json, lon_lat, text, unparseable, Answer, AttemptError, ConfigError, Endpoint,
    EndpointSetup, LookupError, MatchType, ProviderInfo, ProviderSpec, Query, Request,
};
use crate::secret::percent_encode;

pub struct Nominatim;
pub static NOMINATIM: Nominatim = Nominatim;

static INFO: ProviderInfo = ProviderInfo {
    name: "nominatim",
    title: "Nominatim",
    default_base_url: Some("https://nominatim.openstreetmap.org"),
    base_url_env: Some("GEOBATCH_NOMINATIM_BASE_URL"),
    // Its usage policy: at most 1 request/s.
    default_rate_per_sec: 1.0,
    geocodes: true,
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
        let url = match *query {
            Query::Point { lon, lat } => format!(
                "{}/reverse?format=jsonv2&lat={}&lon={}&addressdetails=1",
                self.base,
                coord(lat),
                coord(lon)
            ),
            Query::Address { text, .. } => format!(
                "{}/search?q={}&format=jsonv2&limit=5&countrycodes=kr&addressdetails=1",
                self.base,
                percent_encode(text)
            ),
        };
        Some(Request {
            url,
            headers: vec![],
        })
    }

    fn parse(&self, query: &Query<'_>, status: u16, body: &[u8]) -> Result<Answer, AttemptError> {
        let v = json("nominatim", status, body)?;
        match query {
            Query::Point { .. } => parse_reverse(&v, status),
            Query::Address { .. } => parse_search(&v),
        }
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

/// `search` (jsonv2): `[{"lat":"37.5","lon":"126.9","display_name":…,"category":…,"type":…,
/// "addresstype":…,"place_rank":30,…}]`, best first; `[]` is no result. `place_rank` 28–30 is
/// a building or house number, 26–27 a street, anything lower a region.
fn parse_search(v: &Value) -> Result<Answer, AttemptError> {
    let places = v
        .as_array()
        .ok_or_else(|| unparseable("nominatim", "list of places"))?;
    let level = |p: &Value| match p.get("place_rank").and_then(Value::as_u64).unwrap_or(0) {
        28.. => MatchType::Building,
        26 | 27 => MatchType::Road,
        _ => MatchType::Region,
    };
    let Some(best) = places
        .iter()
        .find(|p| level(p) != MatchType::Region)
        .or_else(|| places.first())
    else {
        return Ok(Answer::NoResult);
    };
    let point = lon_lat("nominatim", best.get("lon"), best.get("lat"))?;
    let is_building = best.get("category").and_then(Value::as_str) == Some("building");
    let building = is_building.then(|| text(best.get("name"))).flatten();
    Ok(geocoded(
        point,
        text(best.get("display_name")),
        building,
        level(best),
        places.len() as u64,
    ))
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

    #[test]
    fn reads_search_results_by_place_rank() {
        let v = json!([{"place_id": 123, "licence": "Data © OpenStreetMap contributors, ODbL 1.0.",
            "osm_type": "way", "osm_id": 1, "lat": "37.5662952", "lon": "126.9779451",
            "category": "building", "type": "public", "place_rank": 30, "importance": 0.4,
            "addresstype": "building", "name": "서울특별시청",
            "display_name": "서울특별시청, 110, 세종대로, 명동, 중구, 서울특별시, 04524, 대한민국",
            "address": {"building": "서울특별시청", "house_number": "110", "road": "세종대로",
                "city": "서울특별시", "postcode": "04524", "country": "대한민국", "country_code": "kr"}}]);
        let Answer::Found(f) = parse_search(&v).unwrap() else {
            panic!("expected a match")
        };
        assert_eq!(f.point, Some((126.9779451, 37.5662952)));
        assert_eq!(f.match_type, Some(MatchType::Building));
        assert_eq!(f.fields["building_name"], "서울특별시청");
        assert!(f.fields["matched_address"].starts_with("서울특별시청, 110"));
        let v = json!([
            {"lat": "37.55", "lon": "126.85", "category": "boundary", "type": "administrative",
             "place_rank": 14, "addresstype": "borough", "display_name": "강서구, 서울특별시, 대한민국"},
            {"lat": "37.57", "lon": "126.97", "category": "highway", "type": "primary",
             "place_rank": 26, "addresstype": "road", "display_name": "세종대로, 중구, 서울특별시"}]);
        let Answer::Found(f) = parse_search(&v).unwrap() else {
            panic!("expected a match")
        };
        assert_eq!((f.match_type, f.candidates), (Some(MatchType::Road), 2));
        let v = json!([{"lat": "37.55", "lon": "126.85", "category": "boundary",
            "type": "administrative", "place_rank": 14, "display_name": "강서구"}]);
        let Answer::Found(f) = parse_search(&v).unwrap() else {
            panic!("expected a match")
        };
        assert_eq!(f.match_type, Some(MatchType::Region));
        assert_eq!(parse_search(&json!([])).unwrap(), Answer::NoResult);
        assert!(parse_search(&json!({"error": "x"})).is_err());
    }
}
