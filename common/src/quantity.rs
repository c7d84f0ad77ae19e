//! Kubernetes resource quantities, parsed just far enough to compare requests with limits.

/// CPU in cores: `250m` → 0.25, `1.5` → 1.5.
pub fn cpu_cores(value: &str) -> Option<f64> {
    let value = value.trim();
    if !crate::patterns::CPU_RE.is_match(value) {
        return None;
    }
    match value.strip_suffix('m') {
        Some(millis) => millis.parse::<f64>().ok().map(|m| m / 1000.0),
        None => value.parse().ok(),
    }
}

/// Memory or storage in bytes: `100Mi`, `1G`, `1e3`, `1.5Gi`.
pub fn bytes(value: &str) -> Option<f64> {
    let value = value.trim();
    if !crate::patterns::MEMORY_RE.is_match(value) {
        return None;
    }
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Pi", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Ei", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = value.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    value.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(cpu_cores("250m"), Some(0.25));
        assert_eq!(cpu_cores("2"), Some(2.0));
        assert_eq!(cpu_cores("0.5"), Some(0.5));
        assert_eq!(cpu_cores("1 core"), None);
    }

    #[test]
    fn memory() {
        assert_eq!(bytes("100Mi"), Some(100.0 * 1024.0 * 1024.0));
        assert_eq!(bytes("1G"), Some(1e9));
        assert_eq!(bytes("1e3"), Some(1000.0));
        assert_eq!(bytes("1.5Ki"), Some(1536.0));
        assert_eq!(bytes("512"), Some(512.0));
        assert_eq!(bytes("lots"), None);
        assert!(bytes("1Gi") > bytes("1000Mi"));
    }
}
