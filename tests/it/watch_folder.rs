//! The watched folder: inbox → outbox, done/ and failed/.

use std::time::Duration;

use crate::harness::*;

#[test]
fn dropped_csv_becomes_a_workbook_in_the_outbox() {
    let dir = tempdir();
    let watch = dir.path().join("watch");
    let _serve = Serve::start(&dir, &[("GEOBATCH_WATCH_DIR", watch.to_str().unwrap())]);
    let inbox = watch.join("inbox");
    assert!(inbox.is_dir(), "serve creates the inbox");

    // Written in two steps: the watcher must wait until the file is complete.
    let good = inbox.join("good.csv");
    std::fs::write(&good, "name,lon,lat\n").unwrap();
    std::fs::write(
        &good,
        "name,lon,lat\nA,127.1,37.2\nB,N/A,37.3\nC,129.0,35.1\n",
    )
    .unwrap();
    std::fs::write(inbox.join("bad.csv"), "only,columns\n1,2\n").unwrap();
    std::fs::write(inbox.join("notes.txt"), "not a csv").unwrap();

    let out = watch.join("outbox").join("good.xlsx");
    wait_path(
        &watch.join("done").join("good.csv"),
        Duration::from_secs(60),
    );
    let book = Book::open(&out);
    let sheet = book.sheet("good");
    let status: Vec<String> = sheet[1..].iter().map(|r| text(&r[5])).collect();
    assert_eq!(status, ["ok", "error", "ok"]);
    assert_eq!(text(&sheet[3][0]), "C");
    assert!(!good.exists());

    let reason_file = watch.join("failed").join("bad.csv.error.txt");
    wait_path(&reason_file, Duration::from_secs(30));
    assert!(watch.join("failed").join("bad.csv").exists());
    let reason = std::fs::read_to_string(reason_file).unwrap();
    assert!(
        reason.contains("no x/y columns") && reason.contains("\"only\""),
        "{reason}"
    );
    assert!(inbox.join("notes.txt").exists(), "only CSV files are taken");
    assert!(!watch.join("outbox").join("bad.xlsx").exists());
}

/// Taking a file is safe: `*.csv.part` waits for its rename, files with the same stem get
/// their own workbooks (and each job serves its own), symlinks are not followed, and a name too
/// long to store with a job id is taken under a shorter one.
#[test]
fn taking_files_is_safe() {
    let dir = tempdir();
    let watch = dir.path().join("watch");
    let serve = Serve::start(
        &dir,
        &[
            ("GEOBATCH_WATCH_DIR", watch.to_str().unwrap()),
            ("GEOBATCH_WATCH_QUIET_MS", "300"),
        ],
    );
    let inbox = watch.join("inbox");
    let (done, failed, outbox) = (
        watch.join("done"),
        watch.join("failed"),
        watch.join("outbox"),
    );
    wait_path(&inbox, Duration::from_secs(30));

    std::fs::write(inbox.join("big.csv.part"), "name,lon,lat\nP,127.0,37.0\n").unwrap();
    std::fs::write(inbox.join("dup.csv"), "name,lon,lat\nlower,127.1,37.2\n").unwrap();
    std::fs::write(inbox.join("dup.CSV"), "name,lon,lat\nupper,127.1,37.2\n").unwrap();
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "name,lon,lat\nsecret,127.1,37.2\n").unwrap();
    std::os::unix::fs::symlink(&secret, inbox.join("link.csv")).unwrap();
    let long = format!("{}.csv", "l".repeat(240));
    std::fs::write(inbox.join(&long), "name,lon,lat\nlong,127.1,37.2\n").unwrap();

    // Stored (with its job id) under a shortened name: 176 bytes and the extension.
    let stored = format!("{}.csv", "l".repeat(176));
    for name in ["dup.csv", "dup.CSV", stored.as_str()] {
        wait_path(&done.join(name), Duration::from_secs(60));
    }
    wait_path(&failed.join("link.csv.error.txt"), Duration::from_secs(30));
    let reason = std::fs::read_to_string(failed.join("link.csv.error.txt")).unwrap();
    assert!(reason.contains("symbolic link"), "{reason}");
    assert!(
        std::fs::symlink_metadata(failed.join("link.csv"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link itself is moved, its target untouched"
    );
    assert!(secret.exists());

    let names: Vec<String> = ["dup.xlsx", "dup (2).xlsx"]
        .iter()
        .map(|f| {
            let book = Book::open(&outbox.join(f));
            text(&book.sheet("dup")[1][0])
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["lower", "upper"], "one workbook each: {names:?}");
    let long_book = outbox.join(format!("{}.xlsx", "l".repeat(176)));
    assert!(long_book.exists());
    assert!(inbox.join("big.csv.part").exists(), "*.part is never taken");

    // Each job's result.xlsx serves its own workbook.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let jobs: serde_json::Value =
            serde_json::from_str(&get_text(&serve, "/jobs").await).expect("jobs list");
        let ids: Vec<String> = jobs
            .as_array()
            .or_else(|| jobs["jobs"].as_array())
            .expect("a list of jobs")
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect();
        let mut served = Vec::new();
        for id in ids {
            let book = download_book(&serve, &id, &dir).await;
            served.push(text(&book.sheets[0][1][0]));
        }
        served.sort();
        assert_eq!(served, ["long", "lower", "upper"]);
    });
}
