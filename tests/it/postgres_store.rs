//! The result store in PostgreSQL (`DATABASE_URL`): the same behaviour as SQLite through the
//! store's API, and `geobatch convert` end to end with either engine.

use calamine::Data;
use geobatch::job::{Epsg, JobId, JobState, Layout, Outcome, RowError, RowResult, TableLayout};
use geobatch::options::JobOptions;
use geobatch::store::{JobFile, NewJob, NewSheet, ResultStore, StoreError, Stored, StoredResult};
use sqlx::Row;

use crate::harness::*;

fn ok(seq: u64, x: f64) -> RowResult {
    RowResult {
        seq,
        outcome: Outcome::point(x, -x),
    }
}

fn failed(seq: u64) -> RowResult {
    RowResult {
        seq,
        outcome: Outcome::Failed(RowError {
            column: Some("x".into()),
            raw: Some("-".into()),
            reason: format!("row {seq}: not a number"),
        }),
    }
}

/// Everything the pipeline asks of a store, with the answers it relies on.
fn layout() -> Layout {
    Layout {
        format: "csv".into(),
        reader: serde_json::json!({"encoding": "UTF-8", "delimiter": 44}),
        tables: vec![TableLayout {
            name: "a".into(),
            headers: vec!["x".into(), "y".into()],
            header_line: 1,
            x: 0,
            y: 1,
            address: None,
        }],
    }
}

fn sheet<'a>(sheet_no: u32, name: &'a str, topic: &'a str) -> NewSheet<'a> {
    NewSheet {
        sheet_no,
        name,
        topic,
        file_no: 0,
        table_no: 0,
    }
}

async fn exercise(store: &ResultStore) {
    let files = [JobFile {
        file_no: 0,
        label: "a.csv".into(),
        path: "/nowhere/a.csv".into(),
        owned: true,
        layout: Some(layout()),
        rows: None,
    }];
    let (job_a, job_b) = (JobId::random(), JobId::random());
    let options = JobOptions {
        from: Some(Epsg::new(5174)),
        sheet_by: Some("시도".into()),
        ..JobOptions::default()
    };
    for id in [&job_a, &job_b] {
        store
            .create_job(&NewJob {
                id,
                label: "a.csv",
                options: &options,
                files: &files,
            })
            .await
            .unwrap();
    }
    store
        .set_plan(&job_a, Epsg::new(5174), "some operation")
        .await
        .unwrap();
    store
        .add_sheet(&job_a, &sheet(0, "a", "topic.a"))
        .await
        .unwrap();
    store
        .add_sheet(&job_a, &sheet(0, "again", "t"))
        .await
        .unwrap();
    store
        .add_sheet(&job_a, &sheet(1, "b", "topic.b"))
        .await
        .unwrap();
    store
        .set_state(&job_a, JobState::Publishing, None)
        .await
        .unwrap();

    // Sheet 0: 5,000 results (more than one insert statement), then a redelivery that overlaps.
    let first: Vec<RowResult> = (0..5000)
        .map(|s| {
            if s % 10 == 3 {
                failed(s)
            } else {
                ok(s, s as f64)
            }
        })
        .collect();
    assert_eq!(
        store.store_results(&job_a, 0, &first).await.unwrap(),
        Stored {
            ok: 4500,
            failed: 500
        }
    );
    let again: Vec<RowResult> = (4990..5010).map(|s| ok(s, 1e6)).collect();
    assert_eq!(
        store.store_results(&job_a, 0, &again).await.unwrap(),
        Stored { ok: 10, failed: 0 },
        "stored rows are left as they are"
    );
    assert_eq!(
        store
            .store_results(&job_a, 1, &[failed(6000)])
            .await
            .unwrap(),
        Stored { ok: 0, failed: 1 }
    );
    assert_eq!(
        store.store_results(&job_a, 1, &[]).await.unwrap(),
        Stored::default()
    );
    assert_eq!(
        store.resolved_seqs(&job_a, 4998, 5001).await.unwrap(),
        [4998, 4999, 5000, 5001]
    );
    assert_eq!(
        store.resolved_seqs_from(&job_a, 5008, 3).await.unwrap(),
        [5008, 5009, 6000]
    );
    assert!(store.resolved_jobs().await.unwrap().is_empty());
    store
        .finish_intake(&job_a, &[(0, 5011)], &[(0, 5010), (1, 1)])
        .await
        .unwrap();
    assert_eq!(
        store.resolved_jobs().await.unwrap(),
        std::slice::from_ref(&job_a)
    );

    let sheets = store.sheets(&job_a).await.unwrap();
    assert_eq!(sheets.len(), 2);
    assert_eq!(
        sheets[0].name, "a",
        "a re-added sheet keeps its first record"
    );
    assert_eq!(
        (
            sheets[0].rows_total,
            sheets[0].rows_ok,
            sheets[0].rows_failed
        ),
        (5010, 4510, 500)
    );
    assert_eq!(
        (
            sheets[1].rows_total,
            sheets[1].rows_ok,
            sheets[1].rows_failed
        ),
        (1, 0, 1)
    );

    let mut all: Vec<StoredResult> = Vec::new();
    let mut after = None;
    loop {
        let page = store.results_page(&job_a, after, 1234).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        all.extend(page);
    }
    assert_eq!(all.len(), 5011);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "input order");
    assert_eq!(all[4].outcome, Outcome::point(4.0, -4.0));
    assert_eq!(all[3].outcome, failed(3).outcome);
    assert_eq!(all[4995].outcome, Outcome::point(4995.0, -4995.0));
    assert_eq!(all[5005].outcome, Outcome::point(1e6, -1e6));
    assert_eq!((all[5010].seq, all[5010].sheet_no), (6000, 1));

    let job = store.job(&job_a).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.total_rows, Some(5011));
    assert_eq!(job.source_crs, Some(Epsg::new(5174)));
    assert_eq!(job.options, options, "options come back typed");
    assert_eq!(job.operation.as_deref(), Some("some operation"));
    assert!(job.published_ms.is_some());
    let files = store.files(&job_a).await.unwrap();
    assert_eq!(files[0].layout, Some(layout()));
    assert_eq!((files[0].rows, files[0].owned), (Some(5011), true));

    store
        .set_state(&job_a, JobState::Failed, Some("why"))
        .await
        .unwrap();
    store.set_output(&job_a, "/out.xlsx").await.unwrap();
    let job = store.job(&job_a).await.unwrap().unwrap();
    assert_eq!(job.message.as_deref(), Some("why"));
    assert_eq!(job.output_path.as_deref(), Some("/out.xlsx"));
    assert!(job.finished_ms.is_some());
    let unfinished: Vec<JobId> = store
        .unfinished_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(unfinished, std::slice::from_ref(&job_b));
    assert_eq!(store.jobs().await.unwrap().len(), 2);

    assert!(store.delete_job(&job_a).await.unwrap());
    assert!(!store.delete_job(&job_a).await.unwrap());
    assert!(store.job(&job_a).await.unwrap().is_none());
    assert!(store.files(&job_a).await.unwrap().is_empty());
    assert!(store.sheets(&job_a).await.unwrap().is_empty());
    assert!(store
        .results_page(&job_a, None, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn store_api_behaves_the_same_on_sqlite_and_postgres() {
    let dir = tempdir();
    let sqlite = ResultStore::open(dir.path(), None).await.unwrap();
    assert_eq!(sqlite.backend_name(), "SQLite");
    exercise(&sqlite).await;

    let db = PgDb::create().await;
    let pg = ResultStore::open(dir.path(), Some(&db.url)).await.unwrap();
    assert_eq!(pg.backend_name(), "PostgreSQL");
    exercise(&pg).await;
    // Opening again (another process starting) finds the migrated schema.
    ResultStore::open(dir.path(), Some(&db.url)).await.unwrap();

    let e = ResultStore::open(dir.path(), Some("mysql://u:secret@h/db"))
        .await
        .err()
        .expect("not a postgres URL");
    assert!(e.to_string().contains("postgres://"), "{e}");
    assert!(!e.to_string().contains("secret"), "{e}");
}

/// What is stored is read back typed; a value that does not read is the store's corruption,
/// named, not a panic and not a wrong value.
#[tokio::test]
async fn corrupt_stored_options_are_reported_as_corruption() {
    async fn corrupt(store: &ResultStore, run: impl AsyncFnOnce(&str)) {
        let id = JobId::random();
        store
            .create_job(&NewJob {
                id: &id,
                label: "a.csv",
                options: &JobOptions::default(),
                files: &[],
            })
            .await
            .unwrap();
        run(id.as_str()).await;
        match store.job(&id).await {
            Err(StoreError::Corrupt(what)) => assert!(what.contains("options"), "{what}"),
            other => panic!("{other:?}"),
        }
    }
    let dir = tempdir_sqlite();
    let sqlite = ResultStore::open(dir.path(), None).await.unwrap();
    let file = dir.path().join("geobatch.db");
    corrupt(&sqlite, async |id| {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE jobs SET options = '{\"from\": 5174' WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
    let db = PgDb::create().await;
    let pg = ResultStore::open(dir.path(), Some(&db.url)).await.unwrap();
    corrupt(&pg, async |id| {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE jobs SET options = '{\"engine\": \"proj\"}' WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
}

/// `geobatch convert` on the LOCALDATA sample with `DATABASE_URL` set: the workbook checked cell
/// by cell, and every row's result in PostgreSQL matching it.
async fn convert_into_postgres(engine: &str, tolerance: f64) -> Book {
    let db = PgDb::create().await;
    let dir = tempdir();
    let out = dir.path().join("out.xlsx");
    let sample = samples().join("localdata_5174.csv");
    let r = convert_env(
        &dir,
        &[("DATABASE_URL", &db.url)],
        &[
            sample.to_str().unwrap(),
            "--from",
            "EPSG:5174",
            "--engine",
            engine,
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("result store: PostgreSQL"),
        "{}",
        r.stderr
    );
    assert!(
        !dir.path().join("geobatch.db").exists(),
        "no SQLite store beside PostgreSQL"
    );
    let book = check_localdata_workbook(&out, tolerance);
    let sheet = book.sheet("localdata_5174");
    let n = sheet[0].len() - 4;

    let mut conn = db.connect().await;
    let job = sqlx::query("SELECT id, state, operation, options FROM jobs")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(job.len(), 1);
    assert_eq!(job[0].get::<String, _>("state"), "done");
    assert_eq!(
        job[0].get::<String, _>("operation"),
        book.summary_value("operation")
    );
    let stored = sqlx::query("SELECT seq, status, out_x, out_y FROM results ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.len(), sheet.len() - 1, "one stored result per row");
    for (row, cells) in stored.iter().zip(&sheet[1..]) {
        let seq: i64 = row.get("seq");
        let status: String = row.get("status");
        assert_eq!(status, text(&cells[n + 2]), "row {seq}");
        match (
            row.get::<Option<f64>, _>("out_x"),
            row.get::<Option<f64>, _>("out_y"),
        ) {
            (Some(x), Some(y)) => {
                assert!((x - num(&cells[n])).abs() < 1e-12, "row {seq}");
                assert!((y - num(&cells[n + 1])).abs() < 1e-12, "row {seq}");
            }
            _ => assert_eq!(cells[n], Data::Empty, "row {seq}"),
        }
    }
    book
}

#[tokio::test]
async fn convert_with_database_url_builtin_engine() {
    let book = convert_into_postgres("builtin", 1e-9).await;
    let operation = book.summary_value("operation");
    assert!(operation.contains("Molodensky-Badekas"), "{operation}");
}

/// PostGIS in the store's database; positions within 1e-8 degrees (about a millimetre) of the
/// builtin engine's.
#[tokio::test]
async fn convert_with_database_url_postgis_engine() {
    let book = convert_into_postgres("postgis", 1e-8).await;
    let operation = book.summary_value("operation");
    assert!(
        operation.starts_with("PostGIS ST_Transform (PROJ ") && operation.ends_with(')'),
        "{operation}"
    );
    assert_eq!(book.summary_value("option engine"), "postgis");
}

/// `GEOBATCH_POSTGIS_URL` with the SQLite store; a CRS only PostGIS knows (Lambert-93) is
/// accepted, an SRID PostGIS does not know is refused naming it.
#[tokio::test]
async fn postgis_url_beside_sqlite_knows_more_srids() {
    let db = PgDb::create().await;
    let dir = tempdir_sqlite();
    let input = dir.path().join("paris.csv");
    std::fs::write(
        &input,
        "name,x,y\nnotre-dame,652000,6862000\nbad,-,6862000\n",
    )
    .unwrap();
    let out = dir.path().join("paris.xlsx");
    let env = [("GEOBATCH_POSTGIS_URL", db.url.as_str())];
    let (input, out_s) = (input.to_str().unwrap(), out.to_str().unwrap());
    let run = |from: &str| {
        let args = [input, "--from", from, "--engine", "postgis", "-o", out_s];
        convert_env(&dir, &env, &args)
    };
    let r = run("EPSG:999999");
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("EPSG:999999"), "{}", r.stderr);

    let r = run("EPSG:2154");
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(
        dir.path().join("geobatch.db").exists(),
        "the store is SQLite"
    );
    let book = Book::open(&out);
    let sheet = book.sheet("paris");
    let header: Vec<String> = sheet[0].iter().map(text).collect();
    assert_eq!(header, ["name", "x", "y", "lon", "lat", "status", "error"]);
    assert!((num(&sheet[1][3]) - 2.3458).abs() < 1e-3);
    assert!((num(&sheet[1][4]) - 48.8562).abs() < 1e-3);
    assert_eq!(text(&sheet[2][5]), "error");
    assert!(
        book.summary_value("source CRS").contains("Lambert-93"),
        "{}",
        book.summary_value("source CRS")
    );
}
