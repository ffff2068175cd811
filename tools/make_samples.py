#!/usr/bin/env python3
"""Regenerate the sample inputs in samples/ (see samples/README.md).

Usage (from anywhere):  python3 tools/make_samples.py
Needs pyproj (written with pyproj 3.7.2). Deterministic: a fixed random seed, so running it
again gives byte-identical files. Projected coordinates come from PROJ's default operation for
EPSG:4326 -> EPSG:5174 / EPSG:5186 with GIS axis order (x = easting, y = northing).

Files:
  samples/localdata_5174.csv  CP949, LOCALDATA-style headers, EPSG:5174, with bad rows
  samples/stores_wgs84.csv    UTF-8, name,category,lon,lat
  samples/multi_sheet.csv     UTF-8, 시도 column, x/y in EPSG:5186 (for --sheet-by 시도)
"""

import csv
import os
import random
import sys

import pyproj
from pyproj import Transformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "samples")

# City -> (lon, lat of the centre, spread in degrees, districts). Each district:
# (name, LOCALDATA local-government code, phone area code, postal-code prefix, jibun dong,
#  road names).
CITIES = {
    "서울특별시": (
        126.9780, 37.5665, 0.07,
        [
            ("종로구", "3000000", "02", "031", "세종로", ["세종대로", "종로", "삼일대로", "율곡로"]),
            ("중구", "3010000", "02", "045", "명동2가", ["명동길", "을지로", "퇴계로", "남대문로"]),
            ("마포구", "3130000", "02", "040", "서교동", ["양화로", "와우산로", "월드컵로", "독막로"]),
            ("강남구", "3220000", "02", "061", "역삼동", ["테헤란로", "강남대로", "논현로", "봉은사로"]),
        ],
    ),
    "부산광역시": (
        129.0756, 35.1796, 0.06,
        [
            ("해운대구", "3330000", "051", "481", "우동", ["해운대로", "구남로", "달맞이길"]),
            ("부산진구", "3290000", "051", "472", "부전동", ["중앙대로", "서면로", "동천로"]),
            ("중구", "3250000", "051", "489", "남포동", ["구덕로", "광복로", "중앙대로"]),
        ],
    ),
    "대구광역시": (
        128.6014, 35.8714, 0.05,
        [
            ("중구", "3410000", "053", "419", "동성로2가", ["동성로", "국채보상로", "달구벌대로"]),
            ("수성구", "3460000", "053", "420", "범어동", ["달구벌대로", "동대구로", "들안로"]),
        ],
    ),
    "광주광역시": (
        126.8526, 35.1595, 0.04,
        [
            ("동구", "3590000", "062", "614", "충장로2가", ["충장로", "금남로", "제봉로"]),
            ("서구", "3600000", "062", "619", "치평동", ["상무대로", "상무중앙로", "시청로"]),
        ],
    ),
    "제주특별자치도": (
        126.5312, 33.4996, 0.04,
        [
            ("제주시", "6510000", "064", "632", "연동", ["연북로", "신대로", "노연로"]),
            ("서귀포시", "6520000", "064", "635", "서귀동", ["중정로", "태평로", "일주동로"]),
        ],
    ),
}

# Shop names: brand or word + branch, as registered.
NAMES = [
    "김밥천국", "본죽", "할매국밥", "명동칼국수", "청춘포차", "한솥도시락", "교촌치킨", "맘스터치",
    "이디야커피", "파리바게뜨", "뚜레쥬르", "홍콩반점0410", "새마을식당", "원조감자탕", "고향집",
    "바다횟집", "제일분식", "소문난순대국", "남도한정식", "진미식당", "옛날손짜장", "행복한베이커리",
    "카페 온더문", "스시하루", "돈까스클럽", "우리동네떡볶이", "전주비빔밥", "토속촌", "흑돼지명가",
    "해물뚝배기", "밀면전문점", "막창골목", "한우마을", "두부요리집", "북어국집",
]

# (업종 service name, 업태 categories)
SERVICES = [
    ("일반음식점", ["한식", "분식", "중국식", "일식", "경양식", "호프/통닭", "회집"]),
    ("휴게음식점", ["커피숍", "패스트푸드", "다방", "기타 휴게음식점"]),
    ("제과점영업", ["제과점영업"]),
]

LOCALDATA_HEADERS = [
    "번호", "개방서비스명", "개방자치단체코드", "관리번호", "인허가일자", "영업상태명",
    "소재지전화", "소재지우편번호", "소재지전체주소", "도로명전체주소", "사업장명",
    "업태구분명", "좌표정보(x)", "좌표정보(y)",
]


def pick_point(rng, city):
    lon0, lat0, spread, _ = CITIES[city]
    # Roughly clustered around the centre, as shops are.
    return (lon0 + rng.gauss(0, spread / 2), lat0 + rng.gauss(0, spread / 2.5))


def localdata(rng):
    to5174 = Transformer.from_crs(4326, 5174, always_xy=True)
    cities = list(CITIES)
    rows = []
    n = 200
    for i in range(1, n + 1):
        city = cities[(i - 1) % len(cities)] if i % 3 else "서울특별시"
        district = CITIES[city][3][0] if i == 3 else rng.choice(CITIES[city][3])
        gu, code, area, postal, dong, roads = district
        service, kinds = rng.choice(SERVICES)
        kind = rng.choice(kinds)
        year = rng.randint(1995, 2024)
        date = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        serial = f"{code}-{rng.choice(['101', '104', '111'])}-{year}-{rng.randint(1, 2999):05d}"
        status = "영업/정상" if rng.random() < 0.8 else "폐업"
        if rng.random() < 0.3:
            phone = ""
        elif area == "02":
            phone = f"02-{rng.randint(2000, 9999)}-{rng.randint(0, 9999):04d}"
        else:
            phone = f"{area}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
        zipcode = f"{postal}{rng.randint(0, 99):02d}"
        jibun = f"{city} {gu} {dong} {rng.randint(1, 300)}-{rng.randint(1, 40)}번지"
        street = rng.choice(roads)
        road = f"{city} {gu} {street} {rng.randint(1, 250)}"
        if rng.random() < 0.6:
            # LOCALDATA's road addresses carry floor and dong after a comma: quoted in CSV.
            road += f", {rng.randint(1, 5)}층 ({dong})"
        brand = rng.choice(NAMES)
        r = rng.random()
        name = f"{brand} {dong}점" if r < 0.4 else f"{brand} {street}점" if r < 0.6 else brand
        if i == 3:
            lon, lat = 126.97694, 37.57206  # 세종로, by 광화문
        else:
            lon, lat = pick_point(rng, city)
        x, y = to5174.transform(lon, lat, errcheck=True)
        rows.append([
            str(i), service, code, serial, date, status, phone, zipcode, jibun, road, name,
            kind, f"{x:.9f}", f"{y:.9f}",
        ])

    # Cells a spreadsheet must keep as text.
    rows[2][7] = "03171"  # 종로구 세종로: a leading zero
    rows[2][8] = "서울특별시 종로구 세종로 1-68번지"
    rows[2][9] = "서울특별시 종로구 세종대로 175, 지하1층 (세종로)"
    rows[10][10] = "=SUM(A1)"  # formula-looking text, must stay text

    # Rows that cannot become points (the column they break, what it holds).
    bad = {
        14: (12, ""),  # empty x
        29: (12, "-"),
        47: (13, "N/A"),
        63: (12, "좌표없음"),  # text
        88: (12, "1,234.5.6"),
        101: (13, "NaN"),
        150: (12, "9000000.000000000"),  # a number, but far outside Korea
    }
    for index, (col, value) in bad.items():
        rows[index][col] = value
    rows[120] = rows[120][:9]  # ragged: the export lost the rest of the row
    return rows


def stores(rng):
    categories = ["편의점", "카페", "음식점", "약국", "서점", "베이커리"]
    brands = {
        "편의점": ["GS25", "CU", "세븐일레븐", "이마트24"],
        "카페": ["스타벅스", "이디야커피", "투썸플레이스", "메가커피"],
        "음식점": ["김밥천국", "본죽", "할매국밥", "한솥도시락"],
        "약국": ["온누리약국", "우리들약국", "건강약국"],
        "서점": ["교보문고", "영풍문고", "동네책방"],
        "베이커리": ["파리바게뜨", "뚜레쥬르", "성심당"],
    }
    branch_of = {
        "서울특별시": ["광화문", "명동", "홍대입구", "강남역", "잠실"],
        "부산광역시": ["서면", "해운대", "남포", "부산대"],
        "대구광역시": ["동성로", "범어", "반월당"],
        "광주광역시": ["충장로", "상무", "첨단"],
        "제주특별자치도": ["제주시청", "노형", "서귀포"],
    }
    rows = []
    cities = list(CITIES)
    for i in range(50):
        city = cities[i % len(cities)]
        category = rng.choice(categories)
        name = f"{rng.choice(brands[category])} {rng.choice(branch_of[city])}점"
        lon, lat = pick_point(rng, city)
        rows.append([name, category, f"{lon:.6f}", f"{lat:.6f}"])
    # A comma inside a name: written quoted.
    rows[7] = ["교보문고 광화문점, 핫트랙스", "서점", "126.977860", "37.571020"]
    return rows


def multi_sheet(rng):
    to5186 = Transformer.from_crs(4326, 5186, always_xy=True)
    provinces = ["서울특별시", "부산광역시", "대구광역시", "제주특별자치도"]
    kinds = ["공공도서관", "주민센터", "보건소", "공영주차장", "체육센터"]
    rows = []
    for i in range(60):
        province = provinces[rng.choice([0, 0, 1, 1, 2, 3])]
        gu = rng.choice(CITIES[province][3])[0]
        kind = rng.choice(kinds)
        lon, lat = pick_point(rng, province)
        x, y = to5186.transform(lon, lat, errcheck=True)
        rows.append([str(i + 1), province, gu, f"{gu} {kind} {rng.randint(1, 9)}", f"{x:.3f}", f"{y:.3f}"])
    return rows


def write(name, header, rows, encoding, newline):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f, lineterminator=newline)
        w.writerow(header)
        w.writerows(rows)
    print(f"wrote {path} ({len(rows)} rows, {encoding})", file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(5174)
    # LOCALDATA downloads are CP949 with CRLF line ends.
    write("localdata_5174.csv", LOCALDATA_HEADERS, localdata(rng), "cp949", "\r\n")
    write("stores_wgs84.csv", ["name", "category", "lon", "lat"], stores(rng), "utf-8", "\n")
    write("multi_sheet.csv", ["번호", "시도", "시군구", "시설명", "x", "y"], multi_sheet(rng),
          "utf-8", "\n")
    print(f"pyproj {pyproj.__version__}, PROJ {pyproj.proj_version_str}", file=sys.stderr)


if __name__ == "__main__":
    main()
