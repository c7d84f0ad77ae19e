//! Quoting for the SQL the plan writes. Every name and value that reaches a statement goes through
//! here, so a hostile role, schema or setting value can never leave its quotes: Zalando pastes
//! names into `"%s"` unescaped, which breaks (or worse) on a name with a double quote.
//!
//! The server runs with `standard_conforming_strings = on` (the default since 9.1, and Spilo's),
//! so a backslash inside `'...'` is an ordinary character and doubling `'` is the only escape a
//! literal needs. A NUL byte cannot be part of any PostgreSQL string; it is dropped rather than
//! sent (the server would refuse the whole statement).

/// `name` as a quoted identifier: `"` doubled, always quoted so case and keywords are kept as
/// written (`Foo` stays `Foo`, `user` is not the keyword).
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\"\""),
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `value` as a string literal: `'` doubled (standard-conforming strings, no `E''` needed).
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A comma-separated list of quoted identifiers (`"a", "b"`), for `IN ROLE`, `GRANT … TO`.
pub fn ident_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(ident).collect::<Vec<_>>().join(", ")
}

/// The parameter that Zalando passes through unquoted: a list of schema names.
pub const SEARCH_PATH: &str = "search_path";

/// The value part of `ALTER ROLE … SET name TO <value>`, as Zalando means it, but safe.
///
/// Zalando strips surrounding single quotes from a `search_path` and pastes the rest unquoted (so
/// `"$user", data` is a list, not one schema named `"$user", data`); other values are wrapped in
/// single quotes unless already quoted. Here the `search_path` is split into its elements and
/// each is written as a quoted identifier (an unquoted element is folded to lower case first, as
/// the server would), and every other value becomes a proper literal (an already single-quoted
/// value is unwrapped first, so `'all'` and `all` both give `'all'`; `"..."` is unwrapped too).
pub fn setting_value(name: &str, value: &str) -> String {
    if name.eq_ignore_ascii_case(SEARCH_PATH) {
        let elements = search_path_elements(&strip_single_quotes(value));
        if elements.is_empty() {
            // An empty search_path is the empty string, not an empty list.
            return "''".into();
        }
        return ident_list(elements.iter().map(String::as_str));
    }
    let trimmed = value.trim_matches(' ');
    let inner = if trimmed.len() >= 2 && trimmed.starts_with('"') && trimmed.ends_with('"') {
        trimmed[1..trimmed.len() - 1].replace("\"\"", "\"")
    } else {
        strip_single_quotes(trimmed)
    };
    literal(&inner)
}

/// Whether a wanted setting and the value `pg_db_role_setting` holds mean the same. The server
/// stores a `search_path` with its own quoting (`"$user", data` for `"$user", "data"`), so lists
/// are compared element by element; other values are compared as [`setting_value`] would send
/// them, without the quotes.
pub fn setting_matches(name: &str, wanted: &str, stored: &str) -> bool {
    if name.eq_ignore_ascii_case(SEARCH_PATH) {
        search_path_elements(&strip_single_quotes(wanted))
            == search_path_elements(&strip_single_quotes(stored))
    } else {
        setting_value(name, wanted) == literal(stored)
    }
}

/// `'…'` unwrapped (with `''` back to `'`); anything else trimmed, otherwise unchanged.
fn strip_single_quotes(value: &str) -> String {
    let v = value.trim();
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v[1..v.len() - 1].replace("''", "'")
    } else {
        v.to_string()
    }
}

/// The schema names of a `search_path`, as the server reads the list: comma-separated, `"…"`
/// (and, as in `SET search_path TO '$user', public`, `'…'`) taken literally with the quote
/// doubled inside, anything else trimmed and folded to lower case. Empty elements are dropped.
pub fn search_path_elements(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut element = String::new();
        if let Some(&quote @ ('"' | '\'')) = chars.peek() {
            chars.next();
            while let Some(c) = chars.next() {
                if c == quote {
                    if chars.peek() == Some(&quote) {
                        chars.next();
                        element.push(quote);
                    } else {
                        break;
                    }
                } else {
                    element.push(c);
                }
            }
            // Anything between the closing quote and the comma is ignored.
            for c in chars.by_ref() {
                if c == ',' {
                    break;
                }
            }
            out.push(element);
        } else {
            let mut saw_comma = false;
            for c in chars.by_ref() {
                if c == ',' {
                    saw_comma = true;
                    break;
                }
                element.push(c);
            }
            let element = element.trim().to_lowercase();
            if !element.is_empty() {
                out.push(element);
            }
            if !saw_comma {
                break;
            }
            continue;
        }
        if chars.peek().is_none() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(ident("foo"), r#""foo""#);
        assert_eq!(ident(""), r#""""#);
        assert_eq!(ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(ident(r#"""#), r#""""""#);
        assert_eq!(
            ident(r#"x"; DROP ROLE postgres; --"#),
            r#""x""; DROP ROLE postgres; --""#
        );
        assert_eq!(ident(r"back\slash"), r#""back\slash""#);
        assert_eq!(ident("Grüße_日本"), "\"Grüße_日本\"");
        assert_eq!(ident("a'b"), r#""a'b""#);
        assert_eq!(ident("nul\0byte"), r#""nulbyte""#);
        assert_eq!(ident_list(["a", "b\"c"]), r#""a", "b""c""#);
        assert_eq!(ident_list([]), "");
    }

    #[test]
    fn literals() {
        assert_eq!(literal("x"), "'x'");
        assert_eq!(literal(""), "''");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("'"), "''''");
        // standard_conforming_strings: a backslash is just a backslash.
        assert_eq!(literal(r"C:\path\"), r"'C:\path\'");
        assert_eq!(literal("'; DROP TABLE x; --"), "'''; DROP TABLE x; --'");
        assert_eq!(literal("ünï\u{1F600}"), "'ünï\u{1F600}'");
        assert_eq!(literal("a\0b"), "'ab'");
        assert_eq!(literal("line\nbreak"), "'line\nbreak'");
    }

    #[test]
    fn search_path_is_a_list_of_identifiers() {
        assert_eq!(
            setting_value("search_path", r#""$user", "data""#),
            r#""$user", "data""#
        );
        assert_eq!(
            setting_value("search_path", "'$user', public"),
            r#""$user", "public""#
        );
        assert_eq!(
            setting_value("search_path", r#"'"$user", Public'"#),
            r#""$user", "public""#
        );
        assert_eq!(
            setting_value("search_path", r#""we""ird", x; drop role y"#),
            r#""we""ird", "x; drop role y""#
        );
        assert_eq!(setting_value("search_path", ""), "''");
        assert_eq!(setting_value("search_path", "''"), "''");
        assert_eq!(
            search_path_elements(r#""$user", data ,, "Mixed Case""#),
            ["$user", "data", "Mixed Case"]
        );
        assert_eq!(search_path_elements(r#""unterminated"#), ["unterminated"]);
        assert_eq!(search_path_elements(","), Vec::<String>::new());
    }

    #[test]
    fn other_settings_are_literals() {
        assert_eq!(setting_value("log_statement", "all"), "'all'");
        assert_eq!(setting_value("log_statement", "'all'"), "'all'");
        assert_eq!(setting_value("log_statement", " all "), "'all'");
        assert_eq!(setting_value("work_mem", r#""64MB""#), "'64MB'");
        assert_eq!(setting_value("x", "it's"), "'it''s'");
        assert_eq!(setting_value("x", "'it''s'"), "'it''s'");
        assert_eq!(setting_value("x", "'"), "''''");
        assert_eq!(setting_value("x", ""), "''");
        assert_eq!(
            setting_value("x", "'; reset all; --"),
            "'''; reset all; --'"
        );
    }

    #[test]
    fn settings_compare_as_the_server_stores_them() {
        assert!(setting_matches(
            "search_path",
            r#""$user", "data", "history""#,
            r#""$user", data, history"#
        ));
        assert!(!setting_matches(
            "search_path",
            r#""$user", "data""#,
            r#""$user", history"#
        ));
        assert!(setting_matches("log_statement", "'all'", "all"));
        assert!(setting_matches("log_statement", "all", "all"));
        assert!(!setting_matches("log_statement", "all", "ddl"));
    }
}
