//! A workbook's records, read on a thread of their own: the workbook readers borrow the open
//! workbook for as long as a sheet is read, so the thread owns both and hands records over a
//! bounded channel (memory stays bounded; the thread stops when the source is dropped).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::book::Book;
use super::{header, Kind};
use crate::intake::{InputRecord, IntakeError, Layout, RecordSource};
use crate::job::Cell;

/// Records handed over at a time.
const CHUNK: usize = 512;
/// Chunks waiting in the channel.
const CHUNKS_AHEAD: usize = 4;

type Chunk = Result<Vec<InputRecord>, IntakeError>;

pub(super) struct WorkbookSource {
    layout: Layout,
    rx: Receiver<Chunk>,
    buffer: VecDeque<InputRecord>,
    done: bool,
}

impl WorkbookSource {
    pub(super) fn start(path: &Path, label: &str, kind: Kind, layout: Layout) -> WorkbookSource {
        let (tx, rx) = sync_channel(CHUNKS_AHEAD);
        let (path, label, stored) = (path.to_path_buf(), label.to_string(), layout.clone());
        std::thread::Builder::new()
            .name("workbook-reader".into())
            .spawn(move || {
                if let Err(e) = read(&path, &label, kind, &stored, &tx) {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| tracing::error!("cannot start a workbook reader thread: {e}"))
            .ok();
        WorkbookSource {
            layout,
            rx,
            buffer: VecDeque::new(),
            done: false,
        }
    }
}

impl RecordSource for WorkbookSource {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn next_record(&mut self) -> Option<Result<InputRecord, IntakeError>> {
        loop {
            if let Some(record) = self.buffer.pop_front() {
                return Some(Ok(record));
            }
            if self.done {
                return None;
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => self.buffer.extend(chunk),
                Ok(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Err(_) => self.done = true,
            }
        }
    }
}

/// Reads every table of `layout` in order into `tx`; stops early when the receiver is gone.
fn read(
    path: &Path,
    label: &str,
    kind: Kind,
    layout: &Layout,
    tx: &SyncSender<Chunk>,
) -> Result<(), IntakeError> {
    let mut book = Book::open(path, kind).map_err(|p| p.into_error(label))?;
    let header_rows: Vec<u64> = layout
        .reader
        .get("header_rows")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let changed = |what: String| IntakeError::Changed {
        file: label.to_string(),
        what,
    };
    let names: Vec<String> = book.sheets().into_iter().map(|s| s.name).collect();
    for (t, table) in layout.tables.iter().enumerate() {
        if !names.contains(&table.name) {
            return Err(changed(format!(
                "it has no sheet {} any more",
                crate::job::quote_short(&table.name)
            )));
        }
        let rows = header_rows.get(t).copied().unwrap_or(1).clamp(1, 2);
        let first = table.header_line.saturating_sub(rows);
        let width = table.headers.len();
        let mut head: Vec<Vec<Cell>> = Vec::new();
        let mut checked = false;
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut gone = false;
        let mut problem = None;
        book.rows(&table.name, &mut |index, mut cells| {
            let line = u64::from(index) + 1;
            if line <= first {
                return true;
            }
            if line <= table.header_line {
                if line + rows > table.header_line {
                    head.push(cells);
                }
                return true;
            }
            if !checked {
                checked = true;
                if let Some(p) = header_problem(&head, &table.headers) {
                    problem = Some(p);
                    return false;
                }
            }
            if cells.len() < width {
                cells.resize(width, Cell::Empty);
            }
            chunk.push(InputRecord {
                table: t as u32,
                line,
                fields: cells,
            });
            if chunk.len() >= CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if tx.send(Ok(full)).is_err() {
                    gone = true;
                    return false;
                }
            }
            true
        })
        .map_err(|p| p.into_error(label))?;
        if gone {
            return Ok(());
        }
        if !checked {
            problem = header_problem(&head, &table.headers);
        }
        if let Some(what) = problem {
            return Err(changed(format!(
                "sheet {}: {what}",
                crate::job::quote_short(&table.name)
            )));
        }
        if !chunk.is_empty() && tx.send(Ok(chunk)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Why the header rows read now are not the ones found when the job was accepted.
fn header_problem(head: &[Vec<Cell>], stored: &[String]) -> Option<String> {
    let now = header::names_of(head);
    (now != stored).then(|| {
        format!(
            "the columns were: {}; now: {}",
            crate::intake::list(stored),
            crate::intake::list(&now)
        )
    })
}
