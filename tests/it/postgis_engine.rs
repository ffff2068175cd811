//! The PostGIS engine against the builtin one, and what it refuses.

use geobatch::convert::crs::{Crs, Transform};
use geobatch::convert::{EngineError, JobPlan};
use geobatch::job::{Outcome, RowError, RowPoint, RowResult};
use sqlx::PgPool;

use crate::harness::*;

/// Pairs run through both engines: the Korean CRSs LOCALDATA and the registers use, both ways.
const PAIRS: [(u32, u32); 9] = [
    (5174, 4326),
    (2097, 4326),
    (5179, 4326),
    (5181, 4326),
    (4326, 5186),
    (4326, 5174),
    (5186, 5179),
    (5174, 5186),
    (5179, 2097),
];

/// A 50 x 45 grid of WGS 84 positions over South Korea (125.0..129.6 E, 33.1..38.6 N), land and
/// sea, plus the corners of the national extent the builtin engine accepts.
fn korea_grid() -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    for i in 0..50 {
        for j in 0..45 {
            points.push((125.0 + 4.6 * i as f64 / 49.0, 33.1 + 5.5 * j as f64 / 44.0));
        }
    }
    points.extend([(122.80, 28.70), (134.20, 40.20), (131.8694, 37.2417)]);
    points
}

fn crs(code: u32) -> Crs {
    Crs::from_code(&format!("EPSG:{code}")).unwrap()
}

fn point(r: &RowResult) -> (f64, f64) {
    match r.outcome.position() {
        Some(p) if !r.outcome.is_error() => p,
        _ => panic!("row {} is not a position: {:?}", r.seq, r.outcome),
    }
}

/// Distance in metres between two results in `target` (lon/lat degrees or projected metres).
fn metres(target: Crs, a: (f64, f64), b: (f64, f64)) -> f64 {
    if target.is_geographic() {
        let lat = a.1.to_radians();
        let dx = (a.0 - b.0) * 111_320.0 * lat.cos();
        let dy = (a.1 - b.1) * 110_950.0;
        dx.hypot(dy)
    } else {
        (a.0 - b.0).hypot(a.1 - b.1)
    }
}

async fn pool(db: &PgDb) -> PgPool {
    PgPool::connect(&db.url).await.expect("connect")
}

/// The same 2,253 positions through both engines for each pair: within 1 mm everywhere.
#[tokio::test]
async fn postgis_agrees_with_builtin_within_a_millimetre() {
    let db = PgDb::create().await;
    let pool = pool(&db).await;
    let grid = korea_grid();
    assert!(grid.len() >= 2000);
    let wgs84 = crs(4326);
    let mut report = Vec::new();
    let mut worst_overall: f64 = 0.0;
    for (from, to) in PAIRS {
        let to_source = Transform::new(wgs84, crs(from));
        let rows: Vec<RowPoint> = grid
            .iter()
            .enumerate()
            .map(|(i, &(lon, lat))| {
                let (x, y) = to_source.convert(lon, lat).unwrap();
                RowPoint {
                    seq: i as u64,
                    x,
                    y,
                }
            })
            .collect();
        let builtin = JobPlan::builtin(crs(from), crs(to))
            .convert(&rows)
            .await
            .unwrap();
        let plan = JobPlan::postgis(pool.clone(), from, to).await.unwrap();
        assert!(
            plan.description()
                .starts_with("PostGIS ST_Transform (PROJ "),
            "{}",
            plan.description()
        );
        let postgis = plan.convert(&rows).await.unwrap();
        assert_eq!(postgis.len(), rows.len());
        let (mut worst, mut at) = (0.0f64, 0);
        for (i, (b, p)) in builtin.iter().zip(&postgis).enumerate() {
            assert_eq!((b.seq, p.seq), (i as u64, i as u64), "input order");
            let d = metres(crs(to), point(b), point(p));
            if d > worst {
                (worst, at) = (d, i);
            }
        }
        worst_overall = worst_overall.max(worst);
        report.push(format!(
            "EPSG:{from} -> EPSG:{to}: worst {:.3e} m at lon {:.4}, lat {:.4} ({})",
            worst,
            grid[at].0,
            grid[at].1,
            plan.description()
        ));
    }
    let report = report.join("\n");
    eprintln!("builtin vs PostGIS over {} points:\n{report}", grid.len());
    assert!(
        worst_overall <= 0.001,
        "builtin and PostGIS differ by more than 1 mm:\n{report}"
    );
}

/// Unknown SRIDs are input errors naming the SRID; out-of-area positions (builtin check) and
/// points PostGIS refuses are error rows, their neighbours converted, the order kept; SRIDs
/// only PostGIS knows work; a database that fails is an error, never error rows.
#[tokio::test]
async fn postgis_refuses_what_it_must_and_knows_more_srids() {
    let db = PgDb::create().await;
    let pool = pool(&db).await;

    let e = JobPlan::postgis(pool.clone(), 999_999, 4326)
        .await
        .unwrap_err();
    assert!(matches!(e, EngineError::UnknownSrid(999_999)), "{e:?}");
    assert!(
        e.is_input_error() && e.to_string().contains("EPSG:999999"),
        "{e}"
    );
    let e = JobPlan::postgis(pool.clone(), 5174, 123_456)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("EPSG:123456"), "{e}");

    let row = |seq, x, y| RowPoint { seq, x, y };
    // Korean 1985: the builtin area check runs before PostGIS.
    let plan = JobPlan::postgis(pool.clone(), 5174, 4326).await.unwrap();
    let out = plan
        .convert(&[
            row(0, 198_000.0, 451_000.0),
            row(1, 1_500_000.0, 451_000.0),
            row(2, 205_000.0, 460_000.0),
        ])
        .await
        .unwrap();
    assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2]);
    let (lon, lat) = point(&out[0]);
    assert!((126.0..128.0).contains(&lon) && (37.0..38.0).contains(&lat));
    point(&out[2]);
    match &out[1].outcome {
        Outcome::Failed(RowError { reason, .. }) => assert!(reason.contains("outside"), "{reason}"),
        other => panic!("out of area became {other:?}"),
    }

    // Lambert-93, unknown to the builtin engine: Paris.
    let plan = JobPlan::postgis(pool.clone(), 2154, 4326).await.unwrap();
    assert!(
        plan.source().name.contains("Lambert-93"),
        "{:?}",
        plan.source()
    );
    assert!(!plan.source().geographic && plan.target().geographic);
    let out = plan
        .convert(&[row(5, 652_000.0, 6_862_000.0)])
        .await
        .unwrap();
    let (lon, lat) = point(&out[0]);
    assert!((lon - 2.3458).abs() < 1e-3 && (lat - 48.8562).abs() < 1e-3);

    // ETRS89-LAEA, also PostGIS only: a point PostGIS refuses fails alone.
    let plan = JobPlan::postgis(pool.clone(), 3035, 4326).await.unwrap();
    let mut rows: Vec<RowPoint> = (0..40)
        .map(|i| row(i, 4_321_000.0 + i as f64, 3_210_000.0))
        .collect();
    rows[17] = row(17, 1e30, 1e30);
    let out = plan.convert(&rows).await.unwrap();
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        if i == 17 {
            match &r.outcome {
                Outcome::Failed(RowError { reason, .. }) => {
                    assert!(reason.starts_with("PostGIS: transform"), "{reason}")
                }
                other => panic!("a refused point became {other:?}"),
            }
        } else {
            let (lon, lat) = point(r);
            assert!(
                (lon - 10.0).abs() < 0.1 && (lat - 52.0).abs() < 0.1,
                "{lon} {lat}"
            );
        }
    }

    // The database goes away: an error for the batch, not error rows.
    pool.close().await;
    let e = plan.convert(&rows[..3]).await.unwrap_err();
    assert!(matches!(e, EngineError::Database(_)), "{e:?}");
    assert!(!e.is_input_error());
}

/// `--engine postgis` without a PostgreSQL database is refused before the job starts.
#[test]
fn postgis_engine_without_a_database_is_an_input_error() {
    let dir = tempdir_sqlite();
    let out = dir.path().join("o.xlsx");
    let sample = samples().join("localdata_5174.csv");
    let (sample, out_s) = (sample.to_str().unwrap(), out.to_str().unwrap());
    let r = convert(
        &dir,
        &[
            sample,
            "--from",
            "EPSG:5174",
            "--engine",
            "postgis",
            "-o",
            out_s,
        ],
    );
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("DATABASE_URL"), "{}", r.stderr);
    assert!(r.stderr.contains("GEOBATCH_POSTGIS_URL"), "{}", r.stderr);
    assert!(!out.exists());

    let r = convert(&dir, &[sample, "--engine", "proj", "-o", out_s]);
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("\"proj\""), "{}", r.stderr);
}

/// PostGIS failing mid-job (here: its ST_Transform renamed away) is not the rows' fault: the
/// worker retries the batch, offsets uncommitted, and once PostGIS is back every row converts.
#[tokio::test]
async fn a_failing_postgis_is_retried_never_error_rows() {
    use sqlx::Executor;
    let db = PgDb::create().await;
    let mut conn = db.connect().await;
    conn.execute("ALTER FUNCTION ST_Transform(geometry, integer) RENAME TO st_transform_away")
        .await
        .unwrap();
    let dir = tempdir();
    let mut serve = Serve::start(&dir, &[("GEOBATCH_POSTGIS_URL", &db.url)]);
    let mut body = String::from("id,x,y\n");
    for i in 0..300 {
        body.push_str(&format!("{i},{},{}\n", 190_000 + i * 10, 440_000 + i * 10));
    }
    let (status, reply) = upload(
        &serve,
        &[("tm.csv", body.into_bytes())],
        &[("from", "EPSG:5174"), ("engine", "postgis")],
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_str().unwrap().to_string();
    serve.wait_for_log(
        "cannot convert the batch",
        std::time::Duration::from_secs(60),
    );
    let job = job_status(&serve, &id).await;
    assert_eq!(
        job["rows_done"], 0,
        "nothing stored while PostGIS fails: {job}"
    );

    conn.execute("ALTER FUNCTION st_transform_away(geometry, integer) RENAME TO ST_Transform")
        .await
        .unwrap();
    let job = wait_done(&serve, &id).await;
    assert_eq!(job["rows_done"], 300);
    assert_eq!(job["rows_failed"], 0, "{job}");
}
