//! A `convert` job belongs to its process: `serve` on the same data directory never resumes it
//! (it would write the user's `-o` path from another process); the next `convert` of the same
//! input resumes it from its stored copy; a `convert` of changed input discards it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use geobatch::job::JobId;
use geobatch::store::ResultStore;

use crate::harness::*;

const ROWS: u64 = 200_000;

/// Starts `convert` (slow: small batches, one worker) and SIGKILLs it once some rows of its
/// job are stored; returns the job.
async fn killed_convert(dir: &TestDir, input: &Path, output: &Path) -> JobId {
    let args = [
        "convert",
        "--no-progress",
        input.to_str().unwrap(),
        "--from",
        "EPSG:5174",
        "-o",
        output.to_str().unwrap(),
    ];
    let slow = [("GEOBATCH_BATCH_ROWS", "50"), ("GEOBATCH_WORKERS", "1")];
    let mut convert = Serve::start_args(dir, &args, &slow);
    convert.wait_for_log("job accepted", Duration::from_secs(60));
    let store = ResultStore::open(dir.path(), dir.database_url())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let id = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no stored row in 120 s"
        );
        if let Some(job) = store.unfinished_jobs().await.unwrap().into_iter().next() {
            let stored: u64 = store
                .sheets(&job.id)
                .await
                .unwrap()
                .iter()
                .map(|s| s.rows_ok + s.rows_failed)
                .sum();
            if stored > 0 {
                break job.id;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    convert.kill();
    id
}

fn convert_to_end(dir: &TestDir, input: &Path, output: &Path) -> Output {
    convert(
        dir,
        &[
            input.to_str().unwrap(),
            "--from",
            "EPSG:5174",
            "-o",
            output.to_str().unwrap(),
        ],
    )
}

fn user_files(dir: &TestDir) -> (PathBuf, PathBuf) {
    // The user's files live outside the data directory.
    let home = dir.path().join("user");
    std::fs::create_dir_all(&home).unwrap();
    (home.join("big.csv"), home.join("big.xlsx"))
}

#[tokio::test]
async fn serve_leaves_a_convert_job_to_the_next_convert_of_the_same_input() {
    let dir = tempdir();
    let (input, output) = user_files(&dir);
    std::fs::write(&input, tm_rows_csv(ROWS)).unwrap();
    let id = killed_convert(&dir, &input, &output).await;

    let mut serve = Serve::start(&dir, &[]);
    serve.wait_for_log(
        "not resuming the unfinished job of a convert",
        Duration::from_secs(30),
    );
    let job = job_status(&serve, id.as_str()).await;
    assert_ne!(job["state"], "done", "{job}");
    drop(serve);
    assert!(!output.exists(), "serve wrote the convert's output path");

    let out = convert_to_end(&dir, &input, &output);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("resuming job {id}")),
        "{}",
        out.stderr
    );
    assert_rows_once_in_order(&Book::open(&output), "big", ROWS);
}

#[tokio::test]
async fn changed_input_discards_the_unfinished_convert_job() {
    let dir = tempdir();
    let (input, output) = user_files(&dir);
    std::fs::write(&input, tm_rows_csv(ROWS)).unwrap();
    let old = killed_convert(&dir, &input, &output).await;

    // The user edits the file: the old job's rows are not this file's any more.
    std::fs::write(&input, tm_rows_csv(1000)).unwrap();
    let out = convert_to_end(&dir, &input, &output);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("resuming job"), "{}", out.stderr);
    assert_rows_once_in_order(&Book::open(&output), "big", 1000);
    let store = ResultStore::open(dir.path(), dir.database_url())
        .await
        .unwrap();
    assert!(
        store.job(&old).await.unwrap().is_none(),
        "the old job is discarded"
    );
    assert!(
        !dir.path().join("uploads").join(old.as_str()).exists(),
        "its stored copy of the input too"
    );
}
