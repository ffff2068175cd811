use super::*;
use clap::Parser;

fn ctx(origin: Origin) -> OptionContext {
    OptionContext {
        origin,
        providers: vec!["kakao", "vworld", "nominatim", "template"],
        templates: Default::default(),
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    spec: JobSpec,
}

/// The command line and the form give the same options.
#[test]
fn cli_and_form_give_the_same_options() {
    let cli = Cli::try_parse_from([
        "x",
        "--from",
        "EPSG:5174",
        "--to",
        "5186",
        "--x",
        "좌표정보(x)",
        "--sheet-by",
        "시도",
        "--delimiter",
        "tab",
        "--engine",
        "postgis",
        "--lookup",
        "Kakao",
        "--rate",
        "5/s",
        "--daily-quota",
        "1000",
        "--cache-ttl",
        "60",
        "--sheets",
        "서울, 부산,",
        "--header-row",
        "3",
    ])
    .unwrap()
    .spec;
    let form = JobSpec::from_fields([
        ("from", "EPSG:5174"),
        ("to", "5186"),
        ("x", "좌표정보(x)"),
        ("y", " "),
        ("sheet_by", "시도"),
        ("delimiter", "tab"),
        ("engine", "postgis"),
        ("lookup", "Kakao"),
        ("rate", "5/s"),
        ("daily_quota", "1000"),
        ("cache_ttl", "60"),
        ("sheets", "서울, 부산,"),
        ("header_row", "3"),
    ])
    .unwrap();
    let a = cli.validate(&ctx(Origin::CommandLine)).unwrap();
    let b = form.validate(&ctx(Origin::Form)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.from, Some(Epsg::new(5174)));
    assert_eq!(a.target(), Epsg::new(5186));
    assert_eq!(a.read.delimiter, Some(b'\t'));
    assert_eq!(a.read.y_column, None);
    assert_eq!(a.read.sheets, Some(vec!["서울".into(), "부산".into()]));
    assert_eq!(a.read.header_row, Some(3));
    assert_eq!(a.engine(), EngineKind::Postgis);
    assert_eq!(a.lookup.as_deref(), Some("kakao"));
    assert_eq!(
        (a.rate, a.daily_quota, a.cache_ttl),
        (Some(5.0), Some(1000), Some(60))
    );
}

#[test]
fn every_option_is_documented_once() {
    let docs = JobSpec::docs();
    let names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names[..3], ["from", "to", "x"]);
    assert!(names.contains(&"sheet_by") && names.contains(&"lookup_template"));
    assert!(docs.iter().all(|d| !d.help.is_empty()), "{docs:?}");
    let e = JobSpec::from_fields([("fromm", "x")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"fromm\"") && e.contains("sheet_by"), "{e}");
}

#[test]
fn errors_name_the_option_and_its_range() {
    let v = |pairs: &[(&str, &str)]| {
        JobSpec::from_fields(pairs.iter().copied())
            .unwrap()
            .validate(&ctx(Origin::Form))
    };
    let e = v(&[("rate", "5")]).unwrap_err();
    assert_eq!(e.option, "rate");
    assert!(e.to_string().contains("needs option lookup"), "{e}");
    for bad in ["1e308", "1e10", "1e-300", "0", "-1", "NaN", "inf", "fast"] {
        let e = v(&[("lookup", "kakao"), ("rate", bad)]).unwrap_err();
        assert_eq!(e.option, "rate", "{bad}");
        assert!(
            e.message.contains("0.001") && e.message.contains("10000"),
            "{e}"
        );
    }
    for bad in ["0", "1048577", "-1", "two"] {
        assert_eq!(v(&[("header_row", bad)]).unwrap_err().option, "header_row");
    }
    let e = v(&[("lookup", "kakao"), ("daily_quota", "0")]).unwrap_err();
    assert_eq!(e.option, "daily_quota");
    let e = v(&[("lookup", "google")]).unwrap_err().to_string();
    assert!(e.contains("\"google\"") && e.contains("nominatim"), "{e}");
    let e = v(&[("from", "EPSG:abc")]).unwrap_err().to_string();
    assert!(
        e.starts_with("option from:") && e.contains("EPSG:<number>"),
        "{e}"
    );
    let e = v(&[("format", "xlsx,shp")]).unwrap_err().to_string();
    assert!(e.contains("\"shp\"") && e.contains("geojson"), "{e}");
    let ok = v(&[("format", "GPKG, xlsx,gpkg")]).unwrap();
    assert_eq!(ok.formats(), ["gpkg", "xlsx"]);
    assert_eq!(v(&[]).unwrap().formats(), ["xlsx"]);
    let e = v(&[("engine", "proj")]).unwrap_err().to_string();
    assert!(e.contains("\"proj\"") && e.contains("postgis"), "{e}");
    let long = "x".repeat(MAX_OPTION_BYTES + 1);
    let e = v(&[("sheet_by", &long)]).unwrap_err();
    assert_eq!(e.option, "sheet_by");
    assert!(e.to_string().len() < 300);
    let e = v(&[("lookup", "template"), ("lookup_template", "/etc/passwd")]).unwrap_err();
    assert!(e.to_string().contains("pick one by name"), "{e}");
}

#[test]
fn options_stored_by_earlier_versions_still_read() {
    let old: JobOptions = serde_json::from_str(
        r#"{"from":"EPSG:5174","to":null,"sheet_by":null,"engine":null,"output":null}"#,
    )
    .unwrap();
    assert_eq!(old.from, Some(Epsg::new(5174)));
    assert!(old.lookup.is_none());
    let opts = JobSpec::from_fields([("lookup", "kakao"), ("rate", "4")])
        .unwrap()
        .validate(&ctx(Origin::Form))
        .unwrap();
    let json = serde_json::to_string(&opts).unwrap();
    assert_eq!(serde_json::from_str::<JobOptions>(&json).unwrap(), opts);
}

/// Geocoding is asked the same way on the command line and the form.
#[test]
fn geocode_columns_and_the_provider_chain() {
    let cli = |args: &[&str]| {
        let mut all = vec!["x"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .unwrap()
            .spec
            .validate(&ctx(Origin::CommandLine))
    };
    let form = |pairs: &[(&str, &str)]| {
        JobSpec::from_fields(pairs.iter().copied())
            .unwrap()
            .validate(&ctx(Origin::Form))
    };
    let a = cli(&[
        "--geocode",
        "시도, 시군구,도로명",
        "--providers",
        "Kakao, vworld,kakao",
    ])
    .unwrap();
    let b = form(&[
        ("geocode", "시도,시군구, 도로명"),
        ("providers", "kakao,VWORLD"),
    ])
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(
        a.read.geocode,
        Some(vec!["시도".to_string(), "시군구".into(), "도로명".into()])
    );
    assert_eq!(a.geocoders(), ["kakao", "vworld"]);
    // The flag alone, `auto`, or a chain alone: the address columns are detected.
    let auto = cli(&["--geocode"]).unwrap();
    assert_eq!(auto.read.geocode, Some(vec![]));
    assert_eq!(auto.geocoders(), DEFAULT_GEOCODERS);
    assert_eq!(form(&[("geocode", "AUTO")]).unwrap(), auto);
    let chain = form(&[("providers", "nominatim")]).unwrap();
    assert!(chain.is_geocode() && chain.geocoders() == ["nominatim"]);
    assert!(!form(&[]).unwrap().is_geocode());
    // The budget options go with geocoding as with a lookup.
    let rated = form(&[("geocode", "주소"), ("rate", "2"), ("cache_ttl", "0")]).unwrap();
    assert_eq!((rated.rate, rated.cache_ttl), (Some(2.0), Some(0)));
    // Coordinates options make no sense for addresses: refused, named.
    for (option, value) in [
        ("x", "경도"),
        ("y", "위도"),
        ("from", "EPSG:5174"),
        ("lookup", "kakao"),
    ] {
        let e = form(&[("geocode", "주소"), (option, value)]).unwrap_err();
        assert_eq!(e.option, option);
        assert!(e.message.contains("geocoding job"), "{e}");
    }
    let e = form(&[("providers", "kakao,google")]).unwrap_err();
    assert_eq!(e.option, "providers");
    assert!(
        e.message.contains("\"google\"") && e.message.contains("vworld"),
        "{e}"
    );
    let e = form(&[("providers", ", ,")]).unwrap_err();
    assert_eq!(e.option, "providers");
    let e = form(&[("geocode", ",")]).unwrap_err();
    assert_eq!(e.option, "geocode");
    let many = (0..9)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let e = form(&[("geocode", &many)]).unwrap_err();
    assert!(e.message.contains("at most 8"), "{e}");
}
