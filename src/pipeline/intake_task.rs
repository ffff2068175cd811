//! A job's intake: reads every input row once more and publishes those that have no result
//! yet. The first run of a job and a re-driven one after a restart are the same code.
//!
//! Reading (decoding, parsing cells) runs on a blocking thread that hands rows over a bounded
//! channel; this task splits them into sheets, publishes their batches (a bounded number in
//! flight) and stores the rows that cannot become a point as error rows at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{counters, JobError, Pipeline};
use crate::backoff::Backoff;
use crate::bus::{Bus, BusError, RowBatch, SheetTopic};
use crate::intake::{self, BadCell, IntakeError, SheetSplitter};
use crate::job::{JobId, JobState, Layout, Outcome, RowAddress, RowError, RowPoint, RowResult};
use crate::store::{JobFile, NewSheet, ResultStore, StoreError};

/// Rows handed over from the reader thread at a time.
const CHUNK_ROWS: usize = 1024;
/// Row batches being sent at once; intake never runs further ahead of the broker.
const IN_FLIGHT_BATCHES: usize = 16;

/// One row as the reader hands it over.
struct ReadRow {
    file_no: u32,
    table: u32,
    /// The `sheet_by` column's value.
    value: Option<String>,
    /// The position (a geocoding row's is 0,0 until its address is geocoded), or why not.
    point: Result<(f64, f64), BadCell>,
    /// Geocoding: the row's address.
    address: Option<RowAddress>,
}

enum Read {
    Rows(Vec<ReadRow>),
    FileDone { file_no: u32, rows: u64 },
}

impl Pipeline {
    pub(super) fn spawn_intake(self: &Arc<Self>, id: JobId) {
        let me = self.clone();
        self.tasks.spawn(async move {
            // A broker or a store that is away (restarting, unreachable, a full disk) delays
            // the job; it never fails it. Intake runs again from the start: rows with a result
            // are skipped, and workers skip rows stored from an earlier publication.
            let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
            let outcome = loop {
                let outcome = tokio::select! {
                    r = me.run_intake(&id) => r,
                    // The job stays as it is; the next start re-drives it.
                    _ = me.shutdown.cancelled() => return,
                };
                let wait = backoff.next_delay();
                let msg = match &outcome {
                    Err(JobError::Bus(e)) => format!(
                        "cannot publish the rows: {e}; trying again in {}s",
                        wait.as_secs().max(1)
                    ),
                    Err(JobError::Store(e)) => format!(
                        "cannot record the rows: {e}; trying again in {}s",
                        wait.as_secs().max(1)
                    ),
                    _ => break outcome,
                };
                if let Ok(None) = me.store.job(&id).await {
                    return; // deleted meanwhile
                }
                tracing::warn!(job = %id, "{msg}");
                let _ = me
                    .store
                    .set_state(&id, JobState::Publishing, Some(&msg))
                    .await;
                me.bump();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = me.shutdown.cancelled() => return,
                }
            };
            if let Err(e) = outcome {
                if matches!(e, JobError::ShuttingDown) {
                    return;
                }
                let msg = e.to_string();
                tracing::error!(job = %id, "{msg}");
                let _ = me.store.set_state(&id, JobState::Failed, Some(&msg)).await;
            }
            me.bump();
        });
    }

    async fn run_intake(&self, id: &JobId) -> Result<(), JobError> {
        // The broker is not recycled while rows are published into it.
        let _lease = self.bus_lease.read().await;
        let bus = self.bus().await.ok_or(JobError::ShuttingDown)?;
        let job = self.job(id).await?;
        let files = self.store.files(id).await?;
        let layouts: Vec<Layout> = files
            .iter()
            .map(|f| {
                f.layout.clone().ok_or_else(|| {
                    JobError::Io(std::io::Error::other(format!(
                        "{}: no layout stored with the job",
                        f.label
                    )))
                })
            })
            .collect::<Result<_, _>>()?;
        self.store
            .set_state(
                id,
                JobState::Publishing,
                skipped_note(&files, &layouts).as_deref(),
            )
            .await?;
        let tables: usize = layouts.iter().map(|l| l.tables.len()).sum();
        let mut splitter = SheetSplitter::new(
            job.options.sheet_by.clone(),
            tables > 1,
            self.settings.sheet_max_rows,
        );
        let sheet_by: Vec<Vec<Option<usize>>> = layouts
            .iter()
            .map(|l| l.tables.iter().map(|t| splitter.column_index(t)).collect())
            .collect();

        let (tx, mut rx) = mpsc::channel::<Result<Read, IntakeError>>(4);
        let reader = {
            let (files, layouts) = (files.clone(), layouts.clone());
            tokio::task::spawn_blocking(move || read_rows(&files, &layouts, &sheet_by, &tx))
        };

        let mut publisher = Publisher::new(self, &bus, id);
        let mut resolved = ResolvedSeqs::new(&self.store, id);
        let mut errors: HashMap<u32, Vec<RowResult>> = HashMap::new();
        let mut file_rows = Vec::new();
        let mut seq = 0u64;
        let batch_rows = self.settings.batch_rows.max(1);
        while let Some(read) = rx.recv().await {
            let rows = match read.map_err(|e| JobError::Input(e.into()))? {
                Read::Rows(rows) => rows,
                Read::FileDone { file_no, rows } => {
                    file_rows.push((file_no, rows));
                    continue;
                }
            };
            counters::add(&self.counters.rows_read, rows.len() as u64);
            for row in rows {
                let this = seq;
                seq += 1;
                let layout = &layouts[row.file_no as usize];
                let table_name = match layout.tables.get(row.table as usize) {
                    Some(t) if !t.name.is_empty() => t.name.clone(),
                    _ => stem(&files[row.file_no as usize].label),
                };
                let (sheet, new_sheet) =
                    splitter.sheet_for(row.file_no, row.table, &table_name, row.value.as_deref());
                if let Some(name) = new_sheet {
                    if sheet >= self.settings.max_sheets {
                        return Err(JobError::TooManySheets {
                            max: self.settings.max_sheets,
                        });
                    }
                    let topic = SheetTopic::new(id, sheet);
                    self.store
                        .add_sheet(
                            id,
                            &NewSheet {
                                sheet_no: sheet,
                                name: &name,
                                topic: &topic.name(),
                                file_no: row.file_no,
                                table_no: row.table,
                            },
                        )
                        .await?;
                }
                if resolved.contains(this).await? {
                    continue;
                }
                match row.point {
                    Ok((x, y)) => {
                        let point = RowPoint { seq: this, x, y };
                        publisher
                            .push(sheet, point, row.address, batch_rows)
                            .await?
                    }
                    Err(bad) => {
                        let list = errors.entry(sheet).or_default();
                        list.push(RowResult {
                            seq: this,
                            outcome: Outcome::Failed(RowError {
                                column: Some(bad.column),
                                raw: Some(bad.raw),
                                reason: bad.reason,
                            }),
                        });
                        if list.len() >= batch_rows {
                            let rows = std::mem::take(list);
                            self.store.store_results(id, sheet, &rows).await?;
                        }
                    }
                }
            }
        }
        reader
            .await
            .map_err(|e| JobError::Io(std::io::Error::other(e)))?;
        publisher.finish().await?;
        for (sheet, rows) in errors.into_iter().filter(|(_, r)| !r.is_empty()) {
            self.store.store_results(id, sheet, &rows).await?;
        }
        let sheet_rows = splitter.totals();
        self.store
            .finish_intake(id, &file_rows, &sheet_rows)
            .await?;
        tracing::info!(job = %id, rows = seq, sheets = sheet_rows.len(), "intake done");
        Ok(())
    }
}

/// Reads every file's records in order and hands them over; stops at the first error, or when
/// the receiver is gone (the intake was stopped).
fn read_rows(
    files: &[JobFile],
    layouts: &[Layout],
    sheet_by: &[Vec<Option<usize>>],
    tx: &mpsc::Sender<Result<Read, IntakeError>>,
) {
    for (file, layout) in files.iter().zip(layouts) {
        let mut source = match intake::reopen(Path::new(&file.path), &file.label, layout) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut rows = 0u64;
        let mut chunk = Vec::with_capacity(CHUNK_ROWS);
        while let Some(record) = source.next_record() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            rows += 1;
            let mut address = None;
            let (point, value) = match layout.tables.get(record.table as usize) {
                Some(table) => (
                    match table.address {
                        None => intake::point_of(&record, table),
                        Some(_) => intake::address_of(&record, table).map(|a| {
                            address = Some(a);
                            (0.0, 0.0)
                        }),
                    },
                    sheet_by[file.file_no as usize]
                        .get(record.table as usize)
                        .copied()
                        .flatten()
                        .and_then(|i| record.fields.get(i))
                        .map(|c| c.as_text().into_owned()),
                ),
                None => (
                    Err(BadCell {
                        column: String::new(),
                        raw: String::new(),
                        reason: format!("no table {} in the stored layout", record.table),
                    }),
                    None,
                ),
            };
            chunk.push(ReadRow {
                file_no: file.file_no,
                table: record.table,
                value,
                point,
                address,
            });
            if chunk.len() >= CHUNK_ROWS {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
                if tx.blocking_send(Ok(Read::Rows(full))).is_err() {
                    return;
                }
            }
        }
        if !chunk.is_empty() && tx.blocking_send(Ok(Read::Rows(chunk))).is_err() {
            return;
        }
        if tx
            .blocking_send(Ok(Read::FileDone {
                file_no: file.file_no,
                rows,
            }))
            .is_err()
        {
            return;
        }
    }
}

/// "Sheets skipped: a.xlsx "Notes" (hidden), …" when a workbook had sheets not read.
fn skipped_note(files: &[JobFile], layouts: &[Layout]) -> Option<String> {
    let skipped: Vec<String> = files
        .iter()
        .zip(layouts)
        .flat_map(|(f, l)| {
            intake::skipped_sheets(l)
                .into_iter()
                .map(move |s| format!("{} {s}", f.label))
        })
        .collect();
    (!skipped.is_empty()).then(|| format!("sheets skipped: {}", skipped.join(", ")))
}

fn stem(label: &str) -> String {
    Path::new(label)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| label.to_string())
}

/// Row batches per sheet, sent when full, at most [`IN_FLIGHT_BATCHES`] at once. A sheet's
/// topic is created with its first batch: a sheet whose rows all fit in the last batch gets
/// one partition, any other the configured number; a sheet of error rows only gets none.
struct Publisher<'a> {
    pipeline: &'a Pipeline,
    bus: &'a Arc<Bus>,
    job: &'a JobId,
    batches: HashMap<u32, Batch>,
    topics: HashSet<u32>,
    in_flight: JoinSet<Result<(), BusError>>,
}

impl<'a> Publisher<'a> {
    fn new(pipeline: &'a Pipeline, bus: &'a Arc<Bus>, job: &'a JobId) -> Self {
        Publisher {
            pipeline,
            bus,
            job,
            batches: HashMap::new(),
            topics: HashSet::new(),
            in_flight: JoinSet::new(),
        }
    }

    async fn push(
        &mut self,
        sheet: u32,
        row: RowPoint,
        address: Option<RowAddress>,
        batch_rows: usize,
    ) -> Result<(), JobError> {
        let batch = self.batches.entry(sheet).or_default();
        batch.rows.push(row);
        batch.addresses.extend(address);
        if batch.rows.len() >= batch_rows {
            let full = std::mem::take(batch);
            self.send(sheet, full, false).await?;
        }
        Ok(())
    }

    async fn send(&mut self, sheet: u32, batch: Batch, last: bool) -> Result<(), JobError> {
        let Batch { rows, addresses } = batch;
        if self.topics.insert(sheet) {
            let partitions = self.bus.partitions_for(last);
            self.bus
                .create_topic(&SheetTopic::new(self.job, sheet), partitions)
                .await?;
        }
        counters::add(&self.pipeline.counters.rows_published, rows.len() as u64);
        let (bus, topic) = (self.bus.clone(), SheetTopic::new(self.job, sheet));
        self.in_flight.spawn(async move {
            let batch = RowBatch {
                sheet,
                rows,
                addresses,
            };
            bus.publish(&topic, &batch).await
        });
        while self.in_flight.len() > IN_FLIGHT_BATCHES {
            self.join_one().await?;
        }
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), JobError> {
        match self.in_flight.join_next().await {
            Some(joined) => joined
                .map_err(|e| JobError::Io(std::io::Error::other(e)))?
                .map_err(Into::into),
            None => Ok(()),
        }
    }

    /// Sends what is left and waits until the broker has every batch.
    async fn finish(mut self) -> Result<(), JobError> {
        let left: Vec<(u32, Batch)> = self
            .batches
            .drain()
            .filter(|(_, b)| !b.rows.is_empty())
            .collect();
        for (sheet, rows) in left {
            self.send(sheet, rows, true).await?;
        }
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }
}

/// A sheet's rows waiting to be sent (with their addresses, for geocoding).
#[derive(Default)]
struct Batch {
    rows: Vec<RowPoint>,
    addresses: Vec<RowAddress>,
}

/// Pages through a job's resolved sequence numbers in order, alongside intake's reading.
struct ResolvedSeqs<'a> {
    store: &'a ResultStore,
    job: &'a JobId,
    page: VecDeque<u64>,
    exhausted: bool,
}

impl<'a> ResolvedSeqs<'a> {
    const PAGE: u32 = 100_000;

    fn new(store: &'a ResultStore, job: &'a JobId) -> Self {
        ResolvedSeqs {
            store,
            job,
            page: VecDeque::new(),
            exhausted: false,
        }
    }

    /// `seq` must not decrease between calls.
    async fn contains(&mut self, seq: u64) -> Result<bool, StoreError> {
        loop {
            while self.page.front().is_some_and(|&s| s < seq) {
                self.page.pop_front();
            }
            if let Some(&s) = self.page.front() {
                return Ok(s == seq);
            }
            if self.exhausted {
                return Ok(false);
            }
            let page = self
                .store
                .resolved_seqs_from(self.job, seq, Self::PAGE)
                .await?;
            self.exhausted = page.len() < Self::PAGE as usize;
            self.page.extend(page);
        }
    }
}
