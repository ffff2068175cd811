//! The address cleaner: what a geocoding provider is asked is the address a person meant, not
//! the cell as typed. Pure and deterministic: the same cell always gives the same text (the
//! cache keys on it) and the list of steps applied (the Summary sheet counts them).
//!
//! In order: full-width characters to half-width, surrounding whitespace trimmed, a company
//! name in front (`(주)행복상사`, `㈜…`, `주식회사 …`) removed, bracketed notes removed
//! (`(세종로)`, `[본점]`), the detail after the first comma removed (`…175, 3층`), floor, unit
//! and building-detail tokens after the house number removed (`3층`, `101호`, `B1`, `지하1층`,
//! `101동`), `번지` dropped from a parcel number, runs of whitespace collapsed.
//!
//! Nothing here guesses a place: text that is empty once cleaned, or longer than
//! [`MAX_ADDRESS_CHARS`], is an error, never a query.

use std::fmt;

use super::providers::AddressKind;

/// Longest address cell accepted, in characters (the longest real Korean road address with a
/// detail part is well under 150).
pub const MAX_ADDRESS_CHARS: usize = 300;

/// One kind of change the cleaner made; the Summary sheet counts rows per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CleanStep {
    FullWidth,
    Trim,
    Company,
    Brackets,
    Detail,
    FloorUnit,
    Spaces,
}

impl CleanStep {
    pub const ALL: [CleanStep; 7] = [
        CleanStep::FullWidth,
        CleanStep::Trim,
        CleanStep::Company,
        CleanStep::Brackets,
        CleanStep::Detail,
        CleanStep::FloorUnit,
        CleanStep::Spaces,
    ];

    /// The step's name in the Summary sheet.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanStep::FullWidth => "full-width characters made half-width",
            CleanStep::Trim => "surrounding spaces trimmed",
            CleanStep::Company => "company name in front removed",
            CleanStep::Brackets => "bracketed note removed",
            CleanStep::Detail => "detail after the address removed",
            CleanStep::FloorUnit => "floor or unit removed",
            CleanStep::Spaces => "spaces collapsed",
        }
    }
}

impl fmt::Display for CleanStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address ready to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cleaned {
    pub text: String,
    /// The steps that changed something, each once, in the order applied.
    pub steps: Vec<CleanStep>,
    /// A hint: road (a `…로`/`…길` before the house number), parcel (a `…동`/`…리`/`…가` before
    /// it; `세종로` is a road name and a 동 name alike, so read as road),
    /// or any when neither is recognised.
    pub kind: AddressKind,
}

/// Why a cell cannot be asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CleanError {
    #[error("no address")]
    Empty,
    #[error("address of {chars} characters; at most {MAX_ADDRESS_CHARS} are read")]
    TooLong { chars: usize },
}

/// Cleans one address cell (or the address columns joined with spaces).
pub fn clean(raw: &str) -> Result<Cleaned, CleanError> {
    let chars = raw.chars().count();
    if chars > MAX_ADDRESS_CHARS {
        return Err(CleanError::TooLong { chars });
    }
    let mut steps = Vec::new();
    let mut note = |step: CleanStep, changed: bool| {
        if changed && !steps.contains(&step) {
            steps.push(step);
        }
    };

    let half: String = raw.chars().map(half_width).collect();
    note(CleanStep::FullWidth, half != raw);
    // Control characters (a newline inside a cell) are spaces.
    let half: String = half
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = half.trim();
    note(CleanStep::Trim, trimmed.len() != half.len());

    let (text, company) = strip_company(trimmed);
    note(CleanStep::Company, company);
    let (text, brackets) = strip_brackets(&text);
    note(CleanStep::Brackets, brackets);

    // `도로명 건물번호, 상세주소`: the detail after the first comma, when a house number
    // precedes it (other text, a foreign address, keeps its commas).
    let (text, after_comma) = match text.split_once(',') {
        Some((head, tail)) if house_number(&tokens_of(head)).0.is_some() => {
            (head.to_string(), Some(tail.to_string()))
        }
        _ => (text, None),
    };
    if let Some(tail) = &after_comma {
        let tokens: Vec<&str> = tail.split_whitespace().collect();
        let all_units = !tokens.is_empty() && tokens.iter().all(|t| is_floor_or_unit(t));
        note(CleanStep::FloorUnit, all_units);
        note(CleanStep::Detail, !tokens.is_empty() && !all_units);
    }

    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    note(CleanStep::Spaces, collapsed.trim() != text.trim());

    let mut tokens = tokens_of(&collapsed);
    let (number_at, kind) = house_number(&tokens);
    match number_at {
        Some(i) => {
            for t in tokens.drain(i + 1..) {
                let unit = is_floor_or_unit(&t);
                note(CleanStep::FloorUnit, unit);
                note(CleanStep::Detail, !unit);
            }
            if let Some(n) = tokens[i].strip_suffix("번지") {
                tokens[i] = n.to_string();
                note(CleanStep::Detail, true);
            }
        }
        None => {
            let before = tokens.len();
            let mut first = true;
            tokens.retain(|t| std::mem::take(&mut first) || !is_floor_or_unit(t));
            note(CleanStep::FloorUnit, tokens.len() != before);
        }
    }
    let text = tokens.join(" ").trim().to_string();
    if text.is_empty() || !text.chars().any(char::is_alphanumeric) {
        return Err(CleanError::Empty);
    }
    Ok(Cleaned { text, steps, kind })
}

/// `Ａ` → `A`, `１` → `1`, `，` → `,`, the ideographic space → a space.
fn half_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

const COMPANY_MARKS: [&str; 8] = [
    "(주)",
    "㈜",
    "(유)",
    "㈲",
    "(사)",
    "(재)",
    "주식회사",
    "유한회사",
];

/// A company name in front: `(주)행복상사 세종로 1-68`, `㈜ 행복상사 …`, `주식회사 행복상사 …`,
/// `행복상사(주) …`. The mark and the one name after it go; a name that already looks like
/// the address (`서울…`, `…구`) stays.
fn strip_company(s: &str) -> (String, bool) {
    let first = s.split_whitespace().next().unwrap_or("");
    if COMPANY_MARKS
        .iter()
        .any(|m| first.len() > m.len() && first.ends_with(m))
    {
        return (rest_after(s, 1), true);
    }
    let Some(mark) = COMPANY_MARKS.iter().find(|m| s.starts_with(**m)) else {
        return (s.to_string(), false);
    };
    let rest = s[mark.len()..].trim_start();
    let name = rest.split_whitespace().next().unwrap_or("");
    if name.is_empty() || looks_like_address_start(name) {
        return (rest.to_string(), true);
    }
    (rest_after(rest, 1), true)
}

fn tokens_of(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// `s` without its first `n` whitespace-separated tokens.
fn rest_after(s: &str, n: usize) -> String {
    s.split_whitespace().skip(n).collect::<Vec<_>>().join(" ")
}

const REGIONS: [&str; 17] = [
    "서울", "부산", "대구", "인천", "광주", "대전", "울산", "세종", "경기", "강원", "충북", "충남",
    "전북", "전남", "경북", "경남", "제주",
];

fn looks_like_address_start(token: &str) -> bool {
    REGIONS.iter().any(|r| token.starts_with(r))
        || ["시", "도", "구", "군"].iter().any(|e| token.ends_with(e)) && token.chars().count() <= 5
}

/// Text without `(…)`, `[…]`, `{…}`, `<…>` notes (an unclosed bracket stays as it is).
fn strip_brackets(s: &str) -> (String, bool) {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    'outer: while let Some(start) = rest.find(['(', '[', '{', '<']) {
        let open = rest[start..].chars().next().unwrap_or('(');
        let close = match open {
            '(' => ')',
            '[' => ']',
            '{' => '}',
            _ => '>',
        };
        match rest[start..].find(close) {
            Some(len) => {
                out.push_str(&rest[..start]);
                out.push(' ');
                rest = &rest[start + len + close.len_utf8()..];
                changed = true;
            }
            None => break 'outer,
        }
    }
    out.push_str(rest);
    (out, changed)
}

/// `3층`, `지하1층`, `지상2층`, `B1`, `B1층`, `1F`, `101호`, `101-1호`, `101동`, `제3층`,
/// `3~4층`, `일부`, `지하`, `전체`, `1층일부`.
fn is_floor_or_unit(token: &str) -> bool {
    let t = token.trim_matches(|c: char| c == ',' || c == '.');
    if matches!(t, "일부" | "전체" | "지하" | "지상" | "전층" | "상가") {
        return true;
    }
    let t = t.strip_suffix("일부").unwrap_or(t);
    let t = t
        .strip_prefix("지하")
        .or_else(|| t.strip_prefix("지상"))
        .or_else(|| t.strip_prefix('제'))
        .unwrap_or(t);
    let (body, suffix_ok) = if let Some(b) = t.strip_prefix(['B', 'b']) {
        (b.strip_suffix('층').unwrap_or(b), true)
    } else if let Some(b) = t.strip_suffix(['F', 'f']) {
        (b, true)
    } else if let Some(b) = ["층", "호", "동", "호실"]
        .iter()
        .find_map(|s| t.strip_suffix(s))
    {
        (b, true)
    } else {
        (t, false)
    };
    suffix_ok
        && !body.is_empty()
        && body.chars().any(|c| c.is_ascii_digit())
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '~' | ','))
}

/// `175`, `1-68`, `1-68번지`, `산12`, `산12-3`.
fn is_house_number(token: &str) -> bool {
    let t = token.strip_suffix("번지").unwrap_or(token);
    let t = t.strip_prefix('산').unwrap_or(t);
    let mut parts = t.splitn(2, '-');
    let main = parts.next().unwrap_or("");
    let sub = parts.next();
    let digits = |s: &str| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    digits(main) && sub.is_none_or(digits)
}

fn starts_with_digit(t: &str) -> bool {
    t.chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// A road name: `세종대로`, `테헤란로`, `봉은사로86길`, `올림픽로35가길`.
fn is_road(t: &str) -> bool {
    !starts_with_digit(t) && (t.ends_with('로') || t.ends_with('길')) && t.chars().count() >= 2
}

/// A parcel area: `역삼동`, `태평로1가`, `수입리`, `서종면`.
fn is_area(t: &str) -> bool {
    !starts_with_digit(t)
        && ["동", "리", "가", "읍", "면"]
            .iter()
            .any(|e| t.ends_with(e))
        && t.chars().count() >= 2
}

/// Where the house number is (after a road or parcel area, `지하` or `산` between them
/// allowed), and so which kind of address this is.
fn house_number(tokens: &[String]) -> (Option<usize>, AddressKind) {
    for i in 1..tokens.len() {
        let mut j = i - 1;
        let mut number = i;
        let t = tokens[i].as_str();
        if (t == "지하" || t == "산") && i + 1 < tokens.len() {
            number = i + 1;
        } else if matches!(tokens[j].as_str(), "지하" | "산") && j > 0 {
            j -= 1;
        }
        if !is_house_number(&tokens[number]) {
            continue;
        }
        let before = tokens[j].as_str();
        if is_road(before) {
            return (Some(number), AddressKind::Road);
        }
        if is_area(before) {
            return (Some(number), AddressKind::Parcel);
        }
    }
    (None, AddressKind::Any)
}

#[cfg(test)]
mod tests {
    use super::CleanStep::*;
    use super::*;

    /// Real-looking cells as found in LOCALDATA exports, store lists and building registers.
    #[test]
    fn cleans_a_table_of_korean_addresses() {
        let road = AddressKind::Road;
        let parcel = AddressKind::Parcel;
        let any = AddressKind::Any;
        #[rustfmt::skip]
        let table: &[(&str, &str, AddressKind, &[CleanStep])] = &[
            ("서울특별시 중구 세종대로 110", "서울특별시 중구 세종대로 110", road, &[]),
            ("서울 종로구 세종대로 175, 3층", "서울 종로구 세종대로 175", road, &[FloorUnit]),
            ("  서울특별시   강남구 테헤란로  152 ", "서울특별시 강남구 테헤란로 152", road, &[Trim, Spaces]),
            ("(주)행복상사 세종로 1-68", "세종로 1-68", road, &[Company]),
            ("㈜행복상사 서울 종로구 세종로 1-68", "서울 종로구 세종로 1-68", road, &[Company]),
            ("주식회사 행복상사 서울 중구 태평로1가 31", "서울 중구 태평로1가 31", parcel, &[Company]),
            ("행복상사(주) 부산광역시 해운대구 우동 1408", "부산광역시 해운대구 우동 1408", parcel, &[Company]),
            ("(주) 서울 마포구 월드컵북로 396", "서울 마포구 월드컵북로 396", road, &[Company]),
            ("서울특별시 종로구 세종대로 175 (세종로)", "서울특별시 종로구 세종대로 175", road, &[Brackets]),
            ("경기도 성남시 분당구 판교역로 166 [카카오 판교아지트]", "경기도 성남시 분당구 판교역로 166", road, &[Brackets]),
            ("서울 강남구 테헤란로 152 3층 301호", "서울 강남구 테헤란로 152", road, &[FloorUnit]),
            ("서울 강남구 테헤란로 152 B1", "서울 강남구 테헤란로 152", road, &[FloorUnit]),
            ("서울 중구 을지로 281 지하1층", "서울 중구 을지로 281", road, &[FloorUnit]),
            ("서울특별시 중구 세종대로 지하 2", "서울특별시 중구 세종대로 지하 2", road, &[]),
            ("인천광역시 연수구 송도동 24-4번지", "인천광역시 연수구 송도동 24-4", parcel, &[Detail]),
            ("경기 양평군 서종면 수입리 산 12", "경기 양평군 서종면 수입리 산 12", parcel, &[]),
            ("서울 송파구 올림픽로35가길 10 101동 1203호", "서울 송파구 올림픽로35가길 10", road, &[FloorUnit]),
            ("서울특별시 강남구 봉은사로86길 6, 레이크빌딩 2층", "서울특별시 강남구 봉은사로86길 6", road, &[Detail]),
            ("서울 강남구 역삼동 737 강남파이낸스센터", "서울 강남구 역삼동 737", parcel, &[Detail]),
            ("서울　종로구　세종대로　１７５", "서울 종로구 세종대로 175", road, &[FullWidth]),
            ("대전광역시 서구 둔산로 100,１층 일부", "대전광역시 서구 둔산로 100", road, &[FullWidth, FloorUnit]),
            ("제주특별자치도 제주시 첨단로 242 1F", "제주특별자치도 제주시 첨단로 242", road, &[FloorUnit]),
            ("광주광역시 서구 내방로 111\n(치평동)", "광주광역시 서구 내방로 111", road, &[Brackets]),
            ("서울특별시 강서구", "서울특별시 강서구", any, &[]),
            ("서울 중구 명동 3층", "서울 중구 명동", any, &[FloorUnit]),
            ("1600 Amphitheatre Parkway, Mountain View, CA", "1600 Amphitheatre Parkway, Mountain View, CA", any, &[]),
        ];
        assert!(table.len() >= 20);
        for (raw, want, kind, steps) in table {
            let got = clean(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(got.text, *want, "{raw:?}");
            assert_eq!(got.kind, *kind, "{raw:?}");
            assert_eq!(got.steps, *steps, "{raw:?}");
        }
    }

    #[test]
    fn nothing_readable_is_an_error_not_a_query() {
        for raw in ["", "   ", "-", "( )", "()", "[본점]", "\u{3000}"] {
            assert_eq!(clean(raw), Err(CleanError::Empty), "{raw:?}");
        }
        let long = "서울 ".repeat(200);
        let e = clean(&long).unwrap_err();
        assert_eq!(e, CleanError::TooLong { chars: 600 });
        assert!(e.to_string().contains("at most 300"), "{e}");
    }

    #[test]
    fn unclosed_brackets_and_lone_marks_stay_readable() {
        let c = clean("서울 중구 세종대로 110 (태평로").unwrap();
        assert_eq!(c.text, "서울 중구 세종대로 110");
        assert_eq!(c.steps, vec![Detail]);
        let c = clean("주식회사").unwrap_err();
        assert_eq!(c, CleanError::Empty);
        // The same cell always cleans the same way (the cache keys on it).
        let a = clean("(주)행복상사  세종로 1-68 , 3층").unwrap();
        assert_eq!(a, clean("(주)행복상사  세종로 1-68 , 3층").unwrap());
        assert_eq!(a.text, "세종로 1-68");
    }

    #[test]
    fn floor_and_unit_tokens_are_recognised() {
        for t in [
            "3층",
            "지하1층",
            "B1",
            "b2층",
            "1F",
            "101호",
            "101-1호",
            "101동",
            "제3층",
            "3~4층",
            "1층일부",
            "일부",
        ] {
            assert!(is_floor_or_unit(t), "{t}");
        }
        for t in ["역삼동", "세종대로", "175", "B", "층", "1-68", "태평로1가"] {
            assert!(!is_floor_or_unit(t), "{t}");
        }
    }
}
