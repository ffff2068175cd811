//! Kakao Local: `coord2address` (point → parcel and road address) and `search/address`
//! (address → point; its `address_type` decides the match type).

use serde_json::Value;

use super::{
    coord, geocoded, json, lon_lat, text, unparseable, Answer, AttemptError, ConfigError, Endpoint,
    EndpointSetup, MatchType, ProviderInfo, ProviderSpec, Query, Request,
};
use crate::secret::{percent_encode, Secret};

pub struct Kakao;
pub static KAKAO: Kakao = Kakao;

static INFO: ProviderInfo = ProviderInfo {
    name: "kakao",
    title: "Kakao",
    default_base_url: Some("https://dapi.kakao.com"),
    base_url_env: Some("GEOBATCH_KAKAO_BASE_URL"),
    key_env: Some("KAKAO_REST_API_KEY"),
    needs_key: true,
    geocodes: true,
    ..ProviderInfo::DEFAULT
};

impl ProviderSpec for Kakao {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }
    fn endpoint(&self, setup: EndpointSetup<'_>) -> Result<Box<dyn Endpoint>, ConfigError> {
        let key = setup.key.ok_or(ConfigError::MissingKey(self.name()))?;
        Ok(Box::new(KakaoEndpoint {
            base: setup.base_url,
            key,
        }))
    }
}

#[derive(Debug)]
struct KakaoEndpoint {
    base: String,
    key: Secret,
}

impl Endpoint for KakaoEndpoint {
    fn request(&self, query: &Query<'_>) -> Option<Request> {
        let url = match *query {
            Query::Point { lon, lat } => format!(
                "{}/v2/local/geo/coord2address.json?x={}&y={}",
                self.base,
                coord(lon),
                coord(lat)
            ),
            Query::Address { text, .. } => format!(
                "{}/v2/local/search/address.json?query={}",
                self.base,
                percent_encode(text)
            ),
        };
        Some(Request {
            url,
            headers: vec![(
                "Authorization".into(),
                format!("KakaoAK {}", self.key.expose()),
            )],
        })
    }

    fn parse(&self, query: &Query<'_>, status: u16, body: &[u8]) -> Result<Answer, AttemptError> {
        let v = json("kakao", status, body)?;
        match query {
            Query::Point { .. } => parse_coord2address(&v),
            Query::Address { .. } => parse_search_address(&v),
        }
    }

    /// New apps (since late 2024) must switch on 카카오맵 before Local answers them:
    /// `{"errorType":"AccessDeniedError","message":"App(…) disabled OPEN_MAP_AND_LOCAL service."}`.
    fn key_hint(&self, _status: u16, body: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let message = text(v.get("message"))?;
        message.contains("OPEN_MAP_AND_LOCAL").then(|| {
            "the app has the Kakao Map service (OPEN_MAP_AND_LOCAL) disabled: enable 카카오맵 \
             for the app in the Kakao developers console (내 애플리케이션 > 제품 설정 > 카카오맵)"
                .to_string()
        })
    }

    /// `{"errorType":"AccessDeniedError","message":"cannot find appKey"}`.
    fn error_code(&self, body: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        text(v.get("errorType"))
    }
}

/// `coord2address`: `{"meta":{"total_count":1},"documents":[{"road_address":{…}|null,
/// "address":{…}}]}`; no document is no result.
fn parse_coord2address(v: &Value) -> Result<Answer, AttemptError> {
    let docs = v
        .get("documents")
        .and_then(Value::as_array)
        .ok_or_else(|| unparseable("kakao", "documents"))?;
    let Some(doc) = docs.first() else {
        return Ok(Answer::NoResult);
    };
    Ok(Answer::reverse(
        text(doc.pointer("/address/address_name")),
        text(doc.pointer("/road_address/address_name")),
        text(doc.pointer("/road_address/building_name")),
    ))
}

/// `search/address`: `{"meta":{"total_count":n},"documents":[{"address_name":…,
/// "address_type":"REGION"|"ROAD"|"REGION_ADDR"|"ROAD_ADDR","x":"lon","y":"lat",
/// "address":{…}|null,"road_address":{"address_name":…,"building_name":…}|null}]}`.
/// `REGION` (a 시/구/동 name) and `ROAD` (a road without a number) are region-level.
fn parse_search_address(v: &Value) -> Result<Answer, AttemptError> {
    let docs = v
        .get("documents")
        .and_then(Value::as_array)
        .ok_or_else(|| unparseable("kakao", "documents"))?;
    let level = |d: &Value| match d.get("address_type").and_then(Value::as_str) {
        Some("ROAD_ADDR") => MatchType::Road,
        Some("REGION_ADDR") => MatchType::Parcel,
        _ => MatchType::Region,
    };
    // The first document at the best level the provider gave.
    let Some(best) = docs
        .iter()
        .find(|d| level(d) != MatchType::Region)
        .or_else(|| docs.first())
    else {
        return Ok(Answer::NoResult);
    };
    let match_type = level(best);
    let total = v
        .pointer("/meta/total_count")
        .and_then(Value::as_u64)
        .unwrap_or(docs.len() as u64);
    let point = lon_lat("kakao", best.get("x"), best.get("y"))?;
    let matched = match match_type {
        MatchType::Road => text(best.pointer("/road_address/address_name")),
        _ => text(best.pointer("/address/address_name")),
    }
    .or_else(|| text(best.get("address_name")));
    Ok(geocoded(
        point,
        matched,
        text(best.pointer("/road_address/building_name")),
        match_type,
        total,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
        match a {
            Answer::Found(f) => f.fields.get(name).map(String::as_str),
            Answer::NoResult => None,
        }
    }

    #[test]
    fn reads_parcel_road_and_building() {
        let v = json!({"meta": {"total_count": 1}, "documents": [{
            "road_address": {"address_name": "서울특별시 중구 세종대로 110", "building_name": "서울특별시청",
                              "zone_no": "04524", "underground_yn": "N"},
            "address": {"address_name": "서울 중구 태평로1가 31", "mountain_yn": "N"}}]});
        let a = parse_coord2address(&v).unwrap();
        assert_eq!(field(&a, "address"), Some("서울 중구 태평로1가 31"));
        assert_eq!(
            field(&a, "road_address"),
            Some("서울특별시 중구 세종대로 110")
        );
        assert_eq!(field(&a, "building_name"), Some("서울특별시청"));
        let v = json!({"meta": {"total_count": 1}, "documents": [{
            "road_address": null, "address": {"address_name": "경기 양평군 서종면 1"}}]});
        let a = parse_coord2address(&v).unwrap();
        assert_eq!(
            (field(&a, "road_address"), field(&a, "building_name")),
            (None, None)
        );
        let v = json!({"meta": {"total_count": 0}, "documents": []});
        assert_eq!(parse_coord2address(&v).unwrap(), Answer::NoResult);
        assert!(matches!(
            parse_coord2address(&json!({"x": 1})),
            Err(AttemptError::Permanent(_))
        ));
    }

    fn found(a: Answer) -> super::super::Found {
        match a {
            Answer::Found(f) => f,
            Answer::NoResult => panic!("expected a match"),
        }
    }

    #[test]
    fn reads_address_search_by_address_type() {
        let v = json!({"meta": {"total_count": 1, "pageable_count": 1, "is_end": true},
            "documents": [{"address_name": "서울 중구 세종대로 110", "address_type": "ROAD_ADDR",
                "x": "126.977829174031", "y": "37.5663174209601",
                "address": {"address_name": "서울 중구 태평로1가 31", "b_code": "1114010300",
                    "x": "126.977829174031", "y": "37.5663174209601"},
                "road_address": {"address_name": "서울 중구 세종대로 110", "building_name": "서울특별시청",
                    "zone_no": "04524", "x": "126.977829174031", "y": "37.5663174209601"}}]});
        let f = found(parse_search_address(&v).unwrap());
        assert_eq!(f.point, Some((126.977829174031, 37.5663174209601)));
        assert_eq!(f.match_type, Some(MatchType::Road));
        assert_eq!(f.candidates, 1);
        assert_eq!(f.fields["matched_address"], "서울 중구 세종대로 110");
        assert_eq!(f.fields["building_name"], "서울특별시청");

        let v = json!({"meta": {"total_count": 1}, "documents": [{
            "address_name": "서울 종로구 세종로 1-68", "address_type": "REGION_ADDR",
            "x": "126.97", "y": "37.57", "road_address": null,
            "address": {"address_name": "서울 종로구 세종로 1-68"}}]});
        let f = found(parse_search_address(&v).unwrap());
        assert_eq!(f.match_type, Some(MatchType::Parcel));
        assert_eq!(f.fields["matched_address"], "서울 종로구 세종로 1-68");
        assert!(!f.fields.contains_key("building_name"));

        // Only a region (or a road without a number): region-level, never a building.
        for t in ["REGION", "ROAD"] {
            let v = json!({"meta": {"total_count": 1}, "documents": [{
                "address_name": "서울 강서구", "address_type": t, "x": "126.84", "y": "37.55",
                "address": {"address_name": "서울 강서구"}, "road_address": null}]});
            assert_eq!(
                found(parse_search_address(&v).unwrap()).match_type,
                Some(MatchType::Region)
            );
        }
        // Several candidates: the first at the best level, and how many there were.
        let v = json!({"meta": {"total_count": 3}, "documents": [
            {"address_name": "경기 광주시", "address_type": "REGION", "x": "127.2", "y": "37.4",
             "address": {"address_name": "경기 광주시"}, "road_address": null},
            {"address_name": "경기 광주시 중앙로 1", "address_type": "ROAD_ADDR", "x": "127.25",
             "y": "37.41", "road_address": {"address_name": "경기 광주시 중앙로 1", "building_name": ""}},
            {"address_name": "광주 동구 중앙로 1", "address_type": "ROAD_ADDR", "x": "126.91",
             "y": "35.14", "road_address": {"address_name": "광주 동구 중앙로 1"}}]});
        let f = found(parse_search_address(&v).unwrap());
        assert_eq!((f.candidates, f.point), (3, Some((127.25, 37.41))));
        let v = json!({"meta": {"total_count": 0, "pageable_count": 0, "is_end": true},
            "documents": []});
        assert_eq!(parse_search_address(&v).unwrap(), Answer::NoResult);
        // A position that does not read is an error, never a point.
        for (x, y) in [
            ("", "37.5"),
            ("abc", "37.5"),
            ("127.0", "NaN"),
            ("500", "37"),
        ] {
            let v = json!({"meta": {"total_count": 1}, "documents": [{
                "address_name": "a", "address_type": "ROAD_ADDR", "x": x, "y": y}]});
            assert!(parse_search_address(&v).is_err(), "{x},{y}");
        }
    }

    #[test]
    fn a_disabled_kakao_map_service_says_what_to_switch_on() {
        let e = KAKAO
            .endpoint(EndpointSetup {
                base_url: "http://h".into(),
                key: Some(Secret::new("k")),
                config: None,
            })
            .unwrap();
        let body = br#"{"errorType":"AccessDeniedError","message":"App(geobatch) disabled OPEN_MAP_AND_LOCAL service."}"#;
        let hint = e.key_hint(403, body).unwrap();
        assert!(hint.contains("카카오맵"), "{hint}");
        assert_eq!(e.error_code(body).as_deref(), Some("AccessDeniedError"));
        let body = br#"{"errorType":"AccessDeniedError","message":"cannot find appKey"}"#;
        assert_eq!(e.key_hint(401, body), None);
        let r = e
            .request(&Query::Address {
                text: "서울 중구 세종대로 110",
                kind: super::super::AddressKind::Any,
            })
            .unwrap();
        assert_eq!(
            r.url,
            "http://h/v2/local/search/address.json?query=%EC%84%9C%EC%9A%B8%20%EC%A4%91%EA%B5%AC%20%EC%84%B8%EC%A2%85%EB%8C%80%EB%A1%9C%20110"
        );
        assert_eq!(r.headers[0].1, "KakaoAK k");
    }

    #[test]
    fn the_key_goes_in_the_header_only() {
        let e = KAKAO
            .endpoint(EndpointSetup {
                base_url: "http://h".into(),
                key: Some(Secret::new("k/ 1")),
                config: None,
            })
            .unwrap();
        let r = e
            .request(&Query::Point {
                lon: 127.0,
                lat: 37.5,
            })
            .unwrap();
        assert_eq!(
            r.url,
            "http://h/v2/local/geo/coord2address.json?x=127&y=37.5"
        );
        assert_eq!(
            r.headers,
            vec![("Authorization".into(), "KakaoAK k/ 1".into())]
        );
    }
}
