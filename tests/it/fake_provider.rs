//! A fake address provider on 127.0.0.1: answers the way Kakao Local (`coord2address`), VWorld
//! (`getAddress` 2.0) and Nominatim (`reverse`, jsonv2) do, plus a small JSON API for template
//! lookups, with addresses derived from the coordinates, and failures on demand.
//!
//! ```ignore
//! let fake = FakeProvider::start(Script::steps([Behavior::Status(500)])).await;
//! // point the lookup at fake.base_url with key fake_provider::KEY …
//! assert_eq!(fake.requests().len(), 2);
//! ```
//!
//! Every request is recorded (path, query, headers, receipt time) whatever it was answered.
//! A [`Script`] decides the answers: its steps are used one per request, in order, then its
//! `then` behaviour for every later request.
//!
//! Addresses: a point inside South Korea's box (lon 124–132, lat 33–39) answers the grid cell it
//! falls in (see [`place`]); a point outside has no address (the provider's "no result").

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The only key the fake accepts (Kakao `Authorization: KakaoAK <key>`, VWorld `key=`, the
/// template API's `X-Api-Key`).
pub const KEY: &str = "fake-key-0c7d1e5b9a";

/// How one request is answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Behavior {
    /// The address of the point (or no result outside the country).
    Answer,
    /// The provider's "no result", wherever the point is.
    Empty,
    /// This HTTP status, with the body the provider sends with it.
    Status(u16),
    /// 429, with this `Retry-After` header value if any.
    TooMany { retry_after: Option<String> },
    /// The connection is dropped (reset) without an answer.
    Reset,
    /// The answer, after this delay.
    Slow(Duration),
    /// The provider's refused-key answer, whatever key came.
    InvalidKey,
    /// HTTP 200 with a body that is not JSON.
    BadJson,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    pub steps: VecDeque<Behavior>,
    pub then: Behavior,
}

impl Script {
    /// Every request answered.
    pub fn ok() -> Script {
        Script::always(Behavior::Answer)
    }

    pub fn always(b: Behavior) -> Script {
        Script {
            steps: VecDeque::new(),
            then: b,
        }
    }

    /// These, one per request, then answers.
    pub fn steps(steps: impl IntoIterator<Item = Behavior>) -> Script {
        Script {
            steps: steps.into_iter().collect(),
            then: Behavior::Answer,
        }
    }

    pub fn then(mut self, b: Behavior) -> Script {
        self.then = b;
        self
    }

    pub fn next(&mut self) -> Behavior {
        self.steps.pop_front().unwrap_or_else(|| self.then.clone())
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// The decoded query parameters.
    pub params: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// When the handler got it.
    pub at: Instant,
    /// How it was answered.
    pub behavior: Behavior,
}

impl Recorded {
    /// A request as received, answered by `behavior`.
    pub fn new(
        uri: &Uri,
        params: &[(String, String)],
        headers: &HeaderMap,
        behavior: Behavior,
    ) -> Recorded {
        Recorded {
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
            params: params.to_vec(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect(),
            at: Instant::now(),
            behavior,
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The address the fake gives a point, if it gives one.
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    /// Parcel (지번) address.
    pub parcel: String,
    /// Road-name address; none for some cells.
    pub road: Option<String>,
    pub road_name: String,
    pub number: i64,
    pub building: Option<String>,
}

/// The grid cell (about 100 m) a point falls in, as an address; `None` outside South Korea's
/// box.
pub fn place(lon: f64, lat: f64) -> Option<Place> {
    if !(124.0..=132.0).contains(&lon) || !(33.0..=39.0).contains(&lat) {
        return None;
    }
    let ix = (lon * 1000.0).floor() as i64 % 1000;
    let iy = (lat * 1000.0).floor() as i64 % 1000;
    let dong = format!("격자{}동", ix % 100);
    let road_name = format!("격자로{ix}길");
    Some(Place {
        parcel: format!("가상시 격자구 {dong} {iy}"),
        road: ((ix + iy) % 7 != 0).then(|| format!("가상시 격자구 {road_name} {iy}")),
        road_name,
        number: iy,
        building: ((ix + iy) % 2 == 0).then(|| format!("격자빌딩 {ix}-{iy}")),
    })
}

struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<Recorded>>,
}

pub struct FakeProvider {
    /// `http://127.0.0.1:<port>`: the base URL of every provider the fake speaks.
    pub base_url: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    pub async fn start(script: Script) -> FakeProvider {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                ResettableListener(listener),
                app.into_make_service_with_connect_info::<Conn>(),
            )
            .await;
        });
        FakeProvider {
            base_url: format!("http://{addr}"),
            addr,
            shared,
            task,
        }
    }

    /// Replaces the script (pending steps included).
    pub fn set_script(&self, script: Script) {
        *self.shared.script.lock().unwrap() = script;
    }

    /// Every request so far, in order of receipt.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Requests whose path is `path`.
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }

    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    uri: Uri,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let at = Instant::now();
    let behavior = shared.script.lock().unwrap().next();
    let mut recorded = Recorded::new(&uri, &params, &headers, behavior.clone());
    recorded.at = at;
    shared.requests.lock().unwrap().push(recorded);
    if behavior == Behavior::Reset {
        conn.reset.store(true, Ordering::SeqCst);
        return (StatusCode::OK, "never sent").into_response();
    }
    if let Some(r) = crate::fake_geocoder::answer(&uri, &behavior, &params, &headers).await {
        return r;
    }
    let api = match uri.path() {
        "/v2/local/geo/coord2address.json" => Api::Kakao,
        "/req/address" => Api::Vworld,
        "/reverse" | "/reverse.php" => Api::Nominatim,
        "/custom/reverse" => Api::Custom,
        _ => return (StatusCode::NOT_FOUND, "no such API").into_response(),
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match behavior {
        Behavior::Answer => {}
        Behavior::Empty => return api.empty(),
        Behavior::Status(code) => return api.status(code, &uri),
        Behavior::TooMany { retry_after } => {
            let mut r = api.status(429, &uri);
            if let Some(v) = retry_after {
                r.headers_mut()
                    .insert("retry-after", v.parse().expect("header value"));
            }
            return r;
        }
        Behavior::Reset => unreachable!("reset above"),
        Behavior::Slow(d) => tokio::time::sleep(d).await,
        Behavior::InvalidKey => return api.invalid_key(),
        Behavior::BadJson => {
            return (
                StatusCode::OK,
                [("content-type", "application/json;charset=UTF-8")],
                "<html><body>maintenance</body></html>",
            )
                .into_response()
        }
    }
    // The answer proper: the provider's own checks first.
    let point = match api {
        Api::Kakao => {
            if header("authorization") != Some(&format!("KakaoAK {KEY}")) {
                return api.invalid_key();
            }
            coords(param("x"), param("y"))
        }
        Api::Vworld => {
            if param("key") != Some(KEY) {
                return api.invalid_key();
            }
            let mut it = param("point").unwrap_or("").split(',');
            coords(it.next(), it.next())
        }
        Api::Nominatim => {
            // The public instance blocks clients that do not say who they are.
            if header("user-agent").is_none_or(|ua| ua.trim().is_empty()) {
                return api.invalid_key();
            }
            if param("format") != Some("jsonv2") {
                return api.status(400, &uri);
            }
            coords(param("lon"), param("lat"))
        }
        Api::Custom => {
            if header("x-api-key") != Some(KEY) {
                return api.invalid_key();
            }
            coords(param("lng"), param("lat"))
        }
    };
    let Some((lon, lat)) = point else {
        return api.status(400, &uri);
    };
    match place(lon, lat) {
        Some(p) => api.found(lon, lat, &p),
        None => api.empty(),
    }
}

fn coords(x: Option<&str>, y: Option<&str>) -> Option<(f64, f64)> {
    let x: f64 = x?.trim().parse().ok()?;
    let y: f64 = y?.trim().parse().ok()?;
    (x.is_finite() && y.is_finite()).then_some((x, y))
}

#[derive(Clone, Copy, Debug)]
enum Api {
    Kakao,
    Vworld,
    Nominatim,
    Custom,
}

fn json_response(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        [("content-type", "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn vworld_service() -> Value {
    json!({"name": "address", "version": "2.0", "operation": "getAddress", "time": "4(ms)"})
}

impl Api {
    fn found(self, lon: f64, lat: f64, p: &Place) -> Response {
        let building = p.building.clone().unwrap_or_default();
        match self {
            Api::Kakao => json_response(
                200,
                json!({
                    "meta": {"total_count": 1},
                    "documents": [{
                        "road_address": p.road.as_ref().map(|road| json!({
                            "address_name": road,
                            "region_1depth_name": "가상시",
                            "region_2depth_name": "격자구",
                            "region_3depth_name": "",
                            "road_name": p.road_name,
                            "underground_yn": "N",
                            "main_building_no": p.number.to_string(),
                            "sub_building_no": "",
                            "building_name": building,
                            "zone_no": "04524"
                        })),
                        "address": {
                            "address_name": p.parcel,
                            "region_1depth_name": "가상시",
                            "region_2depth_name": "격자구",
                            "region_3depth_name": "격자동",
                            "mountain_yn": "N",
                            "main_address_no": p.number.to_string(),
                            "sub_address_no": "",
                            "zip_code": ""
                        }
                    }]
                }),
            ),
            Api::Vworld => {
                let structure = |l4: &str, detail: &str| {
                    json!({"level0": "대한민국", "level1": "가상시", "level2": "격자구",
                           "level3": "", "level4L": l4, "level4LC": "", "level4A": "격자동",
                           "level4AC": "", "level5": p.number.to_string(), "detail": detail})
                };
                let mut result = vec![json!({
                    "zipcode": "04524", "type": "parcel", "text": p.parcel,
                    "structure": structure("격자동", "")
                })];
                if let Some(road) = &p.road {
                    result.push(json!({
                        "zipcode": "04524", "type": "road", "text": road,
                        "structure": structure(&p.road_name, &building)
                    }));
                }
                json_response(
                    200,
                    json!({"response": {
                        "service": vworld_service(),
                        "status": "OK",
                        "input": {"point": {"x": lon.to_string(), "y": lat.to_string()},
                                  "crs": "epsg:4326", "type": "both"},
                        "result": result
                    }}),
                )
            }
            Api::Nominatim => {
                let mut address = serde_json::Map::new();
                if let Some(b) = &p.building {
                    address.insert("building".into(), json!(b));
                }
                address.insert("house_number".into(), json!(p.number.to_string()));
                address.insert("road".into(), json!(p.road_name));
                address.insert("quarter".into(), json!("격자동"));
                address.insert("city_district".into(), json!("격자구"));
                address.insert("city".into(), json!("가상시"));
                address.insert("ISO3166-2-lvl4".into(), json!("KR-11"));
                address.insert("postcode".into(), json!("04524"));
                address.insert("country".into(), json!("대한민국"));
                address.insert("country_code".into(), json!("kr"));
                let mut parts: Vec<String> = Vec::new();
                parts.extend(p.building.clone());
                parts.extend([
                    p.number.to_string(),
                    p.road_name.clone(),
                    "격자동".into(),
                    "격자구".into(),
                    "가상시".into(),
                    "04524".into(),
                    "대한민국".into(),
                ]);
                json_response(
                    200,
                    json!({
                        "place_id": 100000 + p.number,
                        "licence": "Data © OpenStreetMap contributors, ODbL 1.0. http://osm.org/copyright",
                        "osm_type": "way",
                        "osm_id": 200000 + p.number,
                        "lat": lat.to_string(),
                        "lon": lon.to_string(),
                        "category": if p.building.is_some() { "building" } else { "highway" },
                        "type": if p.building.is_some() { "yes" } else { "residential" },
                        "place_rank": 30,
                        "importance": 0.00001,
                        "addresstype": if p.building.is_some() { "building" } else { "road" },
                        "name": p.building.clone().unwrap_or_default(),
                        "display_name": parts.join(", "),
                        "address": address,
                        "boundingbox": [lat.to_string(), lat.to_string(), lon.to_string(), lon.to_string()]
                    }),
                )
            }
            Api::Custom => json_response(
                200,
                json!({"ok": true, "data": {"jibun": p.parcel, "road": p.road,
                                            "bldg": p.building}}),
            ),
        }
    }

    fn empty(self) -> Response {
        match self {
            Api::Kakao => json_response(200, json!({"meta": {"total_count": 0}, "documents": []})),
            Api::Vworld => json_response(
                200,
                json!({"response": {"service": vworld_service(), "status": "NOT_FOUND",
                                    "input": {"crs": "epsg:4326", "type": "both"}}}),
            ),
            Api::Nominatim => json_response(200, json!({"error": "Unable to geocode"})),
            Api::Custom => json_response(200, json!({"ok": true, "data": null})),
        }
    }

    fn invalid_key(self) -> Response {
        match self {
            Api::Kakao => json_response(
                401,
                json!({"errorType": "AccessDeniedError", "message": "cannot find appKey"}),
            ),
            // VWorld reports errors with HTTP 200.
            Api::Vworld => json_response(
                200,
                json!({"response": {"service": vworld_service(), "status": "ERROR",
                    "error": {"level": "1", "code": "INVALID_KEY",
                              "text": "등록되지 않은 인증키입니다."}}}),
            ),
            Api::Nominatim => (
                StatusCode::FORBIDDEN,
                "<html><body><h1>Access blocked</h1></body></html>",
            )
                .into_response(),
            Api::Custom => json_response(401, json!({"ok": false, "error": "bad api key"})),
        }
    }

    /// An error status with the provider's usual body. Bodies of 4xx answers echo the request
    /// (some servers do), which is how the tests check that echoed keys never reach errors.
    fn status(self, code: u16, uri: &Uri) -> Response {
        let message = match code {
            400 => format!("invalid request: {uri}"),
            429 => "API limit has been exceeded.".to_string(),
            _ => "internal server error".to_string(),
        };
        match self {
            Api::Kakao => json_response(
                code,
                json!({"errorType": match code {
                    400 => "InvalidArgument",
                    429 => "RequestThrottled",
                    _ => "InternalServerError",
                }, "message": message}),
            ),
            Api::Custom => json_response(code, json!({"ok": false, "error": message})),
            Api::Vworld | Api::Nominatim => (
                StatusCode::from_u16(code).expect("status"),
                [("content-type", "text/html")],
                format!("<html><body>{code}: {message}</body></html>"),
            )
                .into_response(),
        }
    }
}

/// A TCP listener whose connections the handler can reset.
struct ResettableListener(TcpListener);

/// What a handler knows of its connection.
#[derive(Clone, Debug)]
struct Conn {
    reset: Arc<AtomicBool>,
}

impl Connected<IncomingStream<'_, ResettableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let reset = Arc::new(AtomicBool::new(false));
                    return (
                        ResettableStream {
                            inner: stream,
                            reset: reset.clone(),
                        },
                        Conn { reset },
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr().map(|_| Conn {
            reset: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// Once its flag is set, the stream fails every read and write, and closes with a TCP reset.
struct ResettableStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl ResettableStream {
    fn check(&self) -> io::Result<()> {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "fake provider resets the connection",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
