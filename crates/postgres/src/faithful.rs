//! What a JSON value becomes on its way through a `jsonb` column, and back.
//!
//! tokio-postgres writes a [`Value`] as serde_json's text; PostgreSQL parses it into
//! jsonb, which keeps every number as `numeric` and prints it back in plain decimal, the
//! exponent expanded (`1.7976931348623157e308` comes back as a 309-digit integer,
//! `5e-324` as `0.000…05`); tokio-postgres then parses that text with serde_json. Without
//! its `float_roundtrip` feature (this crate turns it on) serde_json reads about one such
//! decimal in five as a neighbouring float, and fails on some (`number out of range`);
//! it never reads a value nested deeper than its recursion limit; and jsonb cannot hold
//! NUL at all. This module:
//!
//! - [`check`]: whether a value reads back as it was given, or which field does not and
//!   why (admission refuses such a run before it is acknowledged);
//! - [`decode`]: reads a stored jsonb text back as tokio-postgres would, so that the
//!   store can tell one unreadable value from an unreadable row.
//!
//! Pure logic: no database, no actix.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Number, Value};

/// The deepest nesting of arrays and objects serde_json reads (its recursion limit):
/// deeper values are written by tokio-postgres but cannot be read back by it.
pub(crate) const MAX_DEPTH: usize = 127;

/// The deepest nesting admitted: a run's input is also stored inside its checkpoints and
/// events, a few levels down, which must read back too.
pub(crate) const ADMITTED_DEPTH: usize = 100;

const _: () = assert!(ADMITTED_DEPTH < MAX_DEPTH);

/// A field of a value that would not read back from jsonb as it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unfaithful {
    /// Where the field is, as a JSON path (`input.items[3].name`).
    pub(crate) path: String,
    /// Why, in words a client can act on.
    pub(crate) reason: String,
}

impl fmt::Display for Unfaithful {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.reason)
    }
}

impl std::error::Error for Unfaithful {}

/// Whether `value` (the field named `root`) reads back from a jsonb column equal to
/// itself: no NUL in any string or key, no nesting deeper than [`ADMITTED_DEPTH`], and every
/// number's PostgreSQL rendering parses back (with serde_json, as tokio-postgres reads
/// it) to the same number. "The same" is numeric equality, as serde_json's own
/// `Value` equality has it for `-0.0` and `0.0` (numeric has no negative zero); a float
/// with an integral value may also come back as that integer (`1e16` as
/// `10000000000000000`).
pub(crate) fn check(root: &str, value: &Value) -> Result<(), Unfaithful> {
    let mut path = root.to_owned();
    walk(value, &mut path, 1)?;
    // A net under the walk: the whole value, rendered as PostgreSQL prints it, read the
    // way tokio-postgres reads it. Only fails if the walk above missed a case.
    let text = serde_json::to_string(value).map_err(|e| Unfaithful { path: root.to_owned(), reason: e.to_string() })?;
    let rendered = map_numbers(&text, render_number);
    match serde_json::from_slice::<Value>(rendered.as_bytes()) {
        Ok(back) if same_json(value, &back) => Ok(()),
        Ok(_) => Err(Unfaithful {
            path: root.to_owned(),
            reason: "does not read back from PostgreSQL as it was given".to_owned(),
        }),
        Err(e) => Err(Unfaithful {
            path: root.to_owned(),
            reason: format!("cannot be read back once stored in PostgreSQL ({e})"),
        }),
    }
}

/// Checks one text (an id, a key) for NUL, which PostgreSQL's `text` cannot hold.
pub(crate) fn check_text(path: &str, text: &str) -> Result<(), Unfaithful> {
    if text.contains('\0') {
        return Err(Unfaithful { path: path.to_owned(), reason: NUL_REASON.to_owned() });
    }
    Ok(())
}

const NUL_REASON: &str =
    "contains a NUL character (U+0000), which PostgreSQL cannot store: remove it, or send the data encoded (base64, say)";

fn walk(value: &Value, path: &mut String, depth: usize) -> Result<(), Unfaithful> {
    match value {
        Value::String(s) => check_text(path, s),
        Value::Number(n) => check_number(n).map_err(|reason| Unfaithful { path: path.clone(), reason }),
        Value::Array(_) | Value::Object(_) if depth > ADMITTED_DEPTH => Err(Unfaithful {
            path: path.clone(),
            reason: format!(
                "is nested more than {ADMITTED_DEPTH} arrays or objects deep, deeper than can be read back: flatten it"
            ),
        }),
        Value::Array(items) => {
            let len = path.len();
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                walk(item, path, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            let len = path.len();
            for (key, item) in map {
                push_key(path, key);
                check_text(path, key).map_err(|e| Unfaithful {
                    reason:
                        "has a key that contains a NUL character (U+0000), which PostgreSQL cannot store: rename it"
                            .to_owned(),
                    ..e
                })?;
                walk(item, path, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) => Ok(()),
    }
}

/// `.key` for keys that read as identifiers, `["key"]` (JSON-quoted) for the others.
fn push_key(path: &mut String, key: &str) {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        path.push('.');
        path.push_str(key);
    } else {
        let quoted = serde_json::to_string(&Value::String(key.replace('\0', "\\u0000")))
            .unwrap_or_else(|_| format!("\"{key}\""));
        path.push('[');
        path.push_str(&quoted);
        path.push(']');
    }
}

/// Integers are written and printed back digit for digit; a float is written as
/// serde_json prints it and comes back as PostgreSQL renders that.
fn check_number(n: &Number) -> Result<(), String> {
    check_number_read_by(n, |text| serde_json::from_slice(text))
}

/// [`check_number`] with the reader as a parameter, for tests of a reader that loses.
fn check_number_read_by(n: &Number, read: impl Fn(&[u8]) -> serde_json::Result<Value>) -> Result<(), String> {
    if !n.is_f64() {
        return Ok(());
    }
    let text = n.to_string();
    let rendered = render_number(&text);
    match read(rendered.as_bytes()) {
        Ok(Value::Number(back)) if same_number(n, &back) => Ok(()),
        Ok(back) => Err(format!(
            "is {text}, which PostgreSQL keeps as the decimal {} and gives back as {back}, another number: \
             send it as a string, or round it",
            abbreviate(&rendered)
        )),
        Err(e) => Err(format!(
            "is {text}, which PostgreSQL keeps as a {}-digit decimal that cannot be read back ({}): \
             send it as a string, or as a smaller number",
            rendered.bytes().filter(u8::is_ascii_digit).count(),
            without_position(&e),
        )),
    }
}

/// serde_json's message without its "at line 1 column 309", which points into text the
/// client never saw.
fn without_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    match message.find(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}

fn abbreviate(text: &str) -> Cow<'_, str> {
    if text.len() <= 40 {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("{}…{} ({} characters)", &text[..20], &text[text.len() - 10..], text.len()))
    }
}

/// Equality of two numbers as JSON has them (see [`check`]): an integer read back for a
/// float is the same number when it is the float's own decimal digits, that is when it
/// converts to that very float (PostgreSQL printed the digits serde_json wrote).
fn same_number(given: &Number, back: &Number) -> bool {
    if !given.is_f64() {
        return given == back;
    }
    #[allow(clippy::cast_precision_loss)] // the conversion is the comparison
    let back = back.as_u64().map(|b| b as f64).or_else(|| back.as_i64().map(|b| b as f64)).or_else(|| back.as_f64());
    back == given.as_f64()
}

/// Deep equality, numbers compared with [`same_number`].
fn same_json(given: &Value, back: &Value) -> bool {
    match (given, back) {
        (Value::Number(a), Value::Number(b)) => same_number(a, b),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_json(a, b)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => given == back,
    }
}

/// A JSON number's text split as PostgreSQL's `numeric_in` reads it.
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
    exponent: i64,
}

fn parse_decimal(text: &str) -> Option<Decimal<'_>> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (!int.is_empty() && digits(int) && digits(frac)).then_some(Decimal { negative, int, frac, exponent })
}

/// How PostgreSQL prints a JSON number it stored: `numeric_out` of `numeric_in(text)`,
/// plain decimal, as many fraction digits as the text had after its point less its
/// exponent (at least none), no negative zero. Text that is not a JSON number is
/// returned unchanged.
pub(crate) fn render_number(text: &str) -> Cow<'_, str> {
    let Some(Decimal { negative, int, frac, exponent }) = parse_decimal(text) else {
        return Cow::Borrowed(text);
    };
    let scale = usize::try_from(i64::try_from(frac.len()).unwrap_or(i64::MAX).saturating_sub(exponent)).unwrap_or(0);
    let digits: String = [int, frac].concat();
    // Where the decimal point falls in `digits`, once leading zeros are dropped.
    let mut point = i64::try_from(int.len()).unwrap_or(i64::MAX).saturating_add(exponent);
    let trimmed = digits.trim_start_matches('0');
    point -= i64::try_from(digits.len() - trimmed.len()).unwrap_or(0);
    let mut out = String::with_capacity(trimmed.len() + scale + 8);
    if trimmed.is_empty() {
        out.push('0');
    } else {
        if negative {
            out.push('-');
        }
        match usize::try_from(point) {
            Ok(0) | Err(_) => out.push('0'),
            Ok(p) if p >= trimmed.len() => {
                out.push_str(trimmed);
                out.extend(std::iter::repeat_n('0', p - trimmed.len()));
            }
            Ok(p) => out.push_str(&trimmed[..p]),
        }
    }
    if scale > 0 {
        out.push('.');
        let mut fraction = String::with_capacity(scale);
        if !trimmed.is_empty() {
            match usize::try_from(point) {
                Ok(p) if p < trimmed.len() => fraction.push_str(&trimmed[p..]),
                Ok(_) => {}
                Err(_) => {
                    let zeros = usize::try_from(point.unsigned_abs()).unwrap_or(usize::MAX);
                    fraction.extend(std::iter::repeat_n('0', zeros));
                    fraction.push_str(trimmed);
                }
            }
        }
        // The scale counts exactly the digits after the point, so this only pads zeros.
        while fraction.len() < scale {
            fraction.push('0');
        }
        out.push_str(&fraction[..scale.min(fraction.len())]);
    }
    Cow::Owned(out)
}

/// Rewrites every number token of a JSON text (outside strings) with `f`.
fn map_numbers<'t>(text: &'t str, f: impl Fn(&str) -> Cow<'_, str>) -> Cow<'t, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
        } else if b == b'"' {
            in_string = true;
            i += 1;
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                i += 1;
            }
            let token = &text[start..i];
            let mapped = f(token);
            if mapped != token {
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[copied..start]);
                out.push_str(&mapped);
                copied = i;
            }
        } else {
            i += 1;
        }
    }
    match out {
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(text),
    }
}

/// Reads a stored jsonb text back as tokio-postgres reads it; `Err` says why it cannot.
pub(crate) fn decode(text: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// PostgreSQL 15's own renderings (`SELECT '<text>'::jsonb` in psql).
    #[test]
    fn renders_numbers_as_postgresql_prints_them() {
        let cases = [
            ("1.7976931348623157e308", format!("17976931348623157{}", "0".repeat(292))),
            ("1e+16", "10000000000000000".to_owned()),
            ("1e2", "100".to_owned()),
            ("1E+2", "100".to_owned()),
            ("100.0", "100.0".to_owned()),
            ("1.0", "1.0".to_owned()),
            ("0.1", "0.1".to_owned()),
            ("-0.0", "0.0".to_owned()),
            ("0.0", "0.0".to_owned()),
            ("1e-7", "0.0000001".to_owned()),
            ("1.2345678901234567e-5", "0.000012345678901234567".to_owned()),
            ("5e-324", format!("0.{}5", "0".repeat(323))),
            ("-2.5e-3", "-0.0025".to_owned()),
            ("-12.50e1", "-125.0".to_owned()),
            ("1.5e300", format!("15{}", "0".repeat(299))),
            ("18446744073709551616", "18446744073709551616".to_owned()),
            ("-9223372036854775809", "-9223372036854775809".to_owned()),
            ("0", "0".to_owned()),
            ("-7", "-7".to_owned()),
        ];
        for (text, rendered) in cases {
            assert_eq!(render_number(text), rendered, "{text}");
        }
    }

    /// Issue 11: this input was answered 201 and then failed every read of its user.
    #[test]
    fn the_number_from_issue_11_reads_back_exactly() {
        let input = json!({"name": "n.txt", "text": "Net 30 days.", "x": 1.797_693_134_862_315_7e308});
        let rendered = render_number("1.7976931348623157e+308");
        assert_eq!(decode(rendered.as_bytes()).unwrap(), json!(f64::MAX));
        check("input", &input).unwrap();
    }

    /// What a reader that loses numbers (serde_json without `float_roundtrip`) makes
    /// the check say.
    #[test]
    fn a_number_the_reader_loses_is_refused_saying_why() {
        let max = Number::from_f64(f64::MAX).unwrap();
        let out_of_range = |_: &[u8]| serde_json::from_str::<Value>("1e400");
        let reason = check_number_read_by(&max, out_of_range).unwrap_err();
        assert_eq!(
            reason,
            "is 1.7976931348623157e+308, which PostgreSQL keeps as a 309-digit decimal that cannot be read back \
             (number out of range): send it as a string, or as a smaller number"
        );
        let neighbour = |_: &[u8]| Ok(json!(1.797_693_134_862_315_5e308));
        let reason = check_number_read_by(&max, neighbour).unwrap_err();
        assert!(reason.contains("gives back as 1.7976931348623155e+308, another number"), "{reason}");
        assert!(reason.contains("(309 characters)"), "{reason}");
        // Integers never go through the reader: PostgreSQL prints their digits back.
        assert!(check_number_read_by(&Number::from(u64::MAX), out_of_range).is_ok());
    }

    #[test]
    fn paths_name_array_items_and_awkward_keys() {
        let input = json!({"items": [{"name": "a"}, {}, {}, {"name": "b\u{0}c"}]});
        let refused = check("input", &input).unwrap_err();
        assert_eq!(refused.path, "input.items[3].name");
        assert!(refused.reason.contains("NUL"));
        let refused = check("input", &json!({"a b": {"x\u{0}": 1}})).unwrap_err();
        assert_eq!(refused.path, r#"input["a b"]["x\\u0000"]"#);
        assert!(refused.reason.contains("key"));
        let refused = check("input", &json!({"9lives": ["\u{0}"]})).unwrap_err();
        assert_eq!(refused.path, r#"input["9lives"][0]"#);
    }

    #[test]
    fn ordinary_values_are_accepted() {
        let input = json!({
            "name": "n.txt", "text": "Net 30 days.\n\t\u{7f}\u{2028}é😀", "x": 1e308, "y": 1e16, "z": -0.0,
            "n": [0, -1, u64::MAX, i64::MIN, 0.1, 1e-7, 5e-324, 2.2250738585072014e-308], "null": null, "ok": true,
        });
        check("input", &input).unwrap();
    }

    #[test]
    fn nesting_is_refused_well_before_serde_json_stops_reading() {
        let nested = |depth: usize| {
            let mut value = json!(1);
            for _ in 0..depth {
                value = json!([value]);
            }
            value
        };
        let text = |depth: usize| serde_json::to_string(&nested(depth)).unwrap();
        assert!(serde_json::from_str::<Value>(&text(MAX_DEPTH)).is_ok());
        assert!(serde_json::from_str::<Value>(&text(MAX_DEPTH + 1)).is_err());
        check("input", &nested(ADMITTED_DEPTH)).unwrap();
        let refused = check("input", &nested(ADMITTED_DEPTH + 1)).unwrap_err();
        assert!(refused.path.starts_with("input[0][0]"), "{refused}");
        assert!(refused.reason.contains("nested"), "{refused}");
    }

    #[test]
    fn texts_with_nul_are_refused() {
        assert!(check_text("user.user_id", "ok").is_ok());
        let refused = check_text("user.user_id", "a\0b").unwrap_err();
        assert_eq!(refused.to_string(), format!("user.user_id {NUL_REASON}"));
    }

    #[test]
    fn decode_reads_what_serde_json_reads() {
        let stored = format!(r#"{{"x": 17976931348623157{}, "n": [-0.{}5, 12]}}"#, "0".repeat(292), "0".repeat(323));
        assert_eq!(decode(stored.as_bytes()).unwrap(), json!({"x": f64::MAX, "n": [-5e-324, 12]}));
        assert!(decode(b"{\"x\": 1e400}").unwrap_err().contains("number out of range"));
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            (1.0..1.797_693_134_862_315_7_f64).prop_map(|m| m * 1e308),
            (1u64..=u64::MAX).prop_map(f64::from_bits).prop_filter("finite", |f| f.is_finite()),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
        ]
    }

    proptest! {
        /// With `float_roundtrip`, every finite float reads back from its PostgreSQL
        /// rendering as itself: admission never refuses a number.
        #[test]
        fn every_float_reads_back_from_its_rendering(f in float()) {
            let text = serde_json::to_string(&f).unwrap();
            let rendered = render_number(&text).into_owned();
            let back = decode(rendered.as_bytes()).unwrap();
            prop_assert!(same_json(&json!(f), &back), "{} -> {} -> {}", text, rendered, back);
            prop_assert!(check("input", &json!([f])).is_ok());
        }
    }
}
