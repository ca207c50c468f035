//! Raw JSON pass-through for `json` and `jsonb` columns.
//!
//! The JSON text comes from pydantic-core already serialised; re-parsing it (or walking it as a
//! tree) would cost time and risk changing numbers. On the wire, `jsonb` in binary format is a
//! version byte (`1`) followed by the JSON text, and `json` is the text alone. tokio-postgres'
//! own `&[u8]` impls accept only `bytea`, hence these small wrappers.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use postgres_types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};

/// The only `jsonb` binary format version PostgreSQL has defined.
const JSONB_VERSION: u8 = 1;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// JSON text to send as a `json` or `jsonb` parameter, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub struct JsonParam<'a>(pub &'a [u8]);

impl ToSql for JsonParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        encode(self.0, ty, out);
        Ok(IsNull::No)
    }

    accepts!(JSON, JSONB);
    to_sql_checked!();
}

/// JSON text to send as a `json` parameter (kept as written, for `json` columns), borrowed.
/// Statements declare the type of their parameters (see `statement.rs`): [`JsonParam`] is
/// sent as `jsonb`, this one as `json`.
#[derive(Debug, Clone, Copy)]
pub struct JsonTextParam<'a>(pub &'a [u8]);

impl ToSql for JsonTextParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        encode(self.0, ty, out);
        Ok(IsNull::No)
    }

    accepts!(JSON, JSONB);
    to_sql_checked!();
}

/// Writes JSON text in the binary wire format of `ty` (`json` or `jsonb`).
pub fn encode(json: &[u8], ty: &Type, out: &mut BytesMut) {
    out.reserve(json.len() + 1);
    if *ty == Type::JSONB {
        out.put_u8(JSONB_VERSION);
        out.put_slice(&keep_floats_for_jsonb(json));
    } else {
        out.put_slice(json);
    }
}

/// Rewrites float literals that `jsonb` would turn into integers.
///
/// `jsonb` stores numbers as `numeric` and prints `1e+16` back as `10000000000000000`, which
/// a JSON reader then takes for an int (pydantic-core writes floats >= 1e16 in exponent form).
/// Writing such a literal out in full with a `.0` keeps it a float with the same value:
/// `numeric` preserves the scale. Everything else, strings included, passes through untouched;
/// nothing is copied when no such literal exists.
pub fn keep_floats_for_jsonb(json: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => i = skip_string(json, i + 1),
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < json.len()
                    && matches!(json[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                if let Some(expanded) = expand_positive_exponent(&json[start..i]) {
                    let buf = out.get_or_insert_with(|| Vec::with_capacity(json.len() + 32));
                    buf.extend_from_slice(&json[copied..start]);
                    buf.extend_from_slice(&expanded);
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(json),
        Some(mut buf) => {
            buf.extend_from_slice(&json[copied..]);
            Cow::Owned(buf)
        }
    }
}

/// How deeply objects and arrays nest in `json` (0 for a scalar). JSON readers bound this
/// (pydantic-core stops at 200), so deeper values are refused before they are stored.
pub fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < json.len() {
        match json[i] {
            b'"' => {
                i = skip_string(json, i + 1);
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// Index just past the closing quote of a string whose body starts at `i`.
fn skip_string(json: &[u8], mut i: usize) -> usize {
    while i < json.len() {
        match json[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// `1.5e+3` → `1500.0`; `None` for literals without a non-negative exponent (or absurd ones).
fn expand_positive_exponent(token: &[u8]) -> Option<Vec<u8>> {
    let e = token.iter().position(|&b| b == b'e' || b == b'E')?;
    let exponent: i64 = std::str::from_utf8(&token[e + 1..]).ok()?.parse().ok()?;
    if !(0..=400).contains(&exponent) {
        return None;
    }
    let (negative, mantissa) = match token[..e].split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, &token[..e]),
    };
    let (int_part, frac_part) = match mantissa.iter().position(|&b| b == b'.') {
        Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..]),
        None => (mantissa, &[][..]),
    };
    let mut digits: Vec<u8> = int_part.iter().chain(frac_part).copied().collect();
    let point = int_part.len() + exponent as usize;
    if digits.len() < point {
        digits.resize(point, b'0');
    }
    let (whole, fraction) = digits.split_at(point);
    let whole = match whole.iter().position(|&b| b != b'0') {
        Some(first) => &whole[first..],
        None => &b"0"[..],
    };
    let mut out = Vec::with_capacity(whole.len() + fraction.len() + 3);
    if negative {
        out.push(b'-');
    }
    out.extend_from_slice(whole);
    out.push(b'.');
    if fraction.is_empty() {
        out.push(b'0');
    } else {
        out.extend_from_slice(fraction);
    }
    Some(out)
}

/// JSON text read from a `json` or `jsonb` column, borrowed from the row buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonText<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for JsonText<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode(ty, raw).map(JsonText)
    }

    accepts!(JSON, JSONB);
}

/// Strips the `jsonb` version byte (checking it); `json` text is returned as is.
pub fn decode<'a>(ty: &Type, raw: &'a [u8]) -> Result<&'a [u8], BoxError> {
    if *ty == Type::JSONB {
        match raw.split_first() {
            Some((&JSONB_VERSION, text)) => Ok(text),
            Some((version, _)) => Err(format!("unsupported jsonb version {version}").into()),
            None => Err("empty jsonb value".into()),
        }
    } else {
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_counts_containers_outside_strings() {
        assert_eq!(nesting_depth(b"1"), 0);
        assert_eq!(nesting_depth(br#"{"a": [1, {"b": []}]}"#), 4);
        assert_eq!(nesting_depth(br#"{"a": "[[[{{{\"[["}"#), 1);
        assert_eq!(nesting_depth(br#"[[], [[]], []]"#), 3);
    }

    #[test]
    fn jsonb_gets_version_byte_json_does_not() {
        let text = br#"{"a":1}"#;
        let mut out = BytesMut::new();
        JsonParam(text).to_sql(&Type::JSONB, &mut out).unwrap();
        assert_eq!(&out[..], b"\x01{\"a\":1}");
        let mut out = BytesMut::new();
        JsonParam(text).to_sql(&Type::JSON, &mut out).unwrap();
        assert_eq!(&out[..], text);
    }

    #[test]
    fn accepts_only_json_types() {
        assert!(<JsonParam as ToSql>::accepts(&Type::JSONB));
        assert!(<JsonParam as ToSql>::accepts(&Type::JSON));
        assert!(!<JsonParam as ToSql>::accepts(&Type::BYTEA));
        assert!(!<JsonParam as ToSql>::accepts(&Type::TEXT));
        assert!(<JsonText as FromSql>::accepts(&Type::JSONB));
        assert!(!<JsonText as FromSql>::accepts(&Type::BYTEA));
    }

    #[test]
    fn decode_round_trips_exact_numbers() {
        // Numbers that naive codecs break: > 2**63, 17-digit doubles, near f64::MAX.
        let text = br#"{"big":123456789012345678901234567890,"t":1732271234.1234567,"m":1e308}"#;
        let mut wire = BytesMut::new();
        encode(text, &Type::JSON, &mut wire);
        assert_eq!(decode(&Type::JSON, &wire).unwrap(), text);
        let mut wire = BytesMut::new();
        encode(text, &Type::JSONB, &mut wire);
        let stored = decode(&Type::JSONB, &wire).unwrap();
        assert_eq!(stored, &*keep_floats_for_jsonb(text));
        assert!(stored.starts_with(
            br#"{"big":123456789012345678901234567890,"t":1732271234.1234567,"m":1000"#
        ));
        assert_eq!(decode(&Type::JSON, text).unwrap(), text);
    }

    #[test]
    fn exponent_floats_are_written_out_for_jsonb() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"1e+16", b"10000000000000000.0"),
            (b"1E16", b"10000000000000000.0"),
            (b"-1.5e+3", b"-1500.0"),
            (b"1.2345e+2", b"123.45"),
            (b"0.5e1", b"5.0"),
            (b"1.5e-7", b"1.5e-7"),
            (b"12", b"12"),
            (b"1.0", b"1.0"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                &*keep_floats_for_jsonb(input),
                *expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let big = keep_floats_for_jsonb(b"1e+308");
        assert_eq!(big.len(), 309 + 2);
        assert!(big.ends_with(b".0"));
    }

    #[test]
    fn strings_and_plain_json_pass_through_without_copy() {
        let text = br#"{"s":"1e+16 \" 2e+5","n":[1,2.5,-3],"t":true,"x":null}"#;
        assert!(matches!(keep_floats_for_jsonb(text), Cow::Borrowed(_)));
        let mixed = br#"{"s":"1e+16","v":1e+16}"#;
        assert_eq!(
            &*keep_floats_for_jsonb(mixed),
            br#"{"s":"1e+16","v":10000000000000000.0}"#
        );
    }

    #[test]
    fn decode_rejects_bad_versions() {
        assert!(decode(&Type::JSONB, b"").is_err());
        assert!(decode(&Type::JSONB, b"\x02{}").is_err());
    }
}
