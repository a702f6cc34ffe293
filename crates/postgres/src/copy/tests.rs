use super::*;
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_schema::{DataType, Field, Schema};

/// Builds numeric's binary form from decimal text (as Postgres would send it).
fn num(s: &str) -> Vec<u8> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int = int.trim_start_matches('0');
    let int_pad = (4 - int.len() % 4) % 4;
    let int_s = format!("{}{}", "0".repeat(int_pad), int);
    let frac_pad = (4 - frac.len() % 4) % 4;
    let frac_s = format!("{}{}", frac, "0".repeat(frac_pad));
    let mut groups: Vec<u16> = Vec::new();
    for c in int_s.as_bytes().chunks(4).chain(frac_s.as_bytes().chunks(4)) {
        groups.push(std::str::from_utf8(c).unwrap().parse().unwrap());
    }
    let mut weight = (int_s.len() / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = Vec::new();
    out.extend((groups.len() as i16).to_be_bytes());
    out.extend(weight.to_be_bytes());
    out.extend((if neg && !groups.is_empty() { NUMERIC_NEG } else { 0 }).to_be_bytes());
    out.extend((frac.len() as u16).to_be_bytes());
    for g in groups {
        out.extend(g.to_be_bytes());
    }
    out
}

fn special(sign: u16) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0];
    out.extend(sign.to_be_bytes());
    out.extend([0, 0]);
    out
}

fn text(v: &[u8]) -> String {
    let mut s = String::new();
    numeric_to_text(v, &mut s).unwrap();
    s
}

#[test]
fn numeric_text_round_trips() {
    for s in [
        "0",
        "1",
        "-1",
        "12.50",
        "0.0001",
        "-0.000012345",
        "123456789012345678901234567890123456789012345678901234567890",
        "99999999999999999999999999.9999999999",
        "10000",
        "1.000000",
        "0.10",
    ] {
        assert_eq!(text(&num(s)), s, "{s}");
    }
    assert_eq!(text(&special(NUMERIC_NAN)), "NaN");
    assert_eq!(text(&special(NUMERIC_PINF)), "Infinity");
    assert_eq!(text(&special(NUMERIC_NINF)), "-Infinity");
}

#[test]
fn numeric_to_decimal_is_exact_or_refused() {
    assert_eq!(numeric_to_i128(&num("12.5"), 12, 2).unwrap(), Ok(1250));
    assert_eq!(numeric_to_i128(&num("-0.01"), 12, 2).unwrap(), Ok(-1));
    assert_eq!(numeric_to_i128(&num("0"), 12, 2).unwrap(), Ok(0));
    assert_eq!(numeric_to_i128(&num("12300"), 7, 0).unwrap(), Ok(12300));
    let max = "9999999999999999999999999999.9999999999";
    assert_eq!(numeric_to_i128(&num(max), 38, 10).unwrap(), Ok(99_999_999_999_999_999_999_999_999_999_999_999_999));
    assert_eq!(
        numeric_to_i128(&num(&format!("-{max}")), 38, 10).unwrap(),
        Ok(-99_999_999_999_999_999_999_999_999_999_999_999_999)
    );
    assert!(numeric_to_i128(&num("1.005"), 12, 2).unwrap().is_err());
    assert!(numeric_to_i128(&num("100"), 2, 0).unwrap().is_err());
    assert!(numeric_to_i128(&special(NUMERIC_NAN), 12, 2).unwrap().unwrap_err().contains("NaN"));
    assert!(numeric_to_i128(&special(NUMERIC_NINF), 12, 2).unwrap().unwrap_err().contains("-Infinity"));
}

#[test]
fn intervals_print_like_postgres_iso8601() {
    let f = |m, d, us| {
        let mut s = String::new();
        interval_iso8601(m, d, us, &mut s);
        s
    };
    assert_eq!(f(0, 0, 0), "PT0S");
    assert_eq!(f(14, 3, 4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000), "P1Y2M3DT4H5M6.5S");
    assert_eq!(f(-14, -3, -(4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000)), "P-1Y-2M-3DT-4H-5M-6.5S");
    assert_eq!(f(0, 0, -1_500_000), "PT-1.5S");
    assert_eq!(f(0, 0, -500_000), "PT-0.5S");
    assert_eq!(f(12, 0, 0), "P1Y");
    assert_eq!(f(0, 1, 1), "P1DT0.000001S");
}

#[test]
fn uuids_format_canonically() {
    let b: [u8; 16] = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 0xff];
    assert_eq!(format_uuid(&b), "12345678-9abc-def0-0001-0203040506ff");
}

fn copy_stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(SIGNATURE);
    out.extend(0u32.to_be_bytes());
    out.extend(0u32.to_be_bytes());
    for r in rows {
        out.extend((r.len() as i16).to_be_bytes());
        for f in r {
            match f {
                None => out.extend((-1i32).to_be_bytes()),
                Some(v) => {
                    out.extend((v.len() as i32).to_be_bytes());
                    out.extend(v);
                }
            }
        }
    }
    out.extend((-1i16).to_be_bytes());
    out
}

fn decoder(batch_rows: usize, fail: bool) -> RowDecoder {
    let cols = vec![
        ColumnRead { name: "id".into(), decoder: Decoder::Int8 },
        ColumnRead { name: "d".into(), decoder: Decoder::Date },
        ColumnRead { name: "amount".into(), decoder: Decoder::Decimal { precision: 12, scale: 2 } },
    ];
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("d", DataType::Date32, true),
        Field::new("amount", DataType::Decimal128(12, 2), true),
    ]));
    let bounds = DecodeBounds {
        limits: ValueLimits::STAGING,
        fail_on_unrepresentable: fail,
        batch_rows,
        batch_bytes: usize::MAX,
    };
    RowDecoder::new("public.t", &cols, schema, vec![0], bounds)
}

fn sample_rows() -> Vec<Vec<Option<Vec<u8>>>> {
    (0..10i64)
        .map(|i| {
            let date = if i == 3 { i32::MAX } else { i as i32 };
            let amount = if i == 5 { special(NUMERIC_NAN) } else { num(&format!("{i}.25")) };
            vec![
                Some(i.to_be_bytes().to_vec()),
                Some(date.to_be_bytes().to_vec()),
                if i == 7 { None } else { Some(amount) },
            ]
        })
        .collect()
}

#[test]
fn parser_handles_any_chunking_and_batches_rows() {
    let stream = copy_stream(&sample_rows());
    for chunk in [1usize, 3, 7, 19, 64, stream.len()] {
        let mut rows = decoder(4, false);
        let mut p = CopyParser::new();
        for c in stream.chunks(chunk) {
            p.feed(c, &mut rows).unwrap();
        }
        p.finish().unwrap();
        rows.finish_batch().unwrap();
        let batches: Vec<_> = rows.take_ready().map(|(b, _)| b).collect();
        assert_eq!(batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(), vec![4, 4, 2], "chunk {chunk}");
        let ids: Vec<i64> =
            batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect();
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        let d = batches[0].column(1).as_primitive::<Date32Type>();
        assert_eq!(d.value(1), 1 + EPOCH_DAYS);
        assert!(d.is_null(3), "infinity date is NULL");
        let a = batches[1].column(2).as_primitive::<Decimal128Type>();
        assert_eq!(a.value(0), 425);
        assert!(a.is_null(1), "NaN amount is NULL");
        assert!(a.is_null(3), "NULL stays NULL");
        let entries = rows.tally.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].column, "d");
        assert_eq!(entries[0].count, 1);
        assert_eq!(entries[0].sample_keys, vec!["id=3"]);
        assert_eq!(entries[1].column, "amount");
        assert_eq!(entries[1].sample_keys, vec!["id=5"]);
    }
}

#[test]
fn fail_mode_stops_with_the_key() {
    let stream = copy_stream(&sample_rows());
    let mut rows = decoder(100, true);
    let e = CopyParser::new().feed(&stream, &mut rows).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data);
    assert!(e.to_string().contains("column d of the row with id=3: date is infinity"), "{e}");
}

#[test]
fn truncated_stream_is_an_error() {
    let stream = copy_stream(&sample_rows());
    let mut rows = decoder(100, false);
    let mut p = CopyParser::new();
    p.feed(&stream[..stream.len() - 10], &mut rows).unwrap();
    assert_eq!(p.finish().unwrap_err().kind(), ErrorKind::Transient);
}

#[test]
fn malformed_streams_are_data_errors() {
    let mut rows = decoder(100, false);
    assert!(CopyParser::new().feed(b"NOTPGCOPY..........", &mut rows).is_err());
    let mut bad = copy_stream(&[vec![Some(vec![1, 2, 3]), None, None]]);
    let e = CopyParser::new().feed(&bad, &mut rows).unwrap_err();
    assert!(e.to_string().contains("malformed"), "{e}");
    bad = copy_stream(&[vec![None, None]]);
    let e = CopyParser::new().feed(&bad, &mut rows).unwrap_err();
    assert!(e.to_string().contains("expected 3"), "{e}");
}
