//! The watched folder: a CSV or workbook (xlsx, xlsm, xls, ods) dropped into `inbox/` becomes
//! a job; its workbook appears in `outbox/`; the input moves to `done/`, or to `failed/`
//! beside a `<name>.error.txt`.
//!
//! A claimed file is renamed into `processing/<job>--<name>` before the job is submitted, so a
//! restart finds it there (with the job id in its name) instead of taking it as a new file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::job::{JobId, JobState};
use crate::options::JobOptions;
use crate::pipeline::{JobInput, Pipeline};

/// Files the watched folder takes: CSV and workbooks.
const ACCEPTED_EXTENSIONS: [&str; 5] = ["csv", "xlsx", "xlsm", "xls", "ods"];

const POLL: Duration = Duration::from_millis(500);
/// A file is complete when its size and mtime held still across a poll and it is this old.
const SETTLE: Duration = Duration::from_secs(1);

struct Folders {
    inbox: PathBuf,
    processing: PathBuf,
    outbox: PathBuf,
    done: PathBuf,
    failed: PathBuf,
}

impl Folders {
    fn new(root: &Path) -> std::io::Result<Folders> {
        let f = Folders {
            inbox: root.join("inbox"),
            processing: root.join("processing"),
            outbox: root.join("outbox"),
            done: root.join("done"),
            failed: root.join("failed"),
        };
        for d in [&f.inbox, &f.processing, &f.outbox, &f.done, &f.failed] {
            std::fs::create_dir_all(d)?;
        }
        Ok(f)
    }
}

/// Starts watching `root`; creates the folders first so a user sees where to drop files.
pub fn spawn(pipeline: Arc<Pipeline>, root: PathBuf) -> std::io::Result<()> {
    let folders = Arc::new(Folders::new(&root)?);
    tracing::info!(inbox = %folders.inbox.display(), "watching for CSV files");
    let token = pipeline.shutdown_token();
    pipeline.clone().spawn_task(async move {
        resume_claimed(&pipeline, &folders).await;
        let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
        loop {
            if let Err(e) = poll_inbox(&pipeline, &folders, &mut seen).await {
                tracing::warn!("watched folder: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = token.cancelled() => return,
            }
        }
    });
    Ok(())
}

async fn poll_inbox(
    pipeline: &Arc<Pipeline>,
    folders: &Arc<Folders>,
    seen: &mut HashMap<PathBuf, (u64, SystemTime)>,
) -> std::io::Result<()> {
    let mut present = Vec::new();
    for entry in std::fs::read_dir(&folders.inbox)? {
        let entry = entry?;
        let path = entry.path();
        let accepted = path.extension().is_some_and(|e| {
            ACCEPTED_EXTENSIONS
                .iter()
                .any(|a| e.eq_ignore_ascii_case(a))
        });
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        // Office's lock file of an open workbook ("~$stores.xlsx") is no input.
        let lock = entry.file_name().to_string_lossy().starts_with("~$");
        if !accepted || hidden || lock || !entry.file_type()?.is_file() {
            continue;
        }
        let meta = entry.metadata()?;
        let stamp = (meta.len(), meta.modified()?);
        present.push(path.clone());
        let settled =
            seen.get(&path) == Some(&stamp) && stamp.1.elapsed().unwrap_or_default() >= SETTLE;
        seen.insert(path.clone(), stamp);
        if settled {
            seen.remove(&path);
            claim(pipeline, folders, &path).await;
        }
    }
    seen.retain(|p, _| present.contains(p));
    Ok(())
}

async fn claim(pipeline: &Arc<Pipeline>, folders: &Arc<Folders>, path: &Path) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = JobId::random();
    let claimed = folders.processing.join(format!("{id}--{name}"));
    if let Err(e) = std::fs::rename(path, &claimed) {
        tracing::warn!(file = %path.display(), "cannot claim: {e}");
        return;
    }
    tracing::info!(file = %name, job = %id, "picked up from the inbox");
    submit(pipeline, folders, id, name, claimed).await;
}

async fn submit(
    pipeline: &Arc<Pipeline>,
    folders: &Arc<Folders>,
    id: JobId,
    name: String,
    claimed: PathBuf,
) {
    let options = JobOptions {
        output: Some(folders.outbox.join(format!("{}.xlsx", stem(&name)))),
        ..JobOptions::default()
    };
    let input = JobInput {
        label: name.clone(),
        path: claimed.clone(),
        owned: false,
    };
    match pipeline
        .submit(Some(id.clone()), vec![input], options)
        .await
    {
        Ok(_) => follow(pipeline.clone(), folders.clone(), id, name, claimed),
        Err(e) => finish_failed(folders, &name, &claimed, &e.to_string()),
    }
}

/// Moves the CSV to `done/` or `failed/` once its job ends.
fn follow(
    pipeline: Arc<Pipeline>,
    folders: Arc<Folders>,
    id: JobId,
    name: String,
    claimed: PathBuf,
) {
    let token = pipeline.shutdown_token();
    pipeline.clone().spawn_task(async move {
        let finished = tokio::select! {
            f = pipeline.wait_finished(&id) => f,
            // The file stays in processing/; the next start follows the job again.
            _ = token.cancelled() => return,
        };
        match finished {
            Ok(job) if job.state == JobState::Done => {
                let target = free_name(&folders.done, &name);
                if let Err(e) = std::fs::rename(&claimed, &target) {
                    tracing::warn!(file = %name, "cannot move to done/: {e}");
                }
                tracing::info!(file = %name, job = %id, "workbook in outbox/");
            }
            Ok(job) => finish_failed(
                &folders,
                &name,
                &claimed,
                job.message.as_deref().unwrap_or("the job failed"),
            ),
            Err(e) => finish_failed(&folders, &name, &claimed, &e.to_string()),
        }
    });
}

fn finish_failed(folders: &Folders, name: &str, claimed: &Path, reason: &str) {
    tracing::warn!(file = %name, "failed: {reason}");
    let target = free_name(&folders.failed, name);
    let _ = std::fs::rename(claimed, &target);
    let note = target.with_file_name(format!(
        "{}.error.txt",
        target.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::write(note, format!("{reason}\n"));
}

/// After a restart: files already claimed belong to jobs the pipeline re-drives.
async fn resume_claimed(pipeline: &Arc<Pipeline>, folders: &Arc<Folders>) {
    let Ok(entries) = std::fs::read_dir(&folders.processing) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some((id, name)) = file.split_once("--") else {
            continue;
        };
        let Ok(id) = JobId::parse(id) else {
            continue;
        };
        let claimed = entry.path();
        match pipeline.store().job(&id).await {
            Ok(Some(_)) => follow(
                pipeline.clone(),
                folders.clone(),
                id,
                name.to_string(),
                claimed,
            ),
            // Claimed but never recorded (a crash in between): submit it now.
            Ok(None) => submit(pipeline, folders, id, name.to_string(), claimed).await,
            Err(e) => tracing::warn!("watched folder: {e}"),
        }
    }
}

fn stem(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

/// `dir/name`, or `dir/stem (2).csv` … when that is taken.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let ext = Path::new(name)
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (2..)
        .map(|n| dir.join(format!("{} ({n}){ext}", stem(name))))
        .find(|p| !p.exists())
        .expect("some name is free")
}
