//! Workbook cells as the user sees them: text stays text, numbers keep full precision, dates
//! become ISO-8601 text, formulas give their cached value, error values their Excel text.

use calamine::{Data, DataRef, ExcelDateTime};

use crate::job::Cell;

/// A cell of a streamed xlsx sheet.
pub(super) fn from_ref(value: DataRef<'_>) -> Cell {
    match value {
        DataRef::Empty => Cell::Empty,
        DataRef::String(s) => text(s),
        DataRef::SharedString(s) => text(s.to_string()),
        DataRef::Float(f) => Cell::Number(f),
        DataRef::Int(i) => Cell::Number(i as f64),
        DataRef::Bool(b) => Cell::Bool(b),
        DataRef::DateTime(d) => date(&d),
        DataRef::DateTimeIso(s) => Cell::Date(s),
        DataRef::DurationIso(s) => Cell::Text(s),
        DataRef::Error(e) => Cell::Text(e.to_string()),
    }
}

/// A cell of a sheet read whole (xls, ods).
pub(super) fn from_data(value: &Data) -> Cell {
    match value {
        Data::Empty => Cell::Empty,
        Data::String(s) => text(s.clone()),
        Data::Float(f) => Cell::Number(*f),
        Data::Int(i) => Cell::Number(*i as f64),
        Data::Bool(b) => Cell::Bool(*b),
        Data::DateTime(d) => date(d),
        Data::DateTimeIso(s) => Cell::Date(s.clone()),
        Data::DurationIso(s) => Cell::Text(s.clone()),
        Data::Error(e) => Cell::Text(e.to_string()),
    }
}

fn text(s: String) -> Cell {
    if s.is_empty() {
        Cell::Empty
    } else {
        Cell::Text(s)
    }
}

/// `2024-03-01`, `2024-03-01T12:30:00`, `12:30:00` (a time of day alone) or, for a duration,
/// `36:15:00` (hours past 24 as Excel's `[h]:mm:ss` shows them).
pub(super) fn date(d: &ExcelDateTime) -> Cell {
    let serial = d.as_f64();
    if !serial.is_finite() {
        return Cell::Number(serial);
    }
    if d.is_duration() {
        let ms = (serial * 86_400_000.0).round() as i64;
        let (sign, ms) = if ms < 0 { ("-", -ms) } else { ("", ms) };
        let secs = ms / 1000;
        return Cell::Text(format!(
            "{sign}{}:{:02}:{:02}{}",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60,
            millis(ms % 1000)
        ));
    }
    let (y, mo, day, h, mi, s, ms) = d.to_ymd_hms_milli();
    let time = format!("{h:02}:{mi:02}:{s:02}{}", millis(i64::from(ms)));
    let has_time = (h, mi, s, ms) != (0, 0, 0, 0);
    Cell::Date(if serial.trunc() == 0.0 && has_time {
        time
    } else if has_time {
        format!("{y:04}-{mo:02}-{day:02}T{time}")
    } else {
        format!("{y:04}-{mo:02}-{day:02}")
    })
}

fn millis(ms: i64) -> String {
    if ms == 0 {
        String::new()
    } else {
        format!(".{ms:03}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::ExcelDateTimeType::{DateTime, TimeDelta};

    #[test]
    fn dates_become_iso_text() {
        let d = |v, t| date(&ExcelDateTime::new(v, t, false));
        assert_eq!(d(45352.0, DateTime), Cell::Date("2024-03-01".into()));
        assert_eq!(
            d(45352.5, DateTime),
            Cell::Date("2024-03-01T12:00:00".into())
        );
        assert_eq!(d(0.75, DateTime), Cell::Date("18:00:00".into()));
        assert_eq!(d(1.5, TimeDelta), Cell::Text("36:00:00".into()));
        assert_eq!(
            date(&ExcelDateTime::new(0.0, DateTime, true)),
            Cell::Date("1904-01-01".into())
        );
    }

    #[test]
    fn text_and_numbers_are_kept() {
        assert_eq!(
            from_ref(DataRef::SharedString("03171")),
            Cell::Text("03171".into())
        );
        assert_eq!(from_ref(DataRef::Float(0.1 + 0.2)), Cell::Number(0.1 + 0.2));
        assert_eq!(from_data(&Data::Int(7)), Cell::Number(7.0));
        assert_eq!(from_data(&Data::String(String::new())), Cell::Empty);
    }
}
