//! Value patterns shared by the CRD schemas and the rule functions.
//!
//! The API server evaluates these with Go's RE2 engine and the rules evaluate them with the `regex`
//! crate; both are linear-time engines with the same syntax for everything used here, and the unit
//! tests below pin the accepted and rejected values so the two can never drift apart.

use regex::Regex;
use std::sync::LazyLock;

/// The PostgreSQL major versions this operator can run, oldest first.
pub const SUPPORTED_MAJOR_VERSIONS: &[&str] = &["14", "15", "16", "17", "18"];

/// CPU quantity: millicores (`250m`) or cores with up to three decimals (`1`, `0.5`).
pub const CPU: &str = r"^(\d+m|\d+(\.\d{1,3})?)$";

/// Memory or storage quantity: plain bytes, exponent form, or a binary/decimal suffix.
pub const MEMORY: &str = r"^(\d+(e\d+)?|\d+(\.\d+)?(e\d+)?[EPTGMK]i?)$";

/// IPv4 or IPv6 network in CIDR notation (the rules check IPv6 strictly).
pub const CIDR: &str = r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}/(3[0-2]|[12]?\d)|[0-9a-fA-F]*:[0-9a-fA-F:.]*/(12[0-8]|1[01]\d|[1-9]?\d))$";

/// Five-field cron schedule; each field is `*`, a number, a range or a list, with an optional step.
pub const CRON: &str = r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*(\s+(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*){4}$";

/// Maintenance window `HH:MM-HH:MM` or `Ddd:HH:MM-HH:MM` (weekday `Mon`..`Sun`).
pub const MAINTENANCE_WINDOW: &str =
    r"^\s*((Mon|Tue|Wed|Thu|Fri|Sat|Sun):)?(2[0-3]|[01]?\d):[0-5]?\d-(2[0-3]|[01]?\d):[0-5]?\d\s*$";

/// RFC 3339 timestamp with an explicit numeric UTC offset, as Spilo's point-in-time restore needs.
pub const TIMESTAMP_WITH_OFFSET: &str = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?[+-]([01]\d|2[0-3]):[0-5]\d$";

/// A role name PostgreSQL and the secret naming both accept (`namespace.user` allowed).
pub const USER_NAME: &str = r"^[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*$";

/// A database or schema name that needs no quoting.
pub const DATABASE_NAME: &str = r"^[a-zA-Z_][a-zA-Z0-9_]*$";

/// DNS-1035 label: what a Service name (and so a cluster name) must be.
pub const DNS1035_LABEL: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// A UUID in its canonical textual form.
pub const UUID: &str =
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the pattern constants are valid regular expressions")
}

macro_rules! compiled {
    ($($name:ident = $pattern:ident;)*) => {
        $(
            #[doc = concat!("Compiled form of [`", stringify!($pattern), "`].")]
            pub static $name: LazyLock<Regex> = LazyLock::new(|| compile($pattern));
        )*
    };
}

compiled! {
    CPU_RE = CPU;
    MEMORY_RE = MEMORY;
    CIDR_RE = CIDR;
    CRON_RE = CRON;
    MAINTENANCE_WINDOW_RE = MAINTENANCE_WINDOW;
    TIMESTAMP_WITH_OFFSET_RE = TIMESTAMP_WITH_OFFSET;
    USER_NAME_RE = USER_NAME;
    DATABASE_NAME_RE = DATABASE_NAME;
    DNS1035_LABEL_RE = DNS1035_LABEL;
    UUID_RE = UUID;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(re: &Regex, good: &[&str], bad: &[&str]) {
        for value in good {
            assert!(
                re.is_match(value),
                "{} should accept {value:?}",
                re.as_str()
            );
        }
        for value in bad {
            assert!(
                !re.is_match(value),
                "{} should reject {value:?}",
                re.as_str()
            );
        }
    }

    #[test]
    fn cpu() {
        check(
            &CPU_RE,
            &["100m", "1", "0.5", "2.125"],
            &["", "1.2345", "1Gi", "-1", "m", "1 m"],
        );
    }

    #[test]
    fn memory() {
        check(
            &MEMORY_RE,
            &["100Mi", "1Gi", "500M", "1e3", "1.5Gi", "1024", "2Ti"],
            &["", "1gb", "Mi", "1.Gi", "-1Gi", "1 Gi"],
        );
    }

    #[test]
    fn cidr() {
        check(
            &CIDR_RE,
            &[
                "127.0.0.1/32",
                "10.0.0.0/8",
                "0.0.0.0/0",
                "::1/128",
                "2001:db8::/32",
                "fe80::/10",
            ],
            &[
                "127.0.0.1",
                "256.0.0.0/8",
                "10.0.0.0/33",
                "::1/129",
                "localhost/32",
                "",
            ],
        );
    }

    #[test]
    fn cron() {
        check(
            &CRON_RE,
            &[
                "30 00 * * *",
                "*/5 * * * *",
                "0 1-5 * * 1,3,5",
                "0 0 1 */2 *",
            ],
            &["", "* * * *", "@daily", "a * * * *", "* * * * * *"],
        );
    }

    #[test]
    fn maintenance_window() {
        check(
            &MAINTENANCE_WINDOW_RE,
            &[
                "01:00-06:00",
                "Sat:00:00-04:00",
                " Sun:23:00-23:59 ",
                "1:0-2:5",
            ],
            &[
                "",
                "24:00-01:00",
                "Sat:00:00",
                "Foo:01:00-02:00",
                "01:00-Sat:02:00",
                "01:60-02:00",
            ],
        );
    }

    #[test]
    fn timestamp() {
        check(
            &TIMESTAMP_WITH_OFFSET_RE,
            &["2017-08-31T12:00:00+02:00", "2020-02-29T00:00:00.123-05:30"],
            &[
                "2017-08-31T12:00:00Z",
                "2017-08-31 12:00:00+02:00",
                "2017-13-01T00:00:00+00:00",
            ],
        );
    }

    #[test]
    fn names() {
        check(
            &USER_NAME_RE,
            &["foo_user", "zalando", "app-user", "test.db_user", "a"],
            &["", "Foo", "_x", "x_", "a..b", "a b"],
        );
        check(
            &DATABASE_NAME_RE,
            &["foo", "Foo_1", "_x"],
            &["", "1db", "foo-bar", "a b"],
        );
        check(
            &DNS1035_LABEL_RE,
            &["acid-minimal", "a"],
            &["", "Acid", "1abc", "abc-", "a_b"],
        );
        check(
            &UUID_RE,
            &["efd12e58-5786-11e8-b5a7-06148230260c"],
            &[
                "",
                "efd12e58578611e8b5a706148230260c",
                "xfd12e58-5786-11e8-b5a7-06148230260c",
            ],
        );
    }
}
