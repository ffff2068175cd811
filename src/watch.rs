//! The watched folder: a CSV or workbook (xlsx, xlsm, xls, ods) dropped into `inbox/` becomes
//! a job; its workbook appears in `outbox/`; the input moves to `done/`, or to `failed/`
//! beside a `<name>.error.txt`.
//!
//! A claimed file is renamed into `processing/<job>--<name>` before the job is submitted, so a
//! restart finds it there (with the job id in its name) instead of taking it as a new file.
//!
//! Taking a file is safe: only `*.csv` is taken (`*.csv.part`, `*.tmp` wait for their rename),
//! once its size and mtime held still for the quiet period; they are checked again when the
//! job ends, and a file that changed meanwhile goes back to `inbox/` (its job deleted). Each
//! job writes its own `outbox/` name (`a (2).xlsx` beside `a.xlsx`). Symlinks are never
//! followed: one in `inbox/` or `processing/` goes to `failed/` with its `.error.txt`, as does a
//! file that cannot be taken for any other reason.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::job::{JobId, JobState};
use crate::options::JobOptions;
use crate::pipeline::{JobInput, Pipeline};

/// Files the watched folder takes: CSV and workbooks.
const ACCEPTED_EXTENSIONS: [&str; 5] = ["csv", "xlsx", "xlsm", "xls", "ods"];

const POLL: Duration = Duration::from_millis(500);
/// Bytes of a file name kept in `processing/<job>--<name>` (names are at most 255 bytes).
const STORED_NAME_BYTES: usize = 180;

/// A file's size and modification time.
type Stamp = (u64, SystemTime);

struct Folders {
    inbox: PathBuf,
    processing: PathBuf,
    outbox: PathBuf,
    done: PathBuf,
    failed: PathBuf,
    /// How long a file's stamp must hold still before it is taken.
    quiet: Duration,
    /// `outbox/` names given to jobs of this process not yet written.
    reserved: Mutex<HashSet<PathBuf>>,
    /// Every file's job options (`GEOBATCH_WATCH_OPTIONS`), but its output.
    defaults: JobOptions,
}

impl Folders {
    fn new(root: &Path, quiet: Duration, defaults: JobOptions) -> std::io::Result<Folders> {
        let f = Folders {
            inbox: root.join("inbox"),
            processing: root.join("processing"),
            outbox: root.join("outbox"),
            done: root.join("done"),
            failed: root.join("failed"),
            quiet,
            reserved: Mutex::new(HashSet::new()),
            defaults,
        };
        for d in [&f.inbox, &f.processing, &f.outbox, &f.done, &f.failed] {
            std::fs::create_dir_all(d).map_err(|e| named(d, e))?;
        }
        Ok(f)
    }

    /// A fresh `outbox/` path for a workbook named after `name`, never one that exists (a
    /// symlink included) or that another job of this process was given.
    fn output_for(&self, name: &str) -> PathBuf {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let path = free_name_by(&self.outbox, &format!("{}.xlsx", stem(name)), |p| {
            reserved.contains(p)
        });
        reserved.insert(path.clone());
        path
    }
}

/// An IO error that names its path.
fn named(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Size and modification time, of the path itself (a symlink's own).
fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.len(), meta.modified()?))
}

/// Starts watching `root`; creates the folders first so a user sees where to drop files.
pub fn spawn(pipeline: Arc<Pipeline>, root: PathBuf, defaults: JobOptions) -> std::io::Result<()> {
    let quiet = Duration::from_millis(pipeline.settings().watch_quiet_ms);
    let folders = Arc::new(Folders::new(&root, quiet, defaults)?);
    tracing::info!(inbox = %folders.inbox.display(), "watching for CSV files");
    crate::pipeline::remove_partials(&folders.outbox);
    let token = pipeline.shutdown_token();
    pipeline.clone().spawn_task(async move {
        resume_claimed(&pipeline, &folders).await;
        let mut seen: HashMap<PathBuf, (Stamp, tokio::time::Instant)> = HashMap::new();
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
    seen: &mut HashMap<PathBuf, (Stamp, tokio::time::Instant)>,
) -> std::io::Result<()> {
    let mut present = Vec::new();
    let inbox = &folders.inbox;
    for entry in std::fs::read_dir(inbox).map_err(|e| named(inbox, e))? {
        let entry = entry.map_err(|e| named(inbox, e))?;
        let path = entry.path();
        let accepted = path.extension().is_some_and(|e| {
            ACCEPTED_EXTENSIONS
                .iter()
                .any(|a| e.eq_ignore_ascii_case(a))
        });
        let name = entry.file_name().to_string_lossy().into_owned();
        let file_type = entry.file_type().map_err(|e| named(&path, e))?;
        // Office's lock file of an open workbook ("~$stores.xlsx") is no input.
        if !accepted || name.starts_with('.') || name.starts_with("~$") || file_type.is_dir() {
            continue;
        }
        if file_type.is_symlink() {
            fail_untaken(
                folders,
                &name,
                &path,
                "a symbolic link; links are not followed",
            );
            continue;
        }
        if !file_type.is_file() {
            continue;
        }
        let now = stamp(&path).map_err(|e| named(&path, e))?;
        present.push(path.clone());
        let since = match seen.get(&path) {
            Some((s, since)) if *s == now => *since,
            _ => tokio::time::Instant::now(),
        };
        if since.elapsed() >= folders.quiet {
            seen.remove(&path);
            claim(pipeline, folders, &path, now).await;
        } else {
            seen.insert(path.clone(), (now, since));
        }
    }
    seen.retain(|p, _| present.contains(p));
    Ok(())
}

/// A file that cannot be taken: to `failed/` with its `.error.txt`, so it is not tried again
/// every poll.
fn fail_untaken(folders: &Folders, name: &str, path: &Path, reason: &str) {
    finish_failed(folders, name, path, &format!("not taken: {reason}"));
}

/// `name` cut to at most `max` bytes at a character boundary, keeping its extension.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let ext = Path::new(name)
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .filter(|e| e.len() < max / 2)
        .unwrap_or_default();
    let mut cut = max - ext.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &name[..cut])
}

async fn claim(pipeline: &Arc<Pipeline>, folders: &Arc<Folders>, path: &Path, taken: Stamp) {
    let full = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = shorten(&full, STORED_NAME_BYTES);
    let id = JobId::random();
    let claimed = folders.processing.join(format!("{id}--{name}"));
    if let Err(e) = std::fs::rename(path, &claimed) {
        fail_untaken(
            folders,
            &full,
            path,
            &format!("cannot move it to processing/: {e}"),
        );
        return;
    }
    tracing::info!(file = %name, job = %id, "picked up from the inbox");
    submit(pipeline, folders, id, name, claimed, Some(taken)).await;
}

async fn submit(
    pipeline: &Arc<Pipeline>,
    folders: &Arc<Folders>,
    id: JobId,
    name: String,
    claimed: PathBuf,
    taken: Option<Stamp>,
) {
    let options = JobOptions {
        output: Some(folders.output_for(&name)),
        ..folders.defaults.clone()
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
        Ok(_) => follow(pipeline.clone(), folders.clone(), id, name, claimed, taken),
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
    taken: Option<Stamp>,
) {
    let token = pipeline.shutdown_token();
    pipeline.clone().spawn_task(async move {
        let finished = tokio::select! {
            f = pipeline.wait_finished(&id) => f,
            // The file stays in processing/; the next start follows the job again.
            _ = token.cancelled() => return,
        };
        if let Some(out) = finished
            .as_ref()
            .ok()
            .and_then(|j| j.options.output.as_ref())
        {
            // Written (or never to be): the name guards itself from now on.
            let mut reserved = folders.reserved.lock().unwrap_or_else(|e| e.into_inner());
            reserved.remove(out);
        }
        if taken.is_some_and(|t| stamp(&claimed).ok() != Some(t)) {
            // Still being written when taken: the job read part of it. Discard the job and
            // its workbook; the file waits in inbox/ for its next quiet period.
            tracing::warn!(file = %name, job = %id, "changed while converted; taken again later");
            if let Ok(job) = &finished {
                if let Some(out) = &job.options.output {
                    let _ = std::fs::remove_file(out);
                }
            }
            if let Err(e) = pipeline.delete_job(&id).await {
                tracing::warn!(job = %id, "cannot delete the discarded job: {e}");
            }
            if let Err(e) = std::fs::rename(&claimed, free_name(&folders.inbox, &name)) {
                tracing::warn!(file = %name, "cannot put back into inbox/: {e}");
            }
            return;
        }
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
    // Short enough that `<name>.error.txt` can be stored beside it.
    let target = free_name(&folders.failed, &shorten(name, STORED_NAME_BYTES));
    if let Err(e) = std::fs::rename(claimed, &target) {
        tracing::warn!(file = %name, "cannot move to failed/: {}", named(&target, e));
    }
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
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            fail_untaken(
                folders,
                name,
                &claimed,
                "a symbolic link; links are not followed",
            );
            continue;
        }
        match pipeline.store().job(&id).await {
            Ok(Some(_)) => follow(
                pipeline.clone(),
                folders.clone(),
                id,
                name.to_string(),
                claimed,
                None,
            ),
            // Claimed but never recorded (a crash in between): submit it now.
            Ok(None) => submit(pipeline, folders, id, name.to_string(), claimed, None).await,
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
    free_name_by(dir, name, |_| false)
}

/// Like [`free_name`], also skipping names `taken` says are.
fn free_name_by(dir: &Path, name: &str, taken: impl Fn(&Path) -> bool) -> PathBuf {
    // A dangling symlink is a name in use too.
    let used = |p: &Path| std::fs::symlink_metadata(p).is_ok() || taken(p);
    let first = dir.join(name);
    if !used(&first) {
        return first;
    }
    let ext = Path::new(name)
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (2..)
        .map(|n| dir.join(format!("{} ({n}){ext}", stem(name))))
        .find(|p| !used(p))
        .expect("some name is free")
}
