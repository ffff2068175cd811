use super::*;

#[test]
fn every_option_format_has_a_writer_and_a_path() {
    let names: Vec<&str> = formats().iter().map(|f| f.extension).collect();
    assert_eq!(names, crate::options::OUTPUT_FORMATS);
    let p = |out: &str, fs: &[&str], f: &str, sheets| {
        result_path(Path::new(out), fs, f, sheets)
            .display()
            .to_string()
    };
    assert_eq!(p("r/1.xlsx", &["gpkg"], "gpkg", 1), "r/1.gpkg");
    assert_eq!(p("out.gpkg", &["gpkg"], "gpkg", 3), "out.gpkg");
    assert_eq!(p("out.dat", &["xlsx"], "xlsx", 1), "out.dat");
    assert_eq!(p("out.csv", &["csv"], "csv", 1), "out.csv");
    assert_eq!(p("out.csv", &["csv"], "csv", 2), "out.zip");
    // The HTTP download finds the zip again from the stored path.
    assert_eq!(p("out.zip", &["csv"], "csv", 2), "out.zip");
    assert_eq!(p("out.dat", &["xlsx", "csv"], "csv", 2), "out.zip");
    assert_eq!(
        p("out.xlsx", &["xlsx", "geojson"], "geojson", 2),
        "out.geojson"
    );
    let names = unique_names(
        ["a", "", "A", " b "].map(String::from).into_iter(),
        "f",
        vec![],
    );
    assert_eq!(names, ["a", "f_2", "A_2", "b"]);
}

#[test]
fn new_columns_avoid_clashes() {
    let crs = |code| CrsInfo::from(crate::convert::crs::Crs::from_code(code).unwrap());
    let headers = vec!["name".to_string(), "LON".to_string(), "status".to_string()];
    assert_eq!(
        new_column_names(&headers, &crs("EPSG:4326"), &[]),
        ["lon_geobatch", "lat", "status_geobatch", "error"].map(String::from)
    );
    assert_eq!(
        new_column_names(&headers, &crs("EPSG:5186"), &[])[0],
        "x_5186"
    );
    let headers = vec!["Address".to_string(), "lat".to_string()];
    let added = ["address", "road_address", "building_name"].map(String::from);
    assert_eq!(
        new_column_names(&headers, &crs("EPSG:4326"), &added),
        [
            "lon",
            "lat_geobatch",
            "address_geobatch",
            "road_address",
            "building_name",
            "status",
            "error"
        ]
        .map(String::from)
    );
}
