//! The result store failing for a moment: a PostgreSQL connection terminated by the operator
//! while the workbook is written delays the job, it does not fail it.

use std::time::{Duration, Instant};

use sqlx::Executor;

use crate::harness::*;

#[tokio::test]
async fn merge_survives_pg_terminate_backend() {
    let db = PgDb::create().await;
    let dir = tempdir();
    let mut serve = Serve::start(&dir, &[("DATABASE_URL", &db.url)]);
    let rows = 200_000;
    let id = upload_tm_rows(&serve, "big", rows).await;
    wait_job(&serve, &id, Duration::from_secs(120), |j| {
        j["state"] == "merging"
    })
    .await;

    // Every connection of geobatch's, as an operator would, until the merger has met it.
    let mut admin = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .await
            .unwrap();
        if serve
            .logs()
            .iter()
            .any(|l| l.contains("cannot write the workbook yet"))
        {
            break;
        }
        let job = job_status(&serve, &id).await;
        assert_ne!(job["state"], "failed", "{job}");
        assert!(
            job["state"] != "done" && Instant::now() < deadline,
            "the merge ended before a connection was cut: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let job = wait_done(&serve, &id).await;
    assert_eq!(job["state"], "done", "{job}");
    let book = download_book(&serve, &id, &dir).await;
    assert_rows_once_in_order(&book, "big", rows);
}

/// A tmpfs mounted on a directory, unmounted when dropped (needs root, as CI has).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(path: std::path::PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir_all(&path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "mounting a small tmpfs needs root (CI runs as root)");
        SmallDisk(path)
    }

    fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {}", self.0.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn sqlite_store_recovers_when_a_full_disk_has_room_again() {
    let dir = tempdir_sqlite();
    let data = dir.path().join("small");
    let disk = SmallDisk::mount(data.clone(), "8m");
    // Most of it taken: the upload fits, its results do not.
    std::fs::write(data.join("filler"), vec![0u8; 5 << 20]).unwrap();
    let mut serve = Serve::start(
        &dir,
        &[
            ("GEOBATCH_DATA_DIR", data.to_str().unwrap()),
            ("GEOBATCH_BATCH_ROWS", "100"),
        ],
    );
    let rows = 60_000;
    let id = upload_tm_rows(&serve, "big", rows).await;
    // Several writes fail on the full disk (each leaves whatever state it leaves)…
    for _ in 0..10 {
        serve.wait_for_log_again("database or disk is full", Duration::from_secs(120));
    }
    // …then the space comes back.
    std::fs::remove_file(data.join("filler")).unwrap();
    disk.resize("128m");
    let job = wait_done(&serve, &id).await;
    assert_eq!(job["state"], "done", "{job}");
    let book = download_book(&serve, &id, &dir).await;
    assert_rows_once_in_order(&book, "big", rows);
}
