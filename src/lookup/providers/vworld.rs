//! VWorld: `getAddress` (point → parcel and road address). VWorld reports errors as HTTP 200
//! with status `ERROR`.

use serde_json::Value;

use super::{
    coord, json, text, unparseable, Answer, AttemptError, ConfigError, Endpoint, EndpointSetup,
    LookupError, ProviderInfo, ProviderSpec, Query, Request, TransientKind,
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
        match *query {
            Query::Point { lon, lat } => Some(Request {
                url: format!(
                    "{}/req/address?service=address&request=getAddress&version=2.0\
                     &crs=epsg:4326&point={},{}&format=json&type=both&key={}",
                    self.base,
                    coord(lon),
                    coord(lat),
                    percent_encode(self.key.expose())
                ),
                headers: vec![],
            }),
            Query::Address { .. } => None,
        }
    }

    fn parse(&self, _query: &Query<'_>, status: u16, body: &[u8]) -> Result<Answer, AttemptError> {
        parse_get_address(&json("vworld", status, body)?, status)
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
