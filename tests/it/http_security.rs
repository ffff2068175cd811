//! The HTTP front door facing hostile or careless clients: tokens, exposure, operator
//! templates, bounded fields and requests, slow clients, and secrets kept out of `--help`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fake_provider::{FakeProvider, Script, KEY};
use crate::harness::{client, geobatch, samples, tempdir, wait_done, Serve};

const TOKEN: &str = "tok-7f3a9c1e5b";

async fn get(serve: &Serve, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = client().get(serve.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn a_token_guards_every_route_but_health_and_the_page() {
    let dir = tempdir();
    let serve = Serve::start(
        &dir,
        &[
            ("GEOBATCH_API_TOKEN", TOKEN),
            ("GEOBATCH_METRICS_TOKEN", "metrics-tok"),
        ],
    );
    for path in [
        "/jobs",
        "/options",
        "/jobs/0123456789abcdef0123456789abcdef",
    ] {
        let (status, body) = get(&serve, path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(v["error"].as_str().unwrap().contains("Bearer"), "{body}");
        assert_eq!(get(&serve, path, Some("wrong")).await.0, 401, "{path}");
    }
    assert_eq!(get(&serve, "/jobs", Some(TOKEN)).await.0, 200);
    assert_eq!(get(&serve, "/healthz", None).await.0, 200);
    // The page holds no data; it asks for the token and sends it with every request.
    let (status, page) = get(&serve, "/", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("/assets/app.js"), "{page}");
    let (status, api) = get(&serve, "/assets/api.js", None).await;
    assert_eq!(status, 200);
    assert!(api.contains("localStorage") && api.contains("Authorization"));
    let res = client()
        .post(serve.url("/jobs/preview"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        401,
        "the preview reads uploads: it needs the token"
    );
    assert_eq!(get(&serve, "/metrics", Some(TOKEN)).await.0, 401);
    assert_eq!(get(&serve, "/metrics", Some("metrics-tok")).await.0, 200);
    let res = client()
        .delete(serve.url("/jobs/0123456789abcdef0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn the_token_may_come_from_a_file() {
    let dir = tempdir();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let serve = Serve::start(&dir, &[("GEOBATCH_API_TOKEN_FILE", file.to_str().unwrap())]);
    assert_eq!(get(&serve, "/jobs", None).await.0, 401);
    assert_eq!(get(&serve, "/jobs", Some(TOKEN)).await.0, 200);
    // Without a metrics token of its own, /metrics takes the API token.
    assert_eq!(get(&serve, "/metrics", Some(TOKEN)).await.0, 200);
}

#[test]
fn serve_refuses_a_public_address_without_a_token() {
    let dir = tempdir();
    let out = geobatch(&dir)
        .arg("serve")
        .env("GEOBATCH_HTTP_ADDR", "0.0.0.0:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("GEOBATCH_API_TOKEN") && stderr.contains("--allow-anonymous"),
        "{stderr}"
    );
    let serve = Serve::start(
        &dir,
        &[
            ("GEOBATCH_HTTP_ADDR", "0.0.0.0:0"),
            ("GEOBATCH_ALLOW_ANONYMOUS", "true"),
        ],
    );
    drop(serve);
    let serve = Serve::start(
        &dir,
        &[
            ("GEOBATCH_HTTP_ADDR", "0.0.0.0:0"),
            ("GEOBATCH_API_TOKEN", TOKEN),
        ],
    );
    drop(serve);
}

#[tokio::test]
async fn a_malformed_job_id_touches_nothing_on_disk() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[]);
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let absolute = victim.to_str().unwrap().replace('/', "%2F");
    let relative = "..%2F..%2Fvictim";
    for id in [absolute.as_str(), relative, "..", "%2E%2E"] {
        for url in [format!("/jobs/{id}"), format!("/jobs/{id}/retry")] {
            let req = if url.ends_with("retry") {
                client().post(serve.url(&url))
            } else {
                client().delete(serve.url(&url))
            };
            let status = req.send().await.unwrap().status().as_u16();
            assert!(status == 404 || status == 405, "{url}: {status}");
        }
    }
    assert!(
        victim.is_dir(),
        "an empty directory named by a job id survives"
    );
}

fn templates_file(dir: &crate::harness::TestDir, body: &str) -> String {
    let path = dir.path().join("templates.json");
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

const TEMPLATES: &str = r#"{
  "jibun": {"url": "/custom/reverse?lng={lon}&lat={lat}",
            "headers": {"X-Api-Key": "{key}"}, "address": "/data/jibun"},
  "road":  {"url": "/custom/reverse?lng={lon}&lat={lat}",
            "headers": {"X-Api-Key": "{key}"}, "address": "/data/road"}
}"#;

fn points_csv() -> Vec<u8> {
    let mut csv = String::from("name,lon,lat\n");
    for i in 0..5 {
        csv.push_str(&format!(
            "p{i},{:.4},37.5005\n",
            126.9005 + i as f64 * 0.001
        ));
    }
    csv.into_bytes()
}

async fn address_column(serve: &Serve, id: &str, dir: &crate::harness::TestDir) -> Vec<String> {
    let book = crate::harness::download_book(serve, id, dir).await;
    let sheet = &book.sheets[0];
    let col = sheet[0]
        .iter()
        .position(|h| crate::harness::text(h) == "address")
        .expect("an address column");
    sheet[1..]
        .iter()
        .map(|r| crate::harness::text(&r[col]))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_pick_operator_templates_by_name_and_never_share_answers() {
    let fake = FakeProvider::start(Script::ok()).await;
    let dir = tempdir();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, KEY).unwrap();
    let templates = templates_file(&dir, TEMPLATES);
    let serve = Serve::start(
        &dir,
        &[
            ("GEOBATCH_LOOKUP_TEMPLATES", templates.as_str()),
            ("GEOBATCH_TEMPLATE_BASE_URL", fake.base_url.as_str()),
            ("GEOBATCH_LOOKUP_KEY_FILE", key_file.to_str().unwrap()),
        ],
    );
    let (_, options) = get(&serve, "/options", None).await;
    let options: serde_json::Value = serde_json::from_str(&options).unwrap();
    assert_eq!(options["templates"], serde_json::json!(["jibun", "road"]));
    let csv = points_csv();
    let files = [("p.csv", csv.clone())];
    // The free JSON template of old is refused on the form: no SSRF, no key to any host.
    let (status, body) = crate::harness::upload(
        &serve,
        &files,
        &[
            ("lookup", "template"),
            (
                "lookup_template",
                r#"{"url":"http://127.0.0.1:9/{lon}/{lat}/{key}","address":"/a"}"#,
            ),
        ],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "lookup_template", "{body}");
    let (status, body) = crate::harness::upload(&serve, &files, &[("template", "nope")]).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("jibun"), "{body}");

    let mut columns = Vec::new();
    for name in ["jibun", "road"] {
        let (status, body) = crate::harness::upload(&serve, &files, &[("template", name)]).await;
        assert_eq!(status, 202, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        let job = wait_done(&serve, &id).await;
        assert_eq!(job["state"], "done", "{job}");
        columns.push(address_column(&serve, &id, &dir).await);
    }
    assert!(columns[0].iter().all(|a| !a.is_empty()), "{columns:?}");
    assert_ne!(
        columns[0], columns[1],
        "the second template got the first one's answers"
    );
    assert!(fake
        .requests()
        .iter()
        .all(|r| r.header("x-api-key") == Some(KEY)));
}

#[test]
fn templates_that_are_not_http_are_refused_at_load_time() {
    let dir = tempdir();
    let templates = templates_file(
        &dir,
        r#"{"local": {"url": "file:///etc/passwd?{lon}{lat}", "address": "/a"}}"#,
    );
    let out = geobatch(&dir)
        .arg("serve")
        .env("GEOBATCH_HTTP_ADDR", "127.0.0.1:0")
        .env("GEOBATCH_LOOKUP_TEMPLATES", &templates)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("templates.json") && stderr.contains("http"),
        "{stderr}"
    );
    // convert with the user's own file:// template: refused at once (exit 2), no retry loop.
    let own = dir.path().join("own.json");
    std::fs::write(
        &own,
        r#"{"url": "file:///etc/passwd?{lon}{lat}", "address": "/a"}"#,
    )
    .unwrap();
    let run = crate::harness::convert(
        &dir,
        &[
            samples().join("stores_wgs84.csv").to_str().unwrap(),
            "-o",
            dir.path().join("o.xlsx").to_str().unwrap(),
            "--lookup",
            "template",
            "--lookup-template",
            own.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("http"), "{}", run.stderr);
}

/// Everything the server sends until it closes the connection (at most 60 s).
async fn raw_reply(stream: &mut TcpStream) -> String {
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).into_owned()
}

fn host(serve: &Serve) -> String {
    serve.base.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn a_huge_text_field_is_refused_while_streaming_with_a_short_reply() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[("GEOBATCH_MAX_UPLOAD_MB", "1")]);
    let mut stream = TcpStream::connect(host(&serve)).await.unwrap();
    let head =
        "POST /jobs HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=BND\r\n\
                transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let part = b"--BND\r\ncontent-disposition: form-data; name=\"from\"\r\n\r\n";
    let chunk = |data: &[u8]| {
        let mut c = format!("{:x}\r\n", data.len()).into_bytes();
        c.extend_from_slice(data);
        c.extend_from_slice(b"\r\n");
        c
    };
    stream.write_all(&chunk(part)).await.unwrap();
    let block = chunk(&vec![b'A'; 64 * 1024]);
    let mut sent: u64 = 0;
    // 200 MB, unless the server stops us first.
    while sent < 200 * 1024 * 1024 {
        if stream.write_all(&block).await.is_err() {
            break;
        }
        sent += block.len() as u64;
    }
    let reply = raw_reply(&mut stream).await;
    assert!(sent < 200 * 1024 * 1024, "the server read all 200 MB");
    assert!(
        reply.starts_with("HTTP/1.1 413") || reply.starts_with("HTTP/1.1 422"),
        "{reply:.300}"
    );
    assert!(reply.len() < 1000, "a short reply: {} bytes", reply.len());
}

#[tokio::test]
async fn fields_are_bounded_and_errors_are_json() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[]);
    let csv = std::fs::read(samples().join("stores_wgs84.csv")).unwrap();
    let long = "E".repeat(5000);
    let (status, body) =
        crate::harness::upload(&serve, &[("a.csv", csv.clone())], &[("from", &long)]).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "from", "{body}");
    assert!(body.to_string().len() < 400, "{body}");
    // Not multipart: a JSON error like the others.
    let res = client()
        .post(serve.url("/jobs"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let v: serde_json::Value = res.json().await.expect("a JSON error");
    assert!(v["error"].as_str().unwrap().contains("multipart"), "{v}");
    // A 300-character file name is stored shortened, shown bounded.
    let name = format!("{}.csv", "가".repeat(300));
    let (status, body) = crate::harness::upload(&serve, &[(&name, csv)], &[]).await;
    assert_eq!(status, 202, "{body}");
    let job = wait_done(&serve, body["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    assert!(
        job["label"].as_str().unwrap().chars().count() <= 300,
        "{job}"
    );
}

/// Reads until the server closes the connection; false when it stays open past `limit`.
async fn closed_within(stream: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut() {
    let dir = tempdir();
    let serve = Serve::start(
        &dir,
        &[
            ("GEOBATCH_HEADER_TIMEOUT_SECS", "1"),
            ("GEOBATCH_BODY_IDLE_TIMEOUT_SECS", "1"),
        ],
    );
    // One header byte a second (slowloris): cut, though it keeps sending.
    let mut slow = TcpStream::connect(host(&serve)).await.unwrap();
    let sender = {
        let (mut r, mut w) = slow.into_split();
        let sender = tokio::spawn(async move {
            for b in b"GET /healthz HTTP/1.1\r\nhost: x\r\n".iter().cycle() {
                if w.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        assert!(
            closed_within(&mut r, Duration::from_secs(20)).await,
            "a slowloris client still connected after 20 s"
        );
        sender
    };
    sender.abort();
    // An idle keep-alive connection is closed.
    slow = TcpStream::connect(host(&serve)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(20)).await);
    // A body that stalls is cut.
    let mut stalled = TcpStream::connect(host(&serve)).await.unwrap();
    stalled
        .write_all(
            b"POST /jobs HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=B\r\n\
              content-length: 100000\r\n\r\n--B\r\ncontent-disposition: form-data; name=\"file\"; \
              filename=\"a.csv\"\r\n\r\nx,y\n",
        )
        .await
        .unwrap();
    let reply = raw_reply(&mut stalled).await;
    assert!(reply.starts_with("HTTP/1.1 4"), "{reply:.300}");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_then_service_recovers() {
    let dir = tempdir();
    let serve = Serve::start(
        &dir,
        &[
            ("GEOBATCH_MAX_CONNECTIONS", "2"),
            ("GEOBATCH_HEADER_TIMEOUT_SECS", "2"),
        ],
    );
    let mut idle1 = TcpStream::connect(host(&serve)).await.unwrap();
    let mut idle2 = TcpStream::connect(host(&serve)).await.unwrap();
    let mut third = TcpStream::connect(host(&serve)).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = raw_reply(&mut third).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply:.300}");
    // The idle ones are cut by the header timeout; then the service answers again.
    assert!(closed_within(&mut idle1, Duration::from_secs(20)).await);
    assert!(closed_within(&mut idle2, Duration::from_secs(20)).await);
    assert_eq!(get(&serve, "/healthz", None).await.0, 200);
}

#[test]
fn help_shows_no_secret_values() {
    let dir = tempdir();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["convert", "--help"],
    ] {
        let out = geobatch(&dir)
            .args(args)
            .env("GEOBATCH_API_TOKEN", "SECRET-api")
            .env("GEOBATCH_METRICS_TOKEN", "SECRET-metrics")
            .env("GEOBATCH_KAFKA_CONFIG", "sasl.password=SECRET-kafka")
            .env("DATABASE_URL", "postgres://u:SECRET-db@h/db")
            .env("GEOBATCH_POSTGIS_URL", "postgres://u:SECRET-gis@h/db")
            .env("KAKAO_REST_API_KEY", "SECRET-kakao")
            .env("VWORLD_API_KEY", "SECRET-vworld")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        assert!(!text.contains("SECRET"), "{args:?} shows a secret:\n{text}");
    }
}

fn ctx() -> geobatch::options::OptionContext {
    geobatch::pipeline::Pipeline::option_context(geobatch::options::Origin::Form)
}

#[test]
fn a_form_picks_an_operator_template_by_name() {
    let mut c = ctx();
    let definition = serde_json::json!({"url": "https://h/r?x={lon}&y={lat}", "address": "/a"});
    c.templates = std::sync::Arc::new([("geo".to_string(), definition.clone())].into());
    let spec = |pairs: &[(&str, &str)]| {
        geobatch::options::JobSpec::from_fields(pairs.iter().copied()).unwrap()
    };
    let o = spec(&[("template", "geo")]).validate(&c).unwrap();
    assert_eq!(o.lookup.as_deref(), Some("template"));
    assert_eq!(o.lookup_template, Some(definition));
    let e = spec(&[("template", "nope")]).validate(&c).unwrap_err();
    assert_eq!(e.option, "template");
    assert!(e.message.contains("geo"), "{e}");
    let e = spec(&[("template", "geo"), ("lookup", "kakao")])
        .validate(&c)
        .unwrap_err();
    assert_eq!(e.option, "template");
    let e = spec(&[("template", "geo")]).validate(&ctx()).unwrap_err();
    assert!(e.message.contains("GEOBATCH_LOOKUP_TEMPLATES"), "{e}");
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_408() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[("GEOBATCH_REQUEST_TIMEOUT_SECS", "1")]);
    let mut stream = TcpStream::connect(host(&serve)).await.unwrap();
    stream
        .write_all(
            b"POST /jobs HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=B\r\n\
              content-length: 100000\r\nconnection: close\r\n\r\n--B\r\n\
              content-disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\nx,y\n",
        )
        .await
        .unwrap();
    // A byte now and then: never idle long enough for the body timeout, yet never done.
    let (mut r, mut w) = stream.into_split();
    let trickle = tokio::spawn(async move {
        while w.write_all(b"1").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut reply)).await;
    trickle.abort();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:.300}");
}
