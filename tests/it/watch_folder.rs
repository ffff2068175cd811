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
