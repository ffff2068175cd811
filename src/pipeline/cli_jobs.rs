//! `convert`'s jobs belong to the process that started them. The job reads a copy of its input
//! kept in the data directory (the user's file may change or go), a later `convert` of the same
//! input with the same options resumes it, and `serve` never touches it: it would write a path
//! the user gave another process, minutes later, from rows that may no longer be that file's.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{JobError, JobInput, Pipeline};
use crate::job::JobId;
use crate::options::JobOptions;

impl Pipeline {
    /// Starts a `convert` job, or resumes the one an earlier `convert` of the same input and
    /// options left unfinished (its stored rows are not converted again). Unfinished jobs of
    /// earlier runs for the same output with another input are discarded. Returns the job and
    /// whether it was resumed.
    pub async fn submit_owned(
        self: &Arc<Self>,
        files: &[PathBuf],
        mut options: JobOptions,
    ) -> Result<(JobId, bool), JobError> {
        options.input_digest = None;
        let digest = {
            let files = files.to_vec();
            let options = serde_json::to_vec(&options).map_err(std::io::Error::other)?;
            tokio::task::spawn_blocking(move || input_digest(&files, &options))
                .await
                .map_err(std::io::Error::other)??
        };
        options.input_digest = Some(digest.clone());
        let mut resumed = None;
        for job in self.store.unfinished_jobs().await? {
            let Some(earlier) = &job.options.input_digest else {
                continue;
            };
            if job.options.output != options.output {
                continue;
            }
            if *earlier == digest && resumed.is_none() {
                tracing::info!(job = %job.id, "resuming the job an earlier convert of this input left unfinished");
                resumed = Some(job.id.clone());
            } else {
                tracing::info!(job = %job.id, "discarding the unfinished job of an earlier convert: its input or options differ");
                self.delete_job(&job.id).await?;
            }
        }
        if let Some(id) = resumed {
            self.spawn_intake(id.clone());
            return Ok((id, true));
        }
        let id = JobId::random();
        let dir = self.upload_dir(&id);
        let copies = {
            let files = files.to_vec();
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || keep_copies(&files, &dir))
                .await
                .map_err(std::io::Error::other)??
        };
        match self.submit(Some(id), copies, options).await {
            Ok(id) => Ok((id, false)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> JobError {
    JobError::Io(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}

/// SHA-256 over every file's bytes (each with its length, so file boundaries count) and the
/// options as stored.
fn input_digest(files: &[PathBuf], options: &[u8]) -> Result<String, JobError> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    for path in files {
        let unreadable = |source| JobError::InputFile {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::File::open(path).map_err(unreadable)?;
        let mut len = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(unreadable)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            len += n as u64;
        }
        hash.update(len.to_le_bytes());
    }
    hash.update(options);
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Copies the inputs into the job's own directory; the job reads those copies, now and when
/// it is resumed.
fn keep_copies(files: &[PathBuf], dir: &Path) -> Result<Vec<JobInput>, JobError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "cannot create", e))?;
    files
        .iter()
        .enumerate()
        .map(|(n, path)| {
            let label = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string());
            // The extension is kept: it is how the reader for the format is chosen.
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .filter(|e| e.len() <= 16 && e.bytes().all(|b| b.is_ascii_alphanumeric()))
                .unwrap_or("input");
            let copy = dir.join(format!("{n}.{ext}"));
            std::fs::copy(path, &copy).map_err(|e| io_error(path, "cannot copy", e))?;
            Ok(JobInput {
                label,
                path: copy,
                owned: true,
            })
        })
        .collect()
}
