use super::*;

#[test]
fn job_ids_are_128_random_bits_and_only_hex_ids_parse() {
    let a = JobId::random();
    let b = JobId::random();
    assert_eq!(a.as_str().len(), 32);
    assert_ne!(a, b);
    assert_eq!(JobId::parse(a.as_str()).unwrap(), a);
    assert!(JobId::parse("0123456789abcdef").is_ok(), "earlier ids read");
    for bad in [
        "",
        "/abs/path",
        "../../etc",
        "0123456789ABCDEF",
        "0123456789abcdeg",
    ] {
        let e = JobId::parse(bad).unwrap_err().to_string();
        assert!(e.contains("not a job id"), "{e}");
    }
    let long = "x".repeat(10_000);
    assert!(JobId::parse(&long).unwrap_err().to_string().len() < 300);
}

#[test]
fn states_and_statuses_have_one_text_each() {
    for s in JobState::ALL {
        assert_eq!(s.as_str().parse::<JobState>().unwrap(), *s);
        assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
    }
    for s in RowStatus::ALL {
        assert_eq!(s.as_str().parse::<RowStatus>().unwrap(), *s);
    }
    let e = "sleeping".parse::<JobState>().unwrap_err().to_string();
    assert!(e.contains("accepted") && e.contains("failed"), "{e}");
    assert_eq!(
        "PostGIS".parse::<EngineKind>().unwrap(),
        EngineKind::Postgis
    );
    let e = "proj".parse::<EngineKind>().unwrap_err().to_string();
    assert!(e.contains("\"proj\"") && e.contains("builtin"), "{e}");
}

#[test]
fn epsg_codes_parse_as_users_write_them() {
    for s in ["EPSG:5174", "epsg:5174", " 5174 ", "EPSG: 5174"] {
        assert_eq!(Epsg::parse(s).unwrap(), Epsg::new(5174), "{s}");
    }
    for s in [
        "",
        "EPSG:",
        "EPSG:abc",
        "WGS84",
        "EPSG:0",
        "EPSG:99999999999",
        "-5174",
    ] {
        let e = Epsg::parse(s).unwrap_err().to_string();
        assert!(e.contains("is not a CRS code"), "{s}: {e}");
    }
    assert_eq!(Epsg::new(5186).to_string(), "EPSG:5186");
    let json = serde_json::to_string(&Epsg::new(5186)).unwrap();
    assert_eq!(json, "\"EPSG:5186\"");
    assert_eq!(
        serde_json::from_str::<Epsg>(&json).unwrap(),
        Epsg::new(5186)
    );
}

#[test]
fn layouts_stored_by_earlier_versions_still_read() {
    let old: Layout = serde_json::from_str(
        r#"{"encoding":"EUC-KR","delimiter":44,"headers":["a","x","y"],"x":1,"y":2}"#,
    )
    .unwrap();
    assert_eq!(old.format, "csv");
    assert_eq!(old.reader["encoding"], "EUC-KR");
    assert_eq!(old.tables[0].y_name(), "y");
    let json = serde_json::to_string(&old).unwrap();
    assert_eq!(serde_json::from_str::<Layout>(&json).unwrap(), old);
}

#[test]
fn cells_read_as_a_person_sees_them() {
    assert_eq!(Cell::Number(127.0).as_text(), "127");
    assert_eq!(Cell::Number(0.1).as_text(), "0.1");
    assert_eq!(Cell::Text("03171".into()).as_text(), "03171");
    assert!(Cell::Text(String::new()).is_empty() && !Cell::Number(0.0).is_empty());
}
