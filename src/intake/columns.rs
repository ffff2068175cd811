//! Which columns hold the position: given by the user, or found by their header names.

/// Header names of x/y columns, compared lowercased and without whitespace, best first.
const PAIRS: [(&str, &str); 15] = [
    ("x", "y"),
    ("lon", "lat"),
    ("lng", "lat"),
    ("long", "lat"),
    ("longitude", "latitude"),
    ("경도", "위도"),
    ("좌표정보(x)", "좌표정보(y)"),
    ("좌표정보x", "좌표정보y"),
    ("x좌표", "y좌표"),
    ("좌표x", "좌표y"),
    ("point_x", "point_y"),
    ("pointx", "pointy"),
    ("xcoord", "ycoord"),
    ("x_coord", "y_coord"),
    ("coord_x", "coord_y"),
];

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// A column the user named: exact match first, then case-insensitive after trimming.
pub fn find_given(headers: &[String], name: &str) -> Option<usize> {
    headers.iter().position(|h| h == name).or_else(|| {
        let wanted = name.trim().to_lowercase();
        headers
            .iter()
            .position(|h| h.trim().to_lowercase() == wanted)
    })
}

/// Why the x/y columns could not be settled.
#[derive(Debug, PartialEq)]
pub enum ColumnProblem {
    /// Neither given nor found.
    NoneFound,
    /// One was given, the other ("x" or "y") not found.
    OtherNotFound(&'static str),
    /// A given name ("x" or "y", name) is not a header.
    GivenMissing(&'static str, String),
}

/// The x and y column indexes.
pub fn find_columns(
    headers: &[String],
    x_given: Option<&str>,
    y_given: Option<&str>,
) -> Result<(usize, usize), ColumnProblem> {
    let given = |axis: &'static str, name: Option<&str>| match name {
        Some(name) => find_given(headers, name)
            .map(Some)
            .ok_or_else(|| ColumnProblem::GivenMissing(axis, name.to_string())),
        None => Ok(None),
    };
    let x = given("x", x_given)?;
    let y = given("y", y_given)?;
    let names: Vec<String> = headers.iter().map(|h| normalize(h)).collect();
    let find = |wanted: &str, not: Option<usize>| {
        names
            .iter()
            .enumerate()
            .find(|&(i, n)| n == wanted && Some(i) != not)
            .map(|(i, _)| i)
    };
    match (x, y) {
        (Some(x), Some(y)) => Ok((x, y)),
        (Some(x), None) => PAIRS
            .iter()
            .find_map(|(_, yname)| find(yname, Some(x)))
            .map(|y| (x, y))
            .ok_or(ColumnProblem::OtherNotFound("y")),
        (None, Some(y)) => PAIRS
            .iter()
            .find_map(|(xname, _)| find(xname, Some(y)))
            .map(|x| (x, y))
            .ok_or(ColumnProblem::OtherNotFound("x")),
        (None, None) => PAIRS
            .iter()
            .find_map(
                |(xname, yname)| match (find(xname, None), find(yname, None)) {
                    (Some(x), Some(y)) if x != y => Some((x, y)),
                    _ => None,
                },
            )
            .ok_or(ColumnProblem::NoneFound),
    }
}
