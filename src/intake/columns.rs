//! Which columns hold the position (x/y, or the addresses of a geocoding job): given by the
//! user, or found by their header names.

use crate::job::AddressColumns;
use crate::options::ReadOptions;

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
    /// A given name ("x", "y" or "geocode", name) is not a header.
    GivenMissing(&'static str, String),
    /// A geocoding job without a recognised address column.
    NoAddress,
}

/// Road (도로명) address headers, compared like [`PAIRS`], best first.
const ROAD_ADDRESS: [&str; 5] = [
    "도로명전체주소",
    "도로명주소",
    "소재지도로명주소",
    "road_address",
    "roadaddress",
];
/// Parcel (지번) address headers: LOCALDATA's `소재지전체주소` is the parcel address.
const PARCEL_ADDRESS: [&str; 5] = [
    "소재지전체주소",
    "지번주소",
    "지번전체주소",
    "소재지지번주소",
    "parcel_address",
];
/// Addresses of either kind.
const ANY_ADDRESS: [&str; 8] = [
    "주소",
    "소재지",
    "소재지주소",
    "주소지",
    "address",
    "addr",
    "full_address",
    "주소(도로명)",
];

/// The position columns a table's rows are read by: x and y, or (geocoding, `opts.geocode`)
/// the address columns, x and y then naming the first of them.
pub fn find_positions(
    headers: &[String],
    opts: &ReadOptions,
) -> Result<(usize, usize, Option<AddressColumns>), ColumnProblem> {
    let Some(given) = &opts.geocode else {
        let (x, y) = find_columns(headers, opts.x_column.as_deref(), opts.y_column.as_deref())?;
        return Ok((x, y, None));
    };
    let address = if given.is_empty() {
        find_address(headers).ok_or(ColumnProblem::NoAddress)?
    } else {
        let columns = given
            .iter()
            .map(|name| {
                find_given(headers, name)
                    .ok_or_else(|| ColumnProblem::GivenMissing("geocode", name.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AddressColumns {
            columns,
            alternative: None,
        }
    };
    let first = address.columns[0];
    Ok((first, first, Some(address)))
}

/// The address column by its header: a road one first, else one of either kind, else a
/// parcel one; with a road (or either-kind) column and a parcel one, the parcel one is the
/// alternative.
fn find_address(headers: &[String]) -> Option<AddressColumns> {
    let names: Vec<String> = headers.iter().map(|h| normalize(h)).collect();
    let first_of = |wanted: &[&str]| {
        wanted
            .iter()
            .find_map(|w| names.iter().position(|n| n == w))
    };
    let (road, parcel) = (first_of(&ROAD_ADDRESS), first_of(&PARCEL_ADDRESS));
    let primary = road.or_else(|| first_of(&ANY_ADDRESS)).or(parcel)?;
    Some(AddressColumns {
        columns: vec![primary],
        alternative: parcel.filter(|&p| p != primary),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn geocode(given: &[&str]) -> ReadOptions {
        ReadOptions {
            geocode: Some(given.iter().map(|g| g.to_string()).collect()),
            ..ReadOptions::default()
        }
    }

    #[test]
    fn address_columns_are_detected_road_first() {
        // LOCALDATA: both a parcel (소재지전체주소) and a road (도로명전체주소) address.
        let h = headers(&["번호", "소재지전체주소", "도로명전체주소", "사업장명"]);
        let (x, y, a) = find_positions(&h, &geocode(&[])).unwrap();
        assert_eq!((x, y), (2, 2));
        let a = a.unwrap();
        assert_eq!((a.columns, a.alternative), (vec![2], Some(1)));
        for (names, want) in [
            (&["name", " Address "][..], 1),
            (&["상호", "주소"][..], 1),
            (&["addr", "x"][..], 0),
            (&["지번주소", "상호"][..], 0),
            (&["도로명주소", "지번주소"][..], 0),
        ] {
            let (x, _, a) = find_positions(&headers(names), &geocode(&[])).unwrap();
            assert_eq!(x, want, "{names:?}");
            assert_eq!(a.unwrap().columns, vec![want], "{names:?}");
        }
        let h = headers(&["상호", "전화"]);
        assert_eq!(
            find_positions(&h, &geocode(&[])),
            Err(ColumnProblem::NoAddress)
        );
    }

    #[test]
    fn given_address_columns_are_joined_in_order() {
        let h = headers(&["시도", "시군구", "도로명", "건물번호"]);
        let (_, _, a) =
            find_positions(&h, &geocode(&["시도", "시군구", "도로명", "건물번호"])).unwrap();
        assert_eq!(a.unwrap().columns, vec![0, 1, 2, 3]);
        assert_eq!(
            find_positions(&h, &geocode(&["주소"])),
            Err(ColumnProblem::GivenMissing("geocode", "주소".into()))
        );
        // Not geocoding: x/y as ever.
        let h = headers(&["x", "y"]);
        assert_eq!(
            find_positions(&h, &ReadOptions::default()),
            Ok((0, 1, None))
        );
    }
}
