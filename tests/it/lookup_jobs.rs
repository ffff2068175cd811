//! Address lookup as part of a job: options, keys, and the pipeline end to end.

use crate::harness::{convert, convert_env, samples, tempdir, upload, Serve};

fn lonlat_csv() -> std::path::PathBuf {
    samples().join("stores_wgs84.csv")
}

#[test]
fn a_lookup_without_its_key_is_refused_naming_the_variable() {
    let dir = tempdir();
    let out = dir.path().join("out.xlsx");
    let input = lonlat_csv();
    let args = [
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--lookup",
        "kakao",
    ];
    let run = convert(&dir, &args);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("KAKAO_REST_API_KEY"), "{}", run.stderr);
    assert!(!out.exists());

    let run = convert(
        &dir,
        &[
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--rate",
            "5",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--rate needs --lookup"),
        "{}",
        run.stderr
    );

    // A key file stands in for the variable.
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "\n").unwrap();
    let run = convert_env(
        &dir,
        &[("GEOBATCH_LOOKUP_KEY_FILE", key_file.to_str().unwrap())],
        &args,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("GEOBATCH_LOOKUP_KEY_FILE"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn the_upload_form_takes_lookup_fields() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[]);
    let csv = std::fs::read(lonlat_csv()).unwrap();
    let (status, body) = upload(&serve, &[("a.csv", csv.clone())], &[("lookup", "vworld")]).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("VWORLD_API_KEY"), "{body}");
    let (status, body) = upload(&serve, &[("a.csv", csv.clone())], &[("lookup", "google")]).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("unknown lookup provider"),
        "{body}"
    );
    let (status, body) = upload(
        &serve,
        &[("a.csv", csv)],
        &[("lookup", "nominatim"), ("rate", "fast")],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("rate"), "{body}");
}
