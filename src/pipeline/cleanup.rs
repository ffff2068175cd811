//! What a killed process left behind, removed at start-up: an upload whose job was never
//! recorded (serve killed mid-upload) and `*.partial` workbooks (a merge killed, or a full
//! disk). Only what has not been touched for [`LEFTOVER_AGE`] is taken, so another process
//! sharing the data directory keeps what it is writing.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::job::JobId;
use crate::store::ResultStore;

/// How long a leftover must have been still before it is removed.
pub const LEFTOVER_AGE: Duration = Duration::from_secs(60);

/// Removes stale uploads without a job under `uploads/` and stale `*.partial` files under
/// `results/`; returns how many were removed. Problems are logged with their path, never fatal.
pub(super) async fn remove_leftovers(data_dir: &Path, store: &ResultStore) -> usize {
    let mut removed = 0;
    let uploads = data_dir.join("uploads");
    for (path, name) in entries(&uploads) {
        let Ok(id) = JobId::parse(&name) else {
            continue;
        };
        if !is_stale(&path) {
            continue;
        }
        match store.job(&id).await {
            Ok(None) => match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed an upload that has no job");
                    removed += 1;
                }
                Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
            },
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!("cannot check {}: {e}", path.display()),
        }
    }
    removed + remove_partials(&data_dir.join("results"))
}

/// Removes stale `*.partial` files directly in `dir`.
pub fn remove_partials(dir: &Path) -> usize {
    let mut removed = 0;
    for (path, name) in entries(dir) {
        if !name.ends_with(".partial") || !is_stale(&path) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a partial output");
                removed += 1;
            }
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
    removed
}

fn entries(dir: &Path) -> Vec<(std::path::PathBuf, String)> {
    match std::fs::read_dir(dir) {
        Ok(list) => list
            .flatten()
            .map(|e| (e.path(), e.file_name().to_string_lossy().into_owned()))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            tracing::warn!("cannot list {}: {e}", dir.display());
            Vec::new()
        }
    }
}

/// Neither the path nor anything directly in it modified for [`LEFTOVER_AGE`].
fn is_stale(path: &Path) -> bool {
    let old = |p: &Path| {
        std::fs::symlink_metadata(p)
            .and_then(|m| m.modified())
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() >= LEFTOVER_AGE)
            .unwrap_or(false)
    };
    old(path) && (!path.is_dir() || entries(path).iter().all(|(p, _)| old(p)))
}
