//! RFC 8785 JSON Canonicalization Scheme: one byte string for one JSON value, whatever the
//! order of its keys or the spelling of its numbers and strings when it was written.
//!
//! - object members sorted by their names' UTF-16 code units, no whitespace;
//! - strings escaped as ECMAScript's `JSON.stringify` does: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`,
//!   `\t`, other controls as `\u00xx`, everything else as literal UTF-8;
//! - numbers as ECMAScript's `Number.prototype.toString` prints the IEEE double (ryu-js) (integers that
//!   serde_json holds as i64/u64 print as their digits, which is the same for |n| < 2^53).

use serde_json::Value;

/// The canonical UTF-8 bytes of `value`.
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut out = String::new();
    write_value(&mut out, value);
    out.into_bytes()
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (name, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_value(out, member);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() < (1 << 53) {
            out.push_str(&i.to_string());
            return;
        }
    } else if let Some(u) = n.as_u64() {
        if u < (1 << 53) {
            out.push_str(&u.to_string());
            return;
        }
    }
    // Beyond 2^53 or fractional: the double's ECMAScript spelling.
    let f = n.as_f64().unwrap_or(0.0);
    out.push_str(&es_number(f));
}

/// ECMAScript's Number::toString(x) for a finite double (JSON has no NaN or infinity), by
/// ryu-js (the Boa engine's: shortest digits, ties to even, ECMAScript's exponent forms).
fn es_number(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    ryu_js::Buffer::new().format_finite(x).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(v: &Value) -> String {
        String::from_utf8(canonical(v)).unwrap()
    }

    #[test]
    fn sorts_members_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": 1, "a": [true, null, "x"], "": {} }"#).unwrap();
        assert_eq!(c(&v), r#"{"":{},"a":[true,null,"x"],"b":1}"#);
    }

    #[test]
    fn sorts_by_utf16_code_units() {
        // RFC 8785 section 3.2.3's example: U+1F600 (surrogates D83D DE00) sorts before U+FB33
        // in UTF-16 although it is after it in code points.
        let v = json!({"\u{fb33}": 1, "\u{1f600}": 2, "\r": 3, "1": 4, "\u{80}": 5});
        assert_eq!(
            c(&v),
            "{\"\\r\":3,\"1\":4,\"\u{80}\":5,\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
    }

    #[test]
    fn escapes_like_json_stringify() {
        let v = json!("\u{1}é\"\\\n\u{1f}/\u{7f}");
        assert_eq!(c(&v), "\"\\u0001é\\\"\\\\\\n\\u001f/\u{7f}\"");
    }

    #[test]
    fn numbers_as_ecmascript_prints_them() {
        // RFC 8785 appendix B's sample of IEEE 754 values.
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (333333333.3333333, "333333333.3333333"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (4.35, "4.35"),
            (0.002, "0.002"),
            (-1.5, "-1.5"),
            (9007199254740994.0, "9007199254740994"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (x, want) in cases {
            assert_eq!(es_number(x), want, "{x}");
        }
        assert_eq!(c(&json!([1, -7, 10.0, 2.5])), "[1,-7,10,2.5]");
    }
}
