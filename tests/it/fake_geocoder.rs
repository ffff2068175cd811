//! The fake provider's geocoding half ([`FakeProvider`] answers these paths through
//! [`answer`]): Kakao Local (`/v2/local/search/address.json`), VWorld
//! (`/req/address?request=getcoord`, 2.0) and Nominatim (`/search`, jsonv2), from a small
//! gazetteer ([`GAZETTEER`]), with the failures of [`Behavior`] on demand (the same [`Script`]).
//!
//! Which provider knows what is part of the gazetteer, so fallback can be tested: some
//! addresses only VWorld knows (as parcels), some are region-level everywhere, one has several
//! candidates at Kakao.

#![allow(dead_code)]

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub use crate::fake_provider::{Behavior, FakeProvider, Script, KEY};

/// Kakao's body for a key whose app has the Kakao Map service switched off.
pub const KAKAO_DISABLED: &str = r#"{"errorType":"AccessDeniedError","message":"App(geobatch-test) disabled OPEN_MAP_AND_LOCAL service."}"#;
/// Kakao's body for an unknown key.
pub const KAKAO_BAD_KEY: &str =
    r#"{"errorType":"AccessDeniedError","message":"cannot find appKey"}"#;

/// What the providers know of one (cleaned) address.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The text geobatch asks, cleaned.
    pub query: &'static str,
    pub lon: f64,
    pub lat: f64,
    /// The road (도로명) address, if it has one.
    pub road: Option<&'static str>,
    /// The parcel (지번) address.
    pub parcel: &'static str,
    pub building: &'static str,
    /// Kakao: `ROAD_ADDR`, `REGION_ADDR`, `REGION`, or "" (unknown to Kakao).
    pub kakao: &'static str,
    /// Kakao's candidates (the first is the entry; the others sit 0.1° east).
    pub kakao_candidates: u32,
    /// VWorld: "ROAD", "PARCEL", "REGION" (refined without a number), or "" (NOT_FOUND).
    pub vworld: &'static str,
    /// Nominatim's place rank (0: unknown).
    pub nominatim_rank: u64,
}

pub const GAZETTEER: [Entry; 6] = [
    Entry {
        query: "서울특별시 중구 세종대로 110",
        lon: 126.9779692,
        lat: 37.5662952,
        road: Some("서울특별시 중구 세종대로 110"),
        parcel: "서울특별시 중구 태평로1가 31",
        building: "서울특별시청",
        kakao: "ROAD_ADDR",
        kakao_candidates: 1,
        vworld: "ROAD",
        nominatim_rank: 30,
    },
    Entry {
        query: "서울 종로구 세종대로 175",
        lon: 126.9769,
        lat: 37.5725,
        road: Some("서울 종로구 세종대로 175"),
        parcel: "서울 종로구 세종로 1-68",
        building: "세종문화회관",
        kakao: "ROAD_ADDR",
        kakao_candidates: 1,
        vworld: "ROAD",
        nominatim_rank: 30,
    },
    Entry {
        query: "세종로 1-68",
        lon: 126.9765,
        lat: 37.5729,
        road: None,
        parcel: "서울 종로구 세종로 1-68",
        building: "",
        kakao: "REGION_ADDR",
        kakao_candidates: 1,
        vworld: "PARCEL",
        nominatim_rank: 0,
    },
    Entry {
        query: "광주 중앙로 1",
        lon: 127.2553,
        lat: 37.4095,
        road: Some("경기 광주시 중앙로 1"),
        parcel: "경기 광주시 송정동 1",
        building: "",
        kakao: "ROAD_ADDR",
        kakao_candidates: 2,
        vworld: "",
        nominatim_rank: 0,
    },
    Entry {
        query: "경기 양평군 서종면 수입리 산 12",
        lon: 127.3651,
        lat: 37.6098,
        road: None,
        parcel: "경기도 양평군 서종면 수입리 산12",
        building: "",
        kakao: "",
        kakao_candidates: 0,
        vworld: "PARCEL",
        nominatim_rank: 0,
    },
    Entry {
        query: "서울특별시 강서구",
        lon: 126.8495,
        lat: 37.5509,
        road: None,
        parcel: "서울특별시 강서구",
        building: "",
        kakao: "REGION",
        kakao_candidates: 1,
        vworld: "REGION",
        nominatim_rank: 14,
    },
];

pub fn entry(query: &str) -> Option<&'static Entry> {
    GAZETTEER.iter().find(|e| e.query == query)
}

pub const KAKAO_PATH: &str = "/v2/local/search/address.json";
pub const VWORLD_PATH: &str = "/req/address";
pub const NOMINATIM_PATH: &str = "/search";

/// The answer to a geocoding request (None: not one, the reverse fake answers it).
pub async fn answer(
    uri: &Uri,
    behavior: &Behavior,
    params: &[(String, String)],
    headers: &HeaderMap,
) -> Option<Response> {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let path = uri.path();
    let geocoding = path == KAKAO_PATH
        || path == NOMINATIM_PATH
        || (path == VWORLD_PATH && param("request") == Some("getcoord"));
    if !geocoding {
        return None;
    }
    Some(match behavior {
        Behavior::Answer => answer_proper(path, param, header),
        Behavior::Slow(d) => {
            tokio::time::sleep(*d).await;
            answer_proper(path, param, header)
        }
        Behavior::Empty => empty(path),
        Behavior::Status(403) if path == KAKAO_PATH => raw(403, KAKAO_DISABLED),
        Behavior::Status(code) => raw(
            *code,
            r#"{"errorType":"InternalServerError","message":"boom"}"#,
        ),
        Behavior::TooMany { retry_after } => {
            let mut r = raw(
                429,
                r#"{"errorType":"RequestThrottled","message":"API limit has been exceeded."}"#,
            );
            if let Some(v) = retry_after {
                r.headers_mut()
                    .insert("retry-after", v.parse().expect("header value"));
            }
            r
        }
        Behavior::InvalidKey => bad_key(path),
        Behavior::BadJson => raw(200, "<html>maintenance</html>"),
        Behavior::Reset => unreachable!("the fake resets the connection itself"),
    })
}

fn bad_key(path: &str) -> Response {
    match path {
        KAKAO_PATH => raw(401, KAKAO_BAD_KEY),
        VWORLD_PATH => vworld_error("INCORRECT_KEY", "인증키 정보가 올바르지 않습니다."),
        _ => raw(403, "<html>Access denied</html>"),
    }
}

/// The provider's own checks (key, parameters), then the gazetteer's answer.
fn answer_proper<'a>(
    path: &str,
    param: impl Fn(&str) -> Option<&'a str>,
    header: impl Fn(&str) -> Option<&'a str>,
) -> Response {
    match path {
        KAKAO_PATH => {
            if header("authorization") != Some(&format!("KakaoAK {KEY}")) {
                return bad_key(path);
            }
            kakao(param("query").unwrap_or(""))
        }
        VWORLD_PATH => {
            if param("key") != Some(KEY) {
                return bad_key(path);
            }
            if param("request") != Some("getcoord") || param("crs") != Some("epsg:4326") {
                return vworld_error("INVALID_REQUEST", "요청 파라미터가 올바르지 않습니다.");
            }
            vworld(param("address").unwrap_or(""), param("type").unwrap_or(""))
        }
        NOMINATIM_PATH => {
            if header("user-agent").is_none_or(|ua| ua.trim().is_empty()) {
                return raw(403, "<html>Access blocked</html>");
            }
            if param("format") != Some("jsonv2") || param("countrycodes") != Some("kr") {
                return raw(400, r#"{"error":{"code":400,"message":"bad request"}}"#);
            }
            nominatim(param("q").unwrap_or(""))
        }
        _ => raw(404, "no such API"),
    }
}

fn raw(status: u16, body: &str) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        [("content-type", "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn json_ok(body: Value) -> Response {
    raw(200, &body.to_string())
}

fn empty(path: &str) -> Response {
    match path {
        KAKAO_PATH => json_ok(json!({"meta": {"total_count": 0, "pageable_count": 0,
            "is_end": true}, "documents": []})),
        VWORLD_PATH => json_ok(json!({"response": {"service": vworld_service(),
            "status": "NOT_FOUND"}})),
        _ => json_ok(json!([])),
    }
}

fn vworld_service() -> Value {
    json!({"name": "address", "version": "2.0", "operation": "getcoord", "time": "9(ms)"})
}

fn vworld_error(code: &str, text: &str) -> Response {
    json_ok(
        json!({"response": {"service": vworld_service(), "status": "ERROR",
        "error": {"level": "1", "code": code, "text": text}}}),
    )
}

/// `가상시 격자구 격자로 N` (any N): a road address Kakao knows, at [`grid_point`].
pub fn grid_address(n: u64) -> String {
    format!("가상시 격자구 격자로 {n}")
}

pub fn grid_point(n: u64) -> (f64, f64) {
    (127.0 + n as f64 * 1e-4, 37.5)
}

fn kakao(query: &str) -> Response {
    if let Some(n) = query
        .strip_prefix("가상시 격자구 격자로 ")
        .and_then(|n| n.parse::<u64>().ok())
    {
        let (lon, lat) = grid_point(n);
        return json_ok(
            json!({"meta": {"total_count": 1, "pageable_count": 1, "is_end": true},
            "documents": [{"address_name": query, "address_type": "ROAD_ADDR",
                "x": lon.to_string(), "y": lat.to_string(),
                "address": {"address_name": format!("가상시 격자구 격자동 {n}")},
                "road_address": {"address_name": query, "building_name": ""}}]}),
        );
    }
    let Some(e) = entry(query).filter(|e| !e.kakao.is_empty()) else {
        return empty(KAKAO_PATH);
    };
    let doc = |lon: f64| {
        let road = (e.kakao == "ROAD_ADDR").then(|| {
            json!({"address_name": e.road.unwrap_or(e.query), "building_name": e.building,
                "region_1depth_name": "서울", "road_name": "세종대로", "underground_yn": "N",
                "main_building_no": "110", "sub_building_no": "", "zone_no": "04524",
                "x": lon.to_string(), "y": e.lat.to_string()})
        });
        json!({
            "address_name": if e.kakao == "ROAD_ADDR" { e.road.unwrap_or(e.query) } else { e.parcel },
            "address_type": e.kakao,
            "x": lon.to_string(),
            "y": e.lat.to_string(),
            "address": {"address_name": e.parcel, "b_code": "1114010300", "h_code": "1114055000",
                "main_address_no": "31", "mountain_yn": "N", "region_1depth_name": "서울",
                "x": lon.to_string(), "y": e.lat.to_string()},
            "road_address": road,
        })
    };
    let docs: Vec<Value> = (0..e.kakao_candidates)
        .map(|i| doc(e.lon + 0.1 * f64::from(i)))
        .collect();
    json_ok(json!({"meta": {"total_count": e.kakao_candidates,
        "pageable_count": e.kakao_candidates, "is_end": true}, "documents": docs}))
}

fn vworld(address: &str, kind: &str) -> Response {
    let Some(e) = entry(address) else {
        return empty(VWORLD_PATH);
    };
    let region = e.vworld == "REGION";
    if !(region || e.vworld == kind) {
        return empty(VWORLD_PATH);
    }
    let refined = if region {
        e.parcel
    } else if kind == "ROAD" {
        e.road.unwrap_or(e.query)
    } else {
        e.parcel
    };
    json_ok(json!({"response": {
        "service": vworld_service(),
        "status": "OK",
        "input": {"type": kind, "address": address},
        "refined": {"text": refined, "structure": {"level0": "대한민국", "level1": "서울특별시",
            "level2": "중구", "level3": "", "level4L": if region { "" } else { "세종대로" },
            "level4LC": "", "level4A": "", "level4AC": "",
            "level5": if region { "" } else { "110" }, "detail": e.building}},
        "result": {"crs": "EPSG:4326", "point": {"x": e.lon.to_string(), "y": e.lat.to_string()}}
    }}))
}

fn nominatim(q: &str) -> Response {
    let Some(e) = entry(q).filter(|e| e.nominatim_rank > 0) else {
        return empty(NOMINATIM_PATH);
    };
    let building = e.nominatim_rank >= 28;
    json_ok(json!([{
        "place_id": 1, "licence": "Data © OpenStreetMap contributors, ODbL 1.0.",
        "osm_type": "way", "osm_id": 1,
        "lat": e.lat.to_string(), "lon": e.lon.to_string(),
        "category": if building { "building" } else { "boundary" },
        "type": if building { "public" } else { "administrative" },
        "place_rank": e.nominatim_rank, "importance": 0.3,
        "addresstype": if building { "building" } else { "borough" },
        "name": e.building,
        "display_name": format!("{}, {}", e.building, e.road.unwrap_or(e.parcel)),
        "address": {"country": "대한민국", "country_code": "kr"}
    }]))
}
