//! CSV: UTF-8 with a BOM (so Excel reads Korean text right), one file per sheet: the input's
//! columns exactly as read (a ragged row is cut or padded to the header), then the new
//! columns. A job of several sheets gets a zip (deflate) of one `<sheet>.csv` each.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::{partial_path, unique_names, MergeError, MergedRow, OutValue, OutputPlan};
use super::{ResultWriter, Summary};

const BOM: &[u8] = b"\xEF\xBB\xBF";

pub(super) fn create(
    path: &Path,
    plan: &OutputPlan<'_>,
) -> Result<Box<dyn ResultWriter>, MergeError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| MergeError::io(dir, e))?;
    }
    let partial = partial_path(path);
    let zipped = plan.sheets.len() > 1;
    let names = unique_names(
        plan.sheets.iter().map(|s| entry_name(&s.name)),
        "sheet",
        Vec::new(),
    );
    let mut sheets = Vec::new();
    for (i, spec) in plan.sheets.iter().enumerate() {
        let file_path = match zipped {
            true => partial.with_extension(format!("partial.{i}.csv")),
            false => partial.clone(),
        };
        let mut file = BufWriter::with_capacity(
            1 << 16,
            File::create(&file_path).map_err(|e| MergeError::io(&file_path, e))?,
        );
        file.write_all(BOM)
            .map_err(|e| MergeError::io(&file_path, e))?;
        let mut writer = csv::Writer::from_writer(file);
        writer
            .write_record(spec.headers.iter().chain(&spec.new_columns))
            .map_err(|e| csv_error(&file_path, e))?;
        sheets.push(Sheet {
            writer,
            path: file_path,
            entry: format!("{}.csv", names[i]),
            headers: spec.headers.len(),
        });
    }
    Ok(Box::new(CsvWriter {
        output: path.to_path_buf(),
        partial,
        zipped,
        sheets,
        record: Vec::new(),
    }))
}

/// A zip entry name from a sheet name: no path separators or characters Windows refuses.
fn entry_name(sheet: &str) -> String {
    sheet
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect::<String>()
        .trim_matches(|c| c == '.' || c == ' ')
        .to_string()
}

fn csv_error(path: &Path, e: csv::Error) -> MergeError {
    MergeError::io(path, std::io::Error::other(e))
}

struct Sheet {
    writer: csv::Writer<BufWriter<File>>,
    path: PathBuf,
    entry: String,
    headers: usize,
}

struct CsvWriter {
    output: PathBuf,
    partial: PathBuf,
    zipped: bool,
    sheets: Vec<Sheet>,
    /// The record being written, reused.
    record: Vec<String>,
}

impl ResultWriter for CsvWriter {
    fn row(&mut self, row: &MergedRow<'_>) -> Result<(), MergeError> {
        let sheet = &mut self.sheets[row.sheet];
        self.record.clear();
        for i in 0..sheet.headers {
            self.record.push(
                row.cells
                    .get(i)
                    .map(|c| c.as_text().into_owned())
                    .unwrap_or_default(),
            );
        }
        for v in row.values {
            self.record.push(match *v {
                OutValue::Empty => String::new(),
                OutValue::Number(n) => format!("{n}"),
                OutValue::Text(s) => s.to_string(),
            });
        }
        sheet
            .writer
            .write_record(&self.record)
            .map_err(|e| csv_error(&sheet.path, e))
    }

    fn finish(self: Box<Self>, _summary: &Summary) -> Result<(), MergeError> {
        let mut files = Vec::new();
        for sheet in self.sheets {
            let file = sheet
                .writer
                .into_inner()
                .map_err(|e| MergeError::io(&sheet.path, std::io::Error::other(e.to_string())))?
                .into_inner()
                .map_err(|e| MergeError::io(&sheet.path, e.into_error()))?;
            file.sync_all()
                .map_err(|e| MergeError::io(&sheet.path, e))?;
            files.push((sheet.path, sheet.entry));
        }
        if self.zipped {
            let out = File::create(&self.partial).map_err(|e| MergeError::io(&self.partial, e))?;
            let mut zip = ZipWriter::new(BufWriter::new(out));
            let options =
                SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
            for (path, entry) in &files {
                zip.start_file(entry.as_str(), options)?;
                let mut f = File::open(path).map_err(|e| MergeError::io(path, e))?;
                std::io::copy(&mut f, &mut zip).map_err(|e| MergeError::io(path, e))?;
            }
            let mut inner = zip.finish()?;
            inner
                .flush()
                .map_err(|e| MergeError::io(&self.partial, e))?;
            for (path, _) in &files {
                let _ = std::fs::remove_file(path);
            }
        }
        std::fs::rename(&self.partial, &self.output).map_err(|e| MergeError::io(&self.output, e))
    }
}
