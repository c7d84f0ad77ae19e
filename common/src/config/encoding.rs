//! Zalando's ConfigMap value encodings: Go booleans, integers, durations, comma lists,
//! `key:value` maps with quoting, and `[namespace/]name` references.

use std::collections::BTreeMap;
use std::time::Duration;

/// Go's `strconv.ParseBool`.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("expected a boolean (true or false)".into()),
    }
}

/// A decimal integer with an optional sign.
pub fn parse_int(value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| "expected a whole number".into())
}

/// A comma-separated list; blanks around items are dropped, as are empty items.
pub fn parse_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// A map written `key1:value1,key2:value2`. Single or double quotes protect commas and colons
/// (`search_path:"a,b"`); one level of surrounding quotes is removed from keys and values.
pub fn parse_map(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for pair in split_outside_quotes(value, ',')? {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let parts = split_outside_quotes(pair, ':')?;
        let Some((key, rest)) = parts.split_first().filter(|(_, rest)| !rest.is_empty()) else {
            return Err(format!(
                "expected key:value pairs separated by commas, found {pair:?}"
            ));
        };
        let key = unquote(key.trim());
        if key.is_empty() {
            return Err(format!("empty key in {pair:?}"));
        }
        let joined = rest.join(":");
        map.insert(key.to_string(), unquote(joined.trim()).to_string());
    }
    Ok(map)
}

/// The inverse of [`parse_map`] for messages: `k1:v1,k2:v2`.
pub fn render_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn split_outside_quotes(value: &str, separator: char) -> Result<Vec<String>, String> {
    let mut parts = vec![String::new()];
    let mut quote: Option<char> = None;
    for c in value.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c == separator => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("parts is never empty").push(c);
    }
    if let Some(q) = quote {
        return Err(format!("unbalanced quote {q} in {value:?}"));
    }
    Ok(parts)
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units (`ns`, `us`/`µs`, `ms`,
/// `s`, `m`, `h`), e.g. `1m30s` or `1.5h`; a bare `0` is allowed. Negative durations are
/// rejected because no option of the operator means anything by them.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a Go duration such as 30s, 5m or 1h30m";
    let text = value.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with('-') {
        return Err(EXPECTED.into());
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| EXPECTED.to_string())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(EXPECTED.into()),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).map_err(|_| EXPECTED.into())
}

/// A `[namespace/]name` reference; the namespace defaults to `default_namespace`.
pub fn parse_namespaced_name(
    value: &str,
    default_namespace: &str,
) -> Result<(String, String), String> {
    const EXPECTED: &str = "expected name or namespace/name";
    let value = value.trim();
    let (namespace, name) = match value.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (default_namespace, value),
    };
    if name.is_empty() || namespace.is_empty() || name.contains('/') {
        return Err(EXPECTED.into());
    }
    Ok((namespace.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for (text, want) in [
            ("true", true),
            ("True", true),
            ("1", true),
            ("t", true),
            ("false", false),
            ("F", false),
            (" 0 ", false),
        ] {
            assert_eq!(parse_bool(text), Ok(want), "{text}");
        }
        for text in ["yes", "on", "", "tru"] {
            assert_eq!(
                parse_bool(text).unwrap_err(),
                "expected a boolean (true or false)",
                "{text}"
            );
        }
    }

    #[test]
    fn integers() {
        assert_eq!(parse_int("8"), Ok(8));
        assert_eq!(parse_int(" -1 "), Ok(-1));
        assert_eq!(parse_int("1.5").unwrap_err(), "expected a whole number");
        assert_eq!(parse_int("eight").unwrap_err(), "expected a whole number");
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse_list("application, environment"),
            vec!["application", "environment"]
        );
        assert_eq!(parse_list(""), Vec::<String>::new());
        assert_eq!(parse_list("a,,b,"), vec!["a", "b"]);
    }

    #[test]
    fn maps() {
        let m = parse_map("status1:ready,status2:ready").unwrap();
        assert_eq!(m.get("status1").map(String::as_str), Some("ready"));
        assert_eq!(m.len(), 2);
        let t = parse_map("key:postgres,operator:Exists,effect:NoSchedule").unwrap();
        assert_eq!(t.get("operator").map(String::as_str), Some("Exists"));
        let q = parse_map(r#"search_path:"a,b",url:'http://x:80/y', plain : spaced "#).unwrap();
        assert_eq!(q.get("search_path").map(String::as_str), Some("a,b"));
        assert_eq!(q.get("url").map(String::as_str), Some("http://x:80/y"));
        assert_eq!(q.get("plain").map(String::as_str), Some("spaced"));
        let colon = parse_map("url:http://x:80").unwrap();
        assert_eq!(colon.get("url").map(String::as_str), Some("http://x:80"));
        assert!(parse_map("").unwrap().is_empty());
        assert_eq!(
            parse_map("novalue").unwrap_err(),
            "expected key:value pairs separated by commas, found \"novalue\""
        );
        assert_eq!(
            parse_map(r#"a:"b"#).unwrap_err(),
            "unbalanced quote \" in \"a:\\\"b\""
        );
        assert_eq!(parse_map(":x").unwrap_err(), "empty key in \":x\"");
    }

    #[test]
    fn durations() {
        let ok = [
            ("30m", 1800.0),
            ("1m30s", 90.0),
            ("5s", 5.0),
            ("1.5h", 5400.0),
            ("300ms", 0.3),
            ("0", 0.0),
            ("2h45m10s", 9910.0),
            ("10us", 0.00001),
        ];
        for (text, secs) in ok {
            let got = parse_duration(text).unwrap().as_secs_f64();
            assert!((got - secs).abs() < 1e-9, "{text}: {got}");
        }
        for text in ["", "5", "1d", "m", "-1s", "1m30", "abc", "1..5s"] {
            assert!(parse_duration(text).is_err(), "{text} should fail");
        }
    }

    #[test]
    fn namespaced_names() {
        assert_eq!(
            parse_namespaced_name("default/postgres-pod-config", "op"),
            Ok(("default".into(), "postgres-pod-config".into()))
        );
        assert_eq!(
            parse_namespaced_name("pod-config", "op"),
            Ok(("op".into(), "pod-config".into()))
        );
        for bad in ["", "/x", "x/", "a/b/c"] {
            assert!(parse_namespaced_name(bad, "op").is_err(), "{bad}");
        }
    }
}
