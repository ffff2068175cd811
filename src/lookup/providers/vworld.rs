//! VWorld: `getAddress` (point → parcel and road address) and `getcoord` (address → point,
//! asked as `type=ROAD`, then `PARCEL`). VWorld reports errors as HTTP 200 with status `ERROR`.
//!
//! VWorld's terms of use forbid storing its results in a database: its answers are never
//! cached (`may_cache: false`); a job stores only the row results the user asked for.

use serde_json::Value;

use super::{
    coord, geocoded, json, lon_lat, text, unparseable, AddressKind, Answer, AttemptError,
    ConfigError, Endpoint, EndpointSetup, LookupError, MatchType, ProviderInfo, ProviderSpec,
    Query, Request, TransientKind,
};
use crate::secret::{percent_encode, Secret};

pub struct Vworld;
pub static VWORLD: Vworld = Vworld;

static INFO: ProviderInfo = ProviderInfo {
    name: "vworld",
    title: "VWorld",
    default_base_url: Some("https://api.vworld.kr"),
    base_url_env: Some("GEOBATCH_VWORLD_BASE_URL"),
    key_env: Some("VWORLD_API_KEY"),
    needs_key: true,
    // Its terms forbid storing its results.
    may_cache: false,
    address_kinds: &[AddressKind::Road, AddressKind::Parcel],
    geocodes: true,
    ..ProviderInfo::DEFAULT
};

impl ProviderSpec for Vworld {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }
    fn endpoint(&self, setup: EndpointSetup<'_>) -> Result<Box<dyn Endpoint>, ConfigError> {
        let key = setup.key.ok_or(ConfigError::MissingKey(self.name()))?;
        Ok(Box::new(VworldEndpoint {
            base: setup.base_url,
            key,
        }))
    }
}

#[derive(Debug)]
struct VworldEndpoint {
    base: String,
    key: Secret,
}

impl Endpoint for VworldEndpoint {
    fn request(&self, query: &Query<'_>) -> Option<Request> {
        let key = percent_encode(self.key.expose());
        let url = match *query {
            Query::Point { lon, lat } => format!(
                "{}/req/address?service=address&request=getAddress&version=2.0\
                 &crs=epsg:4326&point={},{}&format=json&type=both&key={key}",
                self.base,
                coord(lon),
                coord(lat),
            ),
            Query::Address { text, kind } => format!(
                "{}/req/address?service=address&request=getcoord&version=2.0\
                 &crs=epsg:4326&address={}&refine=true&simple=false&format=json&type={}\
                 &key={key}",
                self.base,
                percent_encode(text),
                coord_type(kind),
            ),
        };
        Some(Request {
            url,
            headers: vec![],
        })
    }

    fn parse(&self, query: &Query<'_>, status: u16, body: &[u8]) -> Result<Answer, AttemptError> {
        let v = json("vworld", status, body)?;
        match *query {
            Query::Point { .. } => parse_get_address(&v, status),
            Query::Address { kind, .. } => parse_get_coord(&v, status, kind),
        }
    }

    fn error_code(&self, body: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        text(v.pointer("/response/error/code"))
    }
}

/// `getAddress` 2.0: `{"response":{"status":"OK"|"NOT_FOUND"|"ERROR", "result":[{"type":
/// "parcel"|"road","text":…,"structure":{…,"detail":…}}], "error":{"code":…,"text":…}}}`.
fn parse_get_address(v: &Value, status: u16) -> Result<Answer, AttemptError> {
    let response = v
        .get("response")
        .ok_or_else(|| unparseable("vworld", "response"))?;
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
            Ok(Answer::reverse(
                text(parcel.and_then(|r| r.get("text"))),
                text(road.and_then(|r| r.get("text"))),
                text(road.and_then(|r| r.pointer("/structure/detail")))
                    .or_else(|| text(parcel.and_then(|r| r.pointer("/structure/detail")))),
            ))
        }
        Some("NOT_FOUND") => Ok(Answer::NoResult),
        Some("ERROR") => Err(error(response, status)),
        _ => Err(unparseable("vworld", "status")),
    }
}

/// `getcoord`'s `type`: `ROAD` (도로명) unless a parcel (지번) address is asked for.
fn coord_type(kind: AddressKind) -> &'static str {
    match kind {
        AddressKind::Parcel => "PARCEL",
        AddressKind::Road | AddressKind::Any => "ROAD",
    }
}

/// `getcoord` 2.0: `{"response":{"status":"OK"|"NOT_FOUND"|"ERROR","refined":{"text":…,
/// "structure":{…,"level4L":…,"level5":…}},"result":{"crs":"EPSG:4326","point":{"x":"lon",
/// "y":"lat"}},"error":{"code":…,"text":…}}}`. One candidate at most; a refined address without
/// a number (`level5`) is region-level.
fn parse_get_coord(v: &Value, status: u16, kind: AddressKind) -> Result<Answer, AttemptError> {
    let response = v
        .get("response")
        .ok_or_else(|| unparseable("vworld", "response"))?;
    match response.get("status").and_then(Value::as_str) {
        Some("OK") => {
            let point = lon_lat(
                "vworld",
                response.pointer("/result/point/x"),
                response.pointer("/result/point/y"),
            )?;
            let numbered = response
                .pointer("/refined/structure")
                .is_none_or(|s| text(s.get("level5")).is_some());
            let match_type = match (numbered, kind) {
                (false, _) => MatchType::Region,
                (true, AddressKind::Parcel) => MatchType::Parcel,
                (true, _) => MatchType::Road,
            };
            let building = text(response.pointer("/refined/structure/detail"));
            Ok(geocoded(
                point,
                text(response.pointer("/refined/text")),
                building,
                match_type,
                1,
            ))
        }
        Some("NOT_FOUND") => Ok(Answer::NoResult),
        Some("ERROR") => Err(error(response, status)),
        _ => Err(unparseable("vworld", "status")),
    }
}

/// VWorld's `ERROR` status, classified by its code.
pub(super) fn error(response: &Value, status: u16) -> AttemptError {
    let code = text(response.pointer("/error/code")).unwrap_or_default();
    let message = text(response.pointer("/error/text")).unwrap_or_default();
    match code.as_str() {
        "INVALID_KEY" | "INCORRECT_KEY" | "UNAVAILABLE_KEY" | "UNREGISTERED_KEY" => {
            AttemptError::Permanent(LookupError::InvalidKey {
                provider: "vworld",
                status,
                code: Some(code),
                hint: None,
            })
        }
        "OVER_REQUEST_LIMIT" => AttemptError::Permanent(LookupError::QuotaExhausted {
            provider: "vworld",
            resets_at_ms: crate::lookup::next_utc_midnight_ms(),
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_results_and_error_codes() {
        let v = json!({"response": {"status": "OK", "result": [
            {"type": "parcel", "text": "서울특별시 중구 태평로1가 31", "structure": {"detail": ""}},
            {"type": "road", "text": "서울특별시 중구 세종대로 110 (태평로1가)",
             "structure": {"detail": "서울특별시청"}}]}});
        let Answer::Found(f) = parse_get_address(&v, 200).unwrap() else {
            panic!("expected an address")
        };
        assert_eq!(f.fields["address"], "서울특별시 중구 태평로1가 31");
        assert_eq!(f.fields["building_name"], "서울특별시청");
        let v = json!({"response": {"status": "NOT_FOUND"}});
        assert_eq!(parse_get_address(&v, 200).unwrap(), Answer::NoResult);
        let v = json!({"response": {"status": "ERROR",
            "error": {"level": "1", "code": "INVALID_KEY", "text": "등록되지 않은 인증키입니다."}}});
        assert!(matches!(
            parse_get_address(&v, 200),
            Err(AttemptError::Permanent(LookupError::InvalidKey { .. }))
        ));
        let v = json!({"response": {"status": "ERROR", "error": {"code": "SYSTEM_ERROR"}}});
        assert!(matches!(
            parse_get_address(&v, 200),
            Err(AttemptError::Transient { .. })
        ));
        let v = json!({"response": {"status": "ERROR", "error": {"code": "OVER_REQUEST_LIMIT"}}});
        assert!(matches!(
            parse_get_address(&v, 200),
            Err(AttemptError::Permanent(LookupError::QuotaExhausted { .. }))
        ));
        let v = json!({"response": {"status": "ERROR", "error": {"code": "INVALID_RANGE"}}});
        assert!(matches!(
            parse_get_address(&v, 200),
            Err(AttemptError::Permanent(LookupError::Rejected { .. }))
        ));
    }

    #[test]
    fn reads_getcoord_answers() {
        let v = json!({"response": {
            "service": {"name": "address", "version": "2.0", "operation": "getcoord", "time": "12(ms)"},
            "status": "OK",
            "input": {"type": "ROAD", "address": "서울특별시 중구 세종대로 110"},
            "refined": {"text": "서울특별시 중구 세종대로 110 (태평로1가)", "structure": {
                "level0": "대한민국", "level1": "서울특별시", "level2": "중구", "level3": "",
                "level4L": "세종대로", "level4LC": "", "level4A": "명동", "level4AC": "",
                "level5": "110", "detail": ""}},
            "result": {"crs": "EPSG:4326", "point": {"x": "126.978275264", "y": "37.566642192"}}}});
        let Answer::Found(f) = parse_get_coord(&v, 200, AddressKind::Road).unwrap() else {
            panic!("expected a match")
        };
        assert_eq!(f.point, Some((126.978275264, 37.566642192)));
        assert_eq!(f.match_type, Some(MatchType::Road));
        assert_eq!(f.candidates, 1);
        assert_eq!(
            f.fields["matched_address"],
            "서울특별시 중구 세종대로 110 (태평로1가)"
        );
        let Answer::Found(f) = parse_get_coord(&v, 200, AddressKind::Parcel).unwrap() else {
            panic!("expected a match")
        };
        assert_eq!(f.match_type, Some(MatchType::Parcel));
        // Refined to a region only (no number): never a building.
        let v = json!({"response": {"status": "OK",
            "refined": {"text": "서울특별시 강서구", "structure": {"level1": "서울특별시",
                "level2": "강서구", "level4L": "", "level5": ""}},
            "result": {"point": {"x": "126.84", "y": "37.55"}}}});
        let Answer::Found(f) = parse_get_coord(&v, 200, AddressKind::Road).unwrap() else {
            panic!("expected a match")
        };
        assert_eq!(f.match_type, Some(MatchType::Region));
        let v = json!({"response": {"status": "NOT_FOUND",
            "input": {"type": "ROAD", "address": "없는주소"}}});
        assert_eq!(
            parse_get_coord(&v, 200, AddressKind::Road).unwrap(),
            Answer::NoResult
        );
        let v = json!({"response": {"status": "ERROR",
            "error": {"level": "1", "code": "INCORRECT_KEY", "text": "인증키 정보가 올바르지 않습니다."}}});
        assert!(matches!(
            parse_get_coord(&v, 200, AddressKind::Road),
            Err(AttemptError::Permanent(LookupError::InvalidKey { .. }))
        ));
        let v = json!({"response": {"status": "OK", "result": {"point": {"x": "", "y": "37"}}}});
        assert!(parse_get_coord(&v, 200, AddressKind::Road).is_err());
    }

    #[test]
    fn getcoord_asks_road_then_parcel_and_is_never_cached() {
        assert!(!VWORLD.may_cache());
        assert_eq!(
            VWORLD.address_kinds(),
            &[AddressKind::Road, AddressKind::Parcel]
        );
        let e = VWORLD
            .endpoint(EndpointSetup {
                base_url: "http://h".into(),
                key: Some(Secret::new("K")),
                config: None,
            })
            .unwrap();
        let r = e
            .request(&Query::Address {
                text: "세종로 1-68",
                kind: AddressKind::Parcel,
            })
            .unwrap();
        assert_eq!(
            r.url,
            "http://h/req/address?service=address&request=getcoord&version=2.0&crs=epsg:4326\
             &address=%EC%84%B8%EC%A2%85%EB%A1%9C%201-68&refine=true&simple=false&format=json\
             &type=PARCEL&key=K"
        );
    }

    #[test]
    fn the_key_is_percent_encoded_in_the_query() {
        let e = VWORLD
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
        assert!(r.url.ends_with("&key=k%2F%201"), "{}", r.url);
        assert!(r.url.contains("point=127,37.5"));
        assert!(r.headers.is_empty());
    }
}
