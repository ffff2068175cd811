use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use encoding_rs::EUC_KR;

use super::scan::{field_counts, Scan};
use super::*;
use crate::intake::{parse_coordinate, point_of, sheet_name, BadCell};

/// A file in the temp directory, removed when dropped.
struct TempCsv(PathBuf);

impl TempCsv {
    fn new(bytes: &[u8]) -> TempCsv {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "geobatch-intake-test-{}-{n}.csv",
            std::process::id()
        ));
        std::fs::write(&path, bytes).unwrap();
        TempCsv(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempCsv {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn open(bytes: &[u8]) -> Result<CsvSource, IntakeError> {
    open_with(bytes, &ReadOptions::default())
}

fn open_with(bytes: &[u8], opts: &ReadOptions) -> Result<CsvSource, IntakeError> {
    let file = TempCsv::new(bytes);
    // The file is removed when this returns; the open handle keeps it readable (Unix).
    let source = CsvSource::open(file.path(), "test.csv", opts)?;
    Ok(source)
}

fn records(source: CsvSource) -> Vec<InputRecord> {
    source.map(|r| r.unwrap()).collect()
}

fn lines_and_fields(source: CsvSource) -> Vec<(u64, Vec<String>)> {
    records(source)
        .into_iter()
        .map(|r| (r.line, texts(&r)))
        .collect()
}

/// A record's cells as text (a CSV gives text cells only).
fn texts(r: &InputRecord) -> Vec<String> {
    r.fields
        .iter()
        .map(|c| match c {
            Cell::Text(t) => t.clone(),
            other => panic!("a CSV cell that is not text: {other:?}"),
        })
        .collect()
}

fn cells(fields: &[&str]) -> Vec<Cell> {
    fields.iter().map(|s| Cell::Text(s.to_string())).collect()
}

fn row(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|s| s.to_string()).collect()
}

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for unit in std::iter::once(0xFEFF).chain(text.encode_utf16()) {
        if big_endian {
            out.extend_from_slice(&unit.to_be_bytes());
        } else {
            out.extend_from_slice(&unit.to_le_bytes());
        }
    }
    out
}

fn cp949(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = EUC_KR.encode(text);
    assert!(!unmappable, "test text must be encodable in CP949");
    bytes.into_owned()
}

const KOREAN: &str = "번호,사업장명,소재지전체주소,좌표정보(X),좌표정보(Y)\n\
                      1,똠양꿍 하우스,\"서울특별시 중구 세종대로 110, 1층\",198000.123456789,451000.5\n\
                      2,김밥천국,부산광역시 해운대구,394000.1,186000.2\n";

fn check_korean(source: CsvSource, encoding: &str) {
    assert_eq!(source.csv_layout().encoding, encoding);
    assert_eq!(source.csv_layout().delimiter, b',');
    assert_eq!(
        source.csv_layout().headers,
        row(&[
            "번호",
            "사업장명",
            "소재지전체주소",
            "좌표정보(X)",
            "좌표정보(Y)"
        ])
    );
    assert_eq!(source.csv_layout().x_name(), "좌표정보(X)");
    assert_eq!(source.csv_layout().y_name(), "좌표정보(Y)");
    let layout = source.csv_layout().clone();
    let rows = records(source);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].line, 2);
    assert_eq!(
        texts(&rows[0]),
        row(&[
            "1",
            "똠양꿍 하우스",
            "서울특별시 중구 세종대로 110, 1층",
            "198000.123456789",
            "451000.5"
        ])
    );
    assert_eq!(texts(&rows[1])[1], "김밥천국");
    assert_eq!(
        point_of(&rows[1], &layout.table("t")),
        Ok((394000.1, 186000.2))
    );
}

// ---- encodings ----

#[test]
fn cp949_is_detected_without_a_bom() {
    // "똠" is outside KS X 1001: only CP949 (UHC) has it.
    let source = open(&cp949(KOREAN)).unwrap();
    check_korean(source, "EUC-KR");
}

#[test]
fn cp949_label_given_maps_to_euc_kr() {
    let opts = ReadOptions {
        encoding: Some("cp949".into()),
        ..Default::default()
    };
    check_korean(open_with(&cp949(KOREAN), &opts).unwrap(), "EUC-KR");
    for label in [" EUC-KR ", "CP949", "windows-949", "ks_c_5601-1987"] {
        let opts = ReadOptions {
            encoding: Some(label.into()),
            ..Default::default()
        };
        check_korean(open_with(&cp949(KOREAN), &opts).unwrap(), "EUC-KR");
    }
}

#[test]
fn utf8_without_bom() {
    check_korean(open(KOREAN.as_bytes()).unwrap(), "UTF-8");
}

#[test]
fn utf8_with_bom_strips_it_from_the_first_header() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(KOREAN.as_bytes());
    let source = open(&bytes).unwrap();
    assert_eq!(source.csv_layout().headers[0], "번호");
    check_korean(source, "UTF-8");
}

#[test]
fn utf8_bom_is_stripped_when_the_encoding_is_given() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(b"x,y\n1,2\n");
    let opts = ReadOptions {
        encoding: Some("utf-8".into()),
        ..Default::default()
    };
    let source = open_with(&bytes, &opts).unwrap();
    assert_eq!(source.csv_layout().headers, row(&["x", "y"]));
    assert_eq!(source.csv_layout().x, 0);
}

#[test]
fn utf16le_with_bom() {
    check_korean(open(&utf16(KOREAN, false)).unwrap(), "UTF-16LE");
}

#[test]
fn utf16be_with_bom() {
    check_korean(open(&utf16(KOREAN, true)).unwrap(), "UTF-16BE");
}

#[test]
fn utf16_given_and_bom_present() {
    let opts = ReadOptions {
        encoding: Some("utf-16le".into()),
        ..Default::default()
    };
    check_korean(open_with(&utf16(KOREAN, false), &opts).unwrap(), "UTF-16LE");
}

#[test]
fn utf8_cut_at_the_end_of_the_prefix_is_still_utf8() {
    // Pad so that a 3-byte Hangul character straddles the 64 KiB boundary.
    let mut text = String::from("name,x,y\n");
    while text.len() < PREFIX_BYTES - 200 {
        text.push_str("abcdefgh,1.5,2.5\n");
    }
    let pad = PREFIX_BYTES - 1 - text.len();
    text.push_str(&"a".repeat(pad));
    assert_eq!(text.len(), PREFIX_BYTES - 1);
    text.push_str("한국,3.5,4.5\n");
    assert!(!text.is_char_boundary(PREFIX_BYTES));
    let source = open(text.as_bytes()).unwrap();
    assert_eq!(source.csv_layout().encoding, "UTF-8");
    let rows = records(source);
    let last = rows.last().unwrap();
    let last = texts(last);
    assert!(last[0].ends_with("a한국"), "{last:?}");
    assert!(!last[0].contains('\u{FFFD}'));
}

#[test]
fn invalid_utf8_at_the_very_end_of_a_short_file_is_cp949() {
    // The whole file fits in the prefix, so a cut sequence at its end is not an excuse.
    let mut bytes = cp949("x,y,이름\n1,2,");
    bytes.push(0xB0); // first byte of a two-byte CP949 character
    let source = open(&bytes).unwrap();
    assert_eq!(source.csv_layout().encoding, "EUC-KR");
}

#[test]
fn unknown_encoding_is_refused_with_choices() {
    let opts = ReadOptions {
        encoding: Some("klingon".into()),
        ..Default::default()
    };
    let err = open_with(b"x,y\n1,2\n", &opts).unwrap_err();
    assert!(matches!(err, IntakeError::UnknownEncoding { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with("test.csv: unknown encoding \"klingon\""),
        "{msg}"
    );
    assert!(msg.contains("cp949") && msg.contains("utf-8"), "{msg}");
}

#[test]
fn replacement_encoding_labels_are_refused() {
    // encoding_rs maps these to its "replacement" decoder, which would turn the file into one
    // U+FFFD.
    let opts = ReadOptions {
        encoding: Some("iso-2022-kr".into()),
        ..Default::default()
    };
    assert!(matches!(
        open_with(b"x,y\n1,2\n", &opts),
        Err(IntakeError::UnknownEncoding { .. })
    ));
}

// ---- delimiters ----

fn delimiter_of(text: &str) -> u8 {
    open(text.as_bytes()).unwrap().csv_layout().delimiter
}

#[test]
fn each_delimiter_is_detected() {
    assert_eq!(delimiter_of("name,x,y\na,1,2\nb,3,4\n"), b',');
    assert_eq!(delimiter_of("name;x;y\na;1,5;2,5\nb;3;4\n"), b';');
    assert_eq!(delimiter_of("name\tx\ty\na, b\t1\t2\nc\t3\t4\n"), b'\t');
    assert_eq!(delimiter_of("name|x|y\na,b,c|1|2\nd|3|4\n"), b'|');
}

#[test]
fn delimiters_inside_quotes_do_not_count() {
    // The header has one ';' inside quotes and two commas outside.
    let text = "\"a;b\",x,y\n\"1;2;3\",1,2\n\"4;5\",3,4\n";
    assert_eq!(delimiter_of(text), b',');
    let text = "\"name, full\";x;y\n\"kim, a\";1;2\n\"lee, b\";3;4\n";
    assert_eq!(delimiter_of(text), b';');
}

#[test]
fn the_most_consistent_delimiter_wins() {
    // Comma is in the header once, but the data rows have varying commas; ';' is steady.
    let text = "name,first;x;y\na;1;2\nb,c,d;3;4\ne;5;6\n";
    assert_eq!(delimiter_of(text), b';');
}

#[test]
fn single_column_defaults_to_comma() {
    let counts = field_counts("x\n1\n", b';', true, 20);
    assert_eq!(counts, vec![1, 1]);
    assert_eq!(detect::sniff_delimiter("x\n1\n", true), b',');
    assert_eq!(detect::sniff_delimiter("", true), b',');
}

#[test]
fn given_delimiter_is_used() {
    let opts = ReadOptions {
        delimiter: Some(b';'),
        x_column: Some("x,a".into()),
        ..Default::default()
    };
    let source = open_with(b"x,a;y\n1,5;2\n", &opts).unwrap();
    assert_eq!(source.csv_layout().headers, row(&["x,a", "y"]));
    assert_eq!(source.csv_layout().y, 1);
    let rows = records(source);
    assert_eq!(texts(&rows[0]), row(&["1,5", "2"]));
}

#[test]
fn impossible_delimiters_are_refused() {
    for d in [b'"', b'\n', b'\r', 0xE3] {
        let opts = ReadOptions {
            delimiter: Some(d),
            ..Default::default()
        };
        let err = open_with(b"x,y\n1,2\n", &opts).unwrap_err();
        assert!(matches!(err, IntakeError::BadDelimiter { .. }), "{d}");
        assert!(err.to_string().starts_with("test.csv: "), "{err}");
    }
}

#[test]
fn field_counts_follow_quotes_and_skip_blank_lines() {
    let text = "a,b,c\r\n\r\n\"x\ny\",\"p,q\",r\n,\n\"unfinished";
    assert_eq!(field_counts(text, b',', false, 20), vec![3, 3, 2]);
    assert_eq!(field_counts(text, b',', true, 20), vec![3, 3, 2, 1]);
    assert_eq!(field_counts(text, b',', true, 2), vec![3, 3]);
}

// ---- records and line numbers ----

#[test]
fn quoted_newlines_keep_line_numbers_right() {
    let text = "name,addr,x,y\n\
                a,\"line one\nline two\nline three\",1,2\n\
                b,\"he said \"\"hi\"\", then left\",3,4\n\
                c,\"x,y\",5,6\n";
    let rows = lines_and_fields(open(text.as_bytes()).unwrap());
    assert_eq!(
        rows,
        vec![
            (2, row(&["a", "line one\nline two\nline three", "1", "2"])),
            (5, row(&["b", "he said \"hi\", then left", "3", "4"])),
            (6, row(&["c", "x,y", "5", "6"])),
        ]
    );
}

#[test]
fn crlf_and_blank_lines_keep_line_numbers_right() {
    let text = "\r\nname,x,y\r\na,1,2\r\n\r\n\r\nb,\"q\r\nr\",4\r\nc,5,6";
    let source = open(text.as_bytes()).unwrap();
    let layout = source.csv_layout().clone();
    assert_eq!(layout.headers, row(&["name", "x", "y"]));
    assert_eq!(
        lines_and_fields(source),
        vec![
            (3, row(&["a", "1", "2"])),
            (6, row(&["b", "q\r\nr", "4"])),
            (8, row(&["c", "5", "6"])),
        ]
    );
}

#[test]
fn cells_are_kept_as_they_were() {
    let text = "name , x ,y\n  spaced  , 127.5 ,\t37.5\n";
    let source = open(text.as_bytes()).unwrap();
    let layout = source.csv_layout().clone();
    // Header names are trimmed, cells are not.
    assert_eq!(layout.headers, row(&["name", "x", "y"]));
    let rows = records(source);
    assert_eq!(texts(&rows[0]), row(&["  spaced  ", " 127.5 ", "\t37.5"]));
    assert_eq!(point_of(&rows[0], &layout.table("t")), Ok((127.5, 37.5)));
}

#[test]
fn long_files_stream_with_right_line_numbers() {
    let mut text = String::from("id,x,y\n");
    for i in 0..20_000 {
        if i % 1000 == 0 {
            text.push_str(&format!("{i},\"multi\nline\",0\n"));
        } else {
            text.push_str(&format!("{i},{i}.5,-{i}\n"));
        }
    }
    assert!(text.len() > 4 * PREFIX_BYTES);
    let rows = records(open(text.as_bytes()).unwrap());
    assert_eq!(rows.len(), 20_000);
    let mut expected_line = 2;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.line, expected_line, "row {i}");
        assert_eq!(texts(r)[0], i.to_string());
        expected_line += if i % 1000 == 0 { 2 } else { 1 };
    }
}

#[test]
fn reopen_gives_the_same_records() {
    let bytes = cp949(KOREAN);
    let file = TempCsv::new(&bytes);
    let opts = ReadOptions {
        x_column: Some("번호".into()),
        ..Default::default()
    };
    let first = CsvSource::open(file.path(), "k.csv", &opts).unwrap();
    let csv = first.csv_layout().clone();
    assert_eq!((csv.x, csv.y), (0, 4));
    let layout = RecordSource::layout(&first).clone();
    let rows = records(first);
    // The layout survives a trip through JSON, as stored with the job.
    let json = serde_json::to_string(&layout).unwrap();
    let stored: Layout = serde_json::from_str(&json).unwrap();
    assert_eq!(stored, layout);
    assert_eq!(stored.tables[0].name, "k");
    let mut again = CSV.reopen(file.path(), "k.csv", &stored).unwrap();
    let mut reread = Vec::new();
    while let Some(r) = again.next_record() {
        reread.push(r.unwrap());
    }
    assert_eq!(reread, rows);
    let again = CsvSource::reopen(file.path(), "k.csv", &csv).unwrap();
    assert_eq!(again.csv_layout(), &csv);
    assert_eq!(again.label(), "k.csv");
}

#[test]
fn reopen_notices_a_changed_file() {
    let file = TempCsv::new(b"x,y\n1,2\n");
    let layout = CsvSource::open(file.path(), "a.csv", &ReadOptions::default())
        .unwrap()
        .csv_layout()
        .clone();
    std::fs::write(file.path(), b"lon,lat,x\n1,2,3\n").unwrap();
    let err = CsvSource::reopen(file.path(), "a.csv", &layout).unwrap_err();
    assert!(matches!(err, IntakeError::Changed { .. }), "{err}");
    assert!(
        err.to_string().starts_with("a.csv: the file changed"),
        "{err}"
    );
}

#[test]
fn source_can_move_to_another_thread() {
    fn is_send<T: Send>() {}
    is_send::<CsvSource>();
    is_send::<IntakeError>();
}

// ---- malformed files ----

#[test]
fn empty_file_is_an_error() {
    for bytes in [&b""[..], b"\n\n\r\n", b"\xEF\xBB\xBF"] {
        let err = open(bytes).unwrap_err();
        assert!(matches!(err, IntakeError::Empty { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "test.csv: the file is empty; its first line must name the columns"
        );
    }
}

#[test]
fn blank_header_is_an_error() {
    let err = open(b"\n , ,\n1,2,3\n").unwrap_err();
    assert!(
        matches!(err, IntakeError::NoHeader { line: 2, .. }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("test.csv: the first line (line 2)"));
}

#[test]
fn missing_file_is_an_io_error() {
    let err = CsvSource::open(
        Path::new("/nonexistent/dir/stores.csv"),
        "stores.csv",
        &ReadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, IntakeError::Io { .. }));
    assert!(
        err.to_string().starts_with("stores.csv: cannot read: "),
        "{err}"
    );
}

#[test]
fn unclosed_quote_is_a_syntax_error_with_its_line() {
    let text = "name,x,y\na,1,2\nb,\"3,4\nc,5,6\nd,7,8\n";
    let mut source = open(text.as_bytes()).unwrap();
    assert_eq!(source.next().unwrap().unwrap().line, 2);
    let err = source.next().unwrap().unwrap_err();
    match &err {
        IntakeError::Syntax { line, message, .. } => {
            assert_eq!(*line, 3);
            assert!(message.contains("never ends"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("test.csv: line 3: "), "{err}");
    assert!(source.next().is_none());
}

#[test]
fn unclosed_quote_in_the_header_is_reported() {
    let err = open(b"name,\"x,y\n1,2,3\n").unwrap_err();
    assert!(
        matches!(err, IntakeError::Syntax { line: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn runaway_records_are_stopped() {
    let mut text = String::from("x,y\n1,\"");
    text.push_str(&"z\n".repeat(600));
    text.push_str("\"\n");
    let mut scan = Scan::with_limit(text.as_bytes(), b',', 1000);
    let mut sink = Vec::new();
    let err = scan.read_to_end(&mut sink).unwrap_err();
    let syntax = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<scan::SyntaxError>())
        .unwrap();
    assert_eq!(syntax.line, 2);
    assert!(
        syntax.message.contains("never closed"),
        "{}",
        syntax.message
    );

    // The same data under the real limit reads fine.
    let rows = records(open(text.as_bytes()).unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(texts(&rows[0])[1].len(), 1200);
}

#[test]
fn scan_records_every_start_line() {
    let text = "\n\"a\r\nb\",c\r\n\r\nd\re\n";
    let mut scan = Scan::new(text.as_bytes(), b',');
    let mut sink = Vec::new();
    scan.read_to_end(&mut sink).unwrap();
    assert_eq!(sink, text.as_bytes());
    let starts: Vec<u64> = std::iter::from_fn(|| scan.take_start()).collect();
    assert_eq!(starts, vec![2, 5, 6]);
}

// ---- columns ----

fn xy_names(header: &str) -> Result<(String, String), IntakeError> {
    let source = open(format!("{header}\n").as_bytes())?;
    let layout = source.csv_layout();
    Ok((layout.x_name().to_string(), layout.y_name().to_string()))
}

#[test]
fn every_header_pair_is_found() {
    let cases = [
        ("id,X,Y", "X", "Y"),
        ("id,x,y", "x", "y"),
        ("name,LON,LAT", "LON", "LAT"),
        ("name,lat,lng", "lng", "lat"),
        ("name,Long,Lat", "Long", "Lat"),
        ("name,Latitude,Longitude", "Longitude", "Latitude"),
        ("이름,위도,경도", "경도", "위도"),
        ("번호,좌표정보(X),좌표정보(Y)", "좌표정보(X)", "좌표정보(Y)"),
        (
            "번호,좌표정보 (x),좌표정보 (y)",
            "좌표정보 (x)",
            "좌표정보 (y)",
        ),
        ("번호,좌표정보X,좌표정보Y", "좌표정보X", "좌표정보Y"),
        ("번호,X좌표,Y좌표", "X좌표", "Y좌표"),
        ("번호,X 좌표,Y 좌표", "X 좌표", "Y 좌표"),
        ("번호,좌표x,좌표y", "좌표x", "좌표y"),
        ("fid,POINT_X,POINT_Y", "POINT_X", "POINT_Y"),
        ("fid,PointX,PointY", "PointX", "PointY"),
        ("fid,XCOORD,YCOORD", "XCOORD", "YCOORD"),
        ("fid,x_coord,y_coord", "x_coord", "y_coord"),
        ("fid,Coord_X,Coord_Y", "Coord_X", "Coord_Y"),
        ("fid, x , y ", "x", "y"),
    ];
    for (header, x, y) in cases {
        assert_eq!(
            xy_names(header).unwrap(),
            (x.to_string(), y.to_string()),
            "{header}"
        );
    }
}

#[test]
fn pairs_are_taken_in_priority_order_and_must_be_complete() {
    // x/y beats lon/lat wherever it stands.
    assert_eq!(xy_names("lon,lat,x,y").unwrap(), ("x".into(), "y".into()));
    // A lone x does not make a pair: lon/lat does.
    assert_eq!(xy_names("x,lat,lon").unwrap(), ("lon".into(), "lat".into()));
    // Names must match whole: "x_5174" is not "x".
    assert!(matches!(
        xy_names("x_5174,y_5174"),
        Err(IntakeError::NoColumns { .. })
    ));
}

#[test]
fn no_columns_error_lists_headers() {
    let err = xy_names("name,east,north").unwrap_err();
    assert_eq!(
        err.to_string(),
        "test.csv: no x/y columns found; headers are: \"name\", \"east\", \"north\"; \
         name them with options x and y"
    );
}

#[test]
fn given_columns_match_exactly_then_loosely() {
    let header = "name,East,east ,north,NORTH\n1,2,3,4,5\n";
    let opts = ReadOptions {
        x_column: Some("east".into()),
        y_column: Some(" north ".into()),
        ..Default::default()
    };
    let source = open_with(header.as_bytes(), &opts).unwrap();
    // "east" matches the trimmed header "east" exactly (index 2), not "East".
    assert_eq!((source.csv_layout().x, source.csv_layout().y), (2, 3));
    let rows = records(open_with(header.as_bytes(), &opts).unwrap());
    assert_eq!(
        point_of(&rows[0], &layout_of(header, &opts).table("t")),
        Ok((3.0, 4.0))
    );

    let opts = ReadOptions {
        x_column: Some("EAST".into()),
        y_column: Some("North".into()),
        ..Default::default()
    };
    let source = open_with(header.as_bytes(), &opts).unwrap();
    assert_eq!((source.csv_layout().x, source.csv_layout().y), (1, 3));
}

fn layout_of(text: &str, opts: &ReadOptions) -> CsvLayout {
    open_with(text.as_bytes(), opts)
        .unwrap()
        .csv_layout()
        .clone()
}

#[test]
fn given_columns_override_detection() {
    let opts = ReadOptions {
        x_column: Some("tm_x".into()),
        y_column: Some("tm_y".into()),
        ..Default::default()
    };
    let layout = layout_of("x,y,tm_x,tm_y\n", &opts);
    assert_eq!((layout.x, layout.y), (2, 3));
}

#[test]
fn one_given_column_and_the_other_detected() {
    let opts = ReadOptions {
        x_column: Some("동쪽".into()),
        ..Default::default()
    };
    let layout = layout_of("이름,동쪽,위도\n", &opts);
    assert_eq!((layout.x_name(), layout.y_name()), ("동쪽", "위도"));

    let opts = ReadOptions {
        y_column: Some("북쪽".into()),
        ..Default::default()
    };
    let layout = layout_of("이름,북쪽,POINT_X\n", &opts);
    assert_eq!((layout.x_name(), layout.y_name()), ("POINT_X", "북쪽"));

    // Given "y" as x: the detected y must be another column.
    let opts = ReadOptions {
        x_column: Some("y".into()),
        ..Default::default()
    };
    let layout = layout_of("y,lat\n", &opts);
    assert_eq!((layout.x, layout.y), (0, 1));

    let opts = ReadOptions {
        x_column: Some("동쪽".into()),
        ..Default::default()
    };
    let err = open_with("이름,동쪽,북쪽\n".as_bytes(), &opts).unwrap_err();
    assert!(matches!(err, IntakeError::NoColumn { axis: "y", .. }));
    assert_eq!(
        err.to_string(),
        "test.csv: no y column found; headers are: \"이름\", \"동쪽\", \"북쪽\"; \
         name it with option y"
    );
}

#[test]
fn missing_given_column_lists_headers() {
    let opts = ReadOptions {
        x_column: Some("x".into()),
        y_column: Some("위도".into()),
        ..Default::default()
    };
    let err = open_with("x,lat,lon\n".as_bytes(), &opts).unwrap_err();
    match &err {
        IntakeError::MissingColumn {
            axis,
            name,
            headers,
            ..
        } => {
            assert_eq!(*axis, "y");
            assert_eq!(name, "위도");
            assert_eq!(headers, &row(&["x", "lat", "lon"]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "test.csv: no column \"위도\" (given with option y); headers are: \"x\", \"lat\", \"lon\""
    );
}

#[test]
fn long_header_lists_are_cut_short() {
    let headers: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    let err = xy_names(&headers.join(",")).unwrap_err().to_string();
    assert!(err.contains("\"c39\" … and 10 more;"), "{err}");
    assert!(!err.contains("\"c40\""), "{err}");
}

// ---- points ----

#[test]
fn point_of_reads_x_and_y() {
    let layout = CsvLayout {
        encoding: "UTF-8".into(),
        delimiter: b',',
        headers: row(&["name", "lat", "lon"]),
        x: 2,
        y: 1,
    };
    let record = InputRecord {
        table: 0,
        line: 7,
        fields: cells(&["a", " 37.5 ", "127.25"]),
    };
    assert_eq!(point_of(&record, &layout.table("t")), Ok((127.25, 37.5)));

    let record = InputRecord {
        table: 0,
        line: 8,
        fields: cells(&["a", "37.5", "N/A"]),
    };
    assert_eq!(
        point_of(&record, &layout.table("t")),
        Err(BadCell {
            column: "lon".into(),
            raw: "N/A".into(),
            reason: "not a number: \"N/A\"".into(),
        })
    );
    // x is checked first.
    let record = InputRecord {
        table: 0,
        line: 9,
        fields: cells(&["a", "", ""]),
    };
    assert_eq!(
        point_of(&record, &layout.table("t")).unwrap_err().column,
        "lon"
    );
}

#[test]
fn ragged_rows_are_bad() {
    let text = "a,b,c,x,y\n1,2,3,4,5\n1,2,3\n1,2,3,4,5,6\n\n1\n";
    let source = open(text.as_bytes()).unwrap();
    let layout = source.csv_layout().clone();
    let rows = records(source);
    assert_eq!(rows.len(), 4);
    assert_eq!(point_of(&rows[0], &layout.table("t")), Ok((4.0, 5.0)));
    assert_eq!(
        point_of(&rows[1], &layout.table("t")),
        Err(BadCell {
            column: String::new(),
            raw: "3 fields".into(),
            reason: "expected 5 fields, found 3".into(),
        })
    );
    assert_eq!(
        point_of(&rows[2], &layout.table("t")).unwrap_err().reason,
        "expected 5 fields, found 6"
    );
    assert_eq!(rows[3].line, 6);
    assert_eq!(
        point_of(&rows[3], &layout.table("t")).unwrap_err().raw,
        "1 field"
    );
}

#[test]
fn point_of_survives_a_bad_layout() {
    let layout = CsvLayout {
        encoding: "UTF-8".into(),
        delimiter: b',',
        headers: row(&["a", "b"]),
        x: 0,
        y: 5,
    };
    let record = InputRecord {
        table: 0,
        line: 2,
        fields: cells(&["1", "2"]),
    };
    assert!(point_of(&record, &layout.table("t")).is_err());
    assert_eq!(layout.y_name(), "");
}

#[test]
fn parse_coordinate_accepts_numbers() {
    assert_eq!(parse_coordinate("127.0"), Ok(127.0));
    assert_eq!(parse_coordinate(" 198765.12 "), Ok(198765.12));
    assert_eq!(parse_coordinate("-33.5"), Ok(-33.5));
    assert_eq!(parse_coordinate("1e3"), Ok(1000.0));
    assert_eq!(
        parse_coordinate("\t+451234.123456789\r"),
        Ok(451234.123456789)
    );
    assert_eq!(parse_coordinate("0"), Ok(0.0));
    assert_eq!(parse_coordinate("\u{a0}37.5\u{a0}"), Ok(37.5));
}

#[test]
fn parse_coordinate_refuses_placeholders_text_and_commas() {
    let cases = [
        ("", "empty"),
        ("   ", "empty"),
        ("\t", "empty"),
        ("-", "not a number: \"-\""),
        ("N/A", "not a number: \"N/A\""),
        ("NA", "not a number: \"NA\""),
        ("null", "not a number: \"null\""),
        ("none", "not a number: \"none\""),
        (" 서울 ", "not a number: \"서울\""),
        ("abc", "not a number: \"abc\""),
        ("12.5.6", "not a number: \"12.5.6\""),
        ("127.0°", "not a number: \"127.0°\""),
        ("0x10", "not a number: \"0x10\""),
        ("1,234.5.6", "not a number (has a comma): \"1,234.5.6\""),
        ("1,234", "not a number (has a comma): \"1,234\""),
        ("127,5", "not a number (has a comma): \"127,5\""),
    ];
    for (raw, reason) in cases {
        assert_eq!(parse_coordinate(raw), Err(reason.to_string()), "{raw:?}");
    }
}

#[test]
fn parse_coordinate_refuses_non_finite_numbers_in_any_spelling() {
    for raw in [
        "nan",
        "NaN",
        "NAN",
        "-nan",
        "inf",
        "INF",
        "-inf",
        "+Inf",
        "Infinity",
        "-infinity",
        "1e999",
        "-1e400",
    ] {
        let reason = parse_coordinate(raw).unwrap_err();
        assert_eq!(reason, format!("not a finite number: {raw:?}"), "{raw}");
    }
}

#[test]
fn parse_coordinate_cuts_long_values_short() {
    let raw = "x".repeat(100);
    let reason = parse_coordinate(&raw).unwrap_err();
    assert_eq!(reason, format!("not a number: \"{}…\"", "x".repeat(40)));
}

// ---- sheet names ----

fn taken(names: &[&str]) -> HashSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn sheet_names_are_cleaned() {
    let none = HashSet::new();
    assert_eq!(sheet_name("서울특별시", &none), "서울특별시");
    assert_eq!(sheet_name("a[b]c:d*e?f/g\\h", &none), "a_b_c_d_e_f_g_h");
    assert_eq!(sheet_name("'quoted'", &none), "quoted");
    assert_eq!(sheet_name(" ' both ' ", &none), "both");
    assert_eq!(sheet_name("it's", &none), "it's");
    assert_eq!(sheet_name("", &none), "Sheet");
    assert_eq!(sheet_name("   ", &none), "Sheet");
    assert_eq!(sheet_name("''", &none), "Sheet");
    assert_eq!(sheet_name("a\tb\nc", &none), "a_b_c");
}

#[test]
fn sheet_names_fit_in_31_characters() {
    let none = HashSet::new();
    let long = "가".repeat(40);
    let name = sheet_name(&long, &none);
    assert_eq!(name.chars().count(), 31);
    assert_eq!(name, "가".repeat(31));
    // Cutting must not leave a trailing apostrophe.
    let raw = format!("{}'bc", "a".repeat(30));
    assert_eq!(sheet_name(&raw, &none), "a".repeat(30));
}

#[test]
fn history_is_never_a_sheet_name() {
    let none = HashSet::new();
    assert_eq!(sheet_name("History", &none), "History (2)");
    assert_eq!(sheet_name("HISTORY", &none), "HISTORY (2)");
    assert_eq!(sheet_name("Historyx", &none), "Historyx");
}

#[test]
fn sheet_names_are_unique_case_insensitively() {
    let names = taken(&["Summary", "Errors", "서울", "Busan", "Busan (2)"]);
    assert_eq!(sheet_name("summary", &names), "summary (2)");
    assert_eq!(sheet_name("ERRORS", &names), "ERRORS (2)");
    assert_eq!(sheet_name("서울", &names), "서울 (2)");
    assert_eq!(sheet_name("busan", &names), "busan (3)");
    assert_eq!(sheet_name("Daegu", &names), "Daegu");

    // The caller inserts each result; uniqueness holds over many rounds.
    let mut names = taken(&["Summary", "Errors"]);
    let long = "경기도 ".repeat(10);
    for i in 0..12 {
        let name = sheet_name(&long, &names);
        assert!(name.chars().count() <= 31, "{name}");
        assert!(!names.iter().any(|t| t.eq_ignore_ascii_case(&name)));
        if i == 11 {
            assert!(name.ends_with(" (12)"), "{name}");
        }
        names.insert(name);
    }
    assert_eq!(names.len(), 14);
}

#[test]
fn suffixes_keep_within_31_characters() {
    let base = "b".repeat(31);
    let names = taken(&[&base]);
    let name = sheet_name(&base, &names);
    assert_eq!(name, format!("{} (2)", "b".repeat(27)));
    assert_eq!(name.chars().count(), 31);
}
