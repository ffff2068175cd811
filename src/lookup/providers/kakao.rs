//! Kakao Local: `coord2address` (point → parcel and road address).

use serde_json::Value;

use super::{
    coord, json, text, unparseable, Answer, AttemptError, ConfigError, Endpoint, EndpointSetup,
    ProviderInfo, ProviderSpec, Query, Request,
};
use crate::secret::Secret;

pub struct Kakao;
pub static KAKAO: Kakao = Kakao;

static INFO: ProviderInfo = ProviderInfo {
    name: "kakao",
    title: "Kakao",
    default_base_url: Some("https://dapi.kakao.com"),
    base_url_env: Some("GEOBATCH_KAKAO_BASE_URL"),
    key_env: Some("KAKAO_REST_API_KEY"),
    needs_key: true,
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
        match *query {
            Query::Point { lon, lat } => Some(Request {
                url: format!(
                    "{}/v2/local/geo/coord2address.json?x={}&y={}",
                    self.base,
                    coord(lon),
                    coord(lat)
                ),
                headers: vec![(
                    "Authorization".into(),
                    format!("KakaoAK {}", self.key.expose()),
                )],
            }),
            Query::Address { .. } => None,
        }
    }

    fn parse(&self, _query: &Query<'_>, status: u16, body: &[u8]) -> Result<Answer, AttemptError> {
        parse_coord2address(&json("kakao", status, body)?)
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
