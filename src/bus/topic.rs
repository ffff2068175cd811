//! Topic names: one row topic per sheet, and the dead-letter topic.

use crate::job::JobId;

/// Every row topic matches this; workers subscribe to the pattern.
pub const ROW_TOPIC_PATTERN: &str = "^geobatch\\.rows\\..+";
const ROW_TOPIC_PREFIX: &str = "geobatch.rows.";

/// Where rows whose lookup failed for good are reported (JSON, keyed by job).
pub const DLQ_TOPIC: &str = "geobatch.dlq";

/// The topic that carries one sheet's rows: `geobatch.rows.<job>.<sheet>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SheetTopic {
    pub job: JobId,
    pub sheet: u32,
}

impl SheetTopic {
    pub fn new(job: &JobId, sheet: u32) -> SheetTopic {
        SheetTopic {
            job: job.clone(),
            sheet,
        }
    }

    pub fn name(&self) -> String {
        format!("{ROW_TOPIC_PREFIX}{}.{}", self.job, self.sheet)
    }

    /// The sheet of a row topic's name; None for any other name (or a malformed job id).
    pub fn parse(name: &str) -> Option<SheetTopic> {
        let rest = name.strip_prefix(ROW_TOPIC_PREFIX)?;
        let (job, sheet) = rest.rsplit_once('.')?;
        Some(SheetTopic {
            job: JobId::parse(job).ok()?,
            sheet: sheet.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_round_trip() {
        let id = JobId::parse("ab12cd34ab12cd34").unwrap();
        let t = SheetTopic::new(&id, 7);
        assert_eq!(t.name(), "geobatch.rows.ab12cd34ab12cd34.7");
        assert_eq!(SheetTopic::parse(&t.name()), Some(t));
        assert_eq!(SheetTopic::parse("other.topic"), None);
        assert_eq!(SheetTopic::parse("geobatch.rows.../x.1"), None);
    }
}
