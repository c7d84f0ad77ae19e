//! Kubernetes quantities: parsed once into an exact value (no floating point), compared by value
//! (`1000m` equals `1`, `1Gi` equals `1024Mi`) and written in the API server's canonical form.
//!
//! The API server re-serializes every quantity canonically (`1000m` → `1`, `0.5` → `500m`,
//! `1024Mi` → `1Gi`, `0Mi` → `0`). The builders always emit that form, so an object read back
//! compares equal to a freshly built one; a value that is already canonical comes out unchanged.
//! Decimal exponents (`1e3`) are kept as written (the server keeps that notation too).

/// Smallest unit the API server keeps (nano), as a power of ten.
const NANO: i128 = 1_000_000_000;

const DECIMAL_SUFFIXES: &[(&str, i32)] = &[
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

const BINARY_SUFFIXES: &[(&str, u32)] = &[
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];

/// A parsed quantity: its value in nano units and whether it was written with a binary suffix.
/// Equality and order are by value only.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    /// Value × 10⁹, rounded up to the nano unit as the API server does.
    pub nanos: i128,
    /// Written with Ki, Mi, ...: canonicalized in base 1024 when exact.
    pub binary: bool,
}

/// Parses `<sign><digits>[.<digits>]<suffix>`; `None` for anything the API server would refuse.
/// Exponent notation (`1e3`) is accepted for comparisons.
pub fn parse(value: &str) -> Option<Quantity> {
    let value = value.trim();
    let (sign, body) = match value.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, value.strip_prefix('+').unwrap_or(value)),
    };
    let number_len = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_len);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 30 {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    let scale = frac.len() as u32;
    // value = digits × 10^-scale × multiplier, with the multiplier as 10^exp or 1024^power.
    let (exp10, pow1024, binary) = if suffix.is_empty() {
        (0, 0, false)
    } else if let Some((_, e)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        (*e, 0, false)
    } else if let Some((_, p)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        (0, *p, true)
    } else if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
        (exp.parse::<i32>().ok().filter(|e| e.abs() <= 18)?, 0, false)
    } else {
        return None;
    };
    let mut numerator = digits.checked_mul(1024i128.checked_pow(pow1024)?)?;
    let mut denominator: i128 = 10i128.pow(scale);
    let shift = exp10 + 9;
    if shift >= 0 {
        numerator = numerator.checked_mul(10i128.checked_pow(shift as u32)?)?;
    } else {
        denominator = denominator.checked_mul(10i128.pow((-shift) as u32))?;
    }
    let nanos = (numerator + denominator - 1) / denominator;
    Some(Quantity {
        nanos: sign * nanos,
        binary,
    })
}

/// The canonical form of a quantity, `None` when it does not parse.
pub fn canonical(value: &str) -> Option<String> {
    let trimmed = value.trim();
    let parsed = parse(trimmed)?;
    if trimmed.contains(['e', 'E']) {
        return Some(trimmed.to_string());
    }
    let nanos = parsed.nanos;
    if nanos == 0 {
        return Some("0".into());
    }
    if parsed.binary && nanos % NANO == 0 && (nanos / NANO).abs() >= 1024 {
        let mut number = nanos / NANO;
        let mut power = 0;
        while power < BINARY_SUFFIXES.len() && number % 1024 == 0 {
            number /= 1024;
            power += 1;
        }
        let suffix = if power == 0 {
            ""
        } else {
            BINARY_SUFFIXES[power - 1].0
        };
        return Some(format!("{number}{suffix}"));
    }
    // Decimal SI: the largest exponent (a multiple of 3) that keeps the mantissa whole.
    let mut number = nanos;
    let mut exponent = -9;
    while exponent < 18 && number % 1000 == 0 {
        number /= 1000;
        exponent += 3;
    }
    let suffix = DECIMAL_SUFFIXES
        .iter()
        .find(|(_, e)| *e == exponent)
        .map_or("", |(s, _)| s);
    Some(format!("{number}{suffix}"))
}

impl Quantity {
    /// Nothing (a limit of zero means "no limit" to the requests-limits rule).
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        binary: false,
    };
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// A CPU quantity as the manifest schema allows it (`100m`, `1`, `0.5`): no suffix but `m`.
pub fn cpu(value: &str) -> Option<Quantity> {
    crate::patterns::CPU_RE
        .is_match(value.trim())
        .then(|| parse(value))
        .flatten()
}

/// A memory or storage quantity as the manifest schema allows it (`100Mi`, `1G`, `1e3`).
pub fn memory(value: &str) -> Option<Quantity> {
    crate::patterns::MEMORY_RE
        .is_match(value.trim())
        .then(|| parse(value))
        .flatten()
}

/// Whether two quantity strings have the same value (`None` when either does not parse).
pub fn same(a: &str, b: &str) -> Option<bool> {
    Some(parse(a)? == parse(b)?)
}

/// Compares two parsed quantities by value.
pub fn cmp(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    Some(parse(a)?.nanos.cmp(&parse(b)?.nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        for (input, expected) in [
            ("1000m", "1"),
            ("500m", "500m"),
            ("0.5", "500m"),
            ("0.1", "100m"),
            ("1.5", "1500m"),
            ("10m", "10m"),
            ("2", "2"),
            ("100Mi", "100Mi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("0Mi", "0"),
            ("0", "0"),
            ("512", "512"),
            ("100M", "100M"),
            ("1000M", "1G"),
            ("1500M", "1500M"),
            ("1000k", "1M"),
            ("1e3", "1e3"),
            ("0.5Ki", "512"),
            ("1Ki", "1Ki"),
        ] {
            assert_eq!(canonical(input).as_deref(), Some(expected), "{input}");
        }
        for bad in ["", "abc", "1 core", "1.2.3", "1Kb", "Mi"] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
    }

    #[test]
    fn canonical_is_idempotent_and_ordering_by_value() {
        for input in ["1000m", "0.25", "1.5Gi", "3G", "123456789"] {
            let once = canonical(input).unwrap();
            assert_eq!(canonical(&once).unwrap(), once);
        }
        assert_eq!(cmp("1", "1000m"), Some(std::cmp::Ordering::Equal));
        assert_eq!(cmp("1Gi", "1G"), Some(std::cmp::Ordering::Greater));
        assert_eq!(cmp("100m", "0.2"), Some(std::cmp::Ordering::Less));
        assert_eq!(same("1Gi", "1024Mi"), Some(true));
        assert_eq!(same("1", "1000m"), Some(true));
        assert_eq!(same("1G", "1Gi"), Some(false));
        assert_eq!(same("1", "x"), None);
    }

    #[test]
    fn schema_forms() {
        assert_eq!(cpu("250m"), parse("0.25"));
        assert!(cpu("2").is_some() && cpu("0.5").is_some());
        assert_eq!(cpu("1Gi"), None, "not a CPU quantity");
        assert_eq!(cpu("1 core"), None);
        assert_eq!(
            memory("100Mi").map(|q| q.nanos),
            Some(100 * 1024 * 1024 * NANO)
        );
        assert_eq!(memory("1e3"), parse("1k"));
        assert_eq!(memory("1.5Ki"), parse("1536"));
        assert_eq!(memory("lots"), None);
        assert!(memory("1Gi") > memory("1000Mi"));
        // Exact: no rounding between units of very different size.
        assert!(memory("1Ei") > memory("1152921504606846975"));
    }
}
