//! Property tests: no option value and no input file reaches a panic, and every error is short
//! (it never echoes a whole hostile input).

use geobatch::intake;
use geobatch::options::{JobOptions, JobSpec, OptionContext, Origin};
use geobatch::pipeline::Pipeline;
use proptest::prelude::*;

/// Longest error text accepted: ~200 quoted characters of input plus the explanation.
const MAX_ERROR_CHARS: usize = 1200;

const FIELDS: &[&str] = &[
    "from",
    "to",
    "x",
    "y",
    "sheet_by",
    "encoding",
    "delimiter",
    "engine",
    "lookup",
    "rate",
    "daily_quota",
    "cache_ttl",
    "template",
    "lookup_template",
];

/// Text a hostile or careless user might give: numbers at and past every edge, names, noise.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|f| f.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}/s")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "1e308",
            "1e10",
            "1e-300",
            "-0",
            "NaN",
            "inf",
            "-inf",
            "0",
            "10/s",
            "/s",
            "EPSG:",
            "EPSG:0",
            "EPSG:99999999999",
            "kakao",
            "template",
            "postgis",
            "tab",
            "{",
            "{}",
            "{\"url\":1}",
        ])
        .prop_map(String::from),
        ".{0,64}",
        "[a-zA-Z0-9:/ ]{0,5000}",
    ]
}

fn spec() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![
                9 => prop::sample::select(FIELDS).prop_map(String::from),
                1 => ".{0,300}",
            ],
            value(),
        ),
        0..8,
    )
}

fn bounded(e: &impl std::fmt::Display) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(
        text.chars().count() <= MAX_ERROR_CHARS,
        "an error of {} characters: {:.300}",
        text.chars().count(),
        text
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn job_options_never_panic_and_errors_stay_short(fields in spec()) {
        for origin in [Origin::Form, Origin::CommandLine] {
            let ctx: OptionContext = Pipeline::option_context(origin);
            // The command line reads a template file; random text is no path worth opening.
            let fields = fields
                .iter()
                .filter(|(k, _)| origin == Origin::Form || k != "lookup_template");
            match JobSpec::from_fields(fields.map(|(k, v)| (k.as_str(), v.as_str()))) {
                Err(e) => bounded(&e)?,
                Ok(spec) => {
                    if let Err(e) = spec.validate(&ctx) {
                        bounded(&e)?;
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_a_csv_never_panic(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..4096),
            // Mostly CSV-shaped: the reader gets past detection more often.
            "(x,y(,[a-z0-9\"]{0,4}){0,3}\n)?([0-9.eE+-]{0,8},[0-9.eE+-]{0,8}(,[^\n]{0,8}){0,6}\n){0,40}"
                .prop_map(String::into_bytes),
        ],
        x in prop::option::of("[a-z]{1,3}"),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, &bytes).unwrap();
        let mut options = JobOptions::default();
        options.read.x_column = x;
        match intake::inspect(&[("in.csv".to_string(), path.as_path())], &options) {
            Err(e) => bounded(&e)?,
            Ok(_) => {
                let mut source = intake::open(&path, "in.csv", &options.read).unwrap();
                while let Some(record) = source.next_record() {
                    if let Err(e) = record {
                        bounded(&e)?;
                        break;
                    }
                }
            }
        }
    }
}
