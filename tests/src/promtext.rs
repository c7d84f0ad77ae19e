//! Reading the Prometheus text exposition, for the tests and benchmarks that check metrics.

/// The sum of every sample of metric `name` (with or without labels) in `body`; `None` when
/// there is none. A family split by label (`api_writes_total{resource=...}`) adds up to its total.
pub fn sum(body: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::sum;

    #[test]
    fn adds_up_a_family_and_ignores_look_alikes() {
        let body = "# HELP x_total Writes.\n# TYPE x counter\n\
                    x_total{resource=\"secrets\"} 3\nx_total{resource=\"services\"} 2\n\
                    x_total_other 100\nx_total 1\n";
        assert_eq!(sum(body, "x_total"), Some(6.0));
        assert_eq!(sum(body, "y_total"), None);
        assert_eq!(sum("x_total{a=\"b\"} 0\n", "x_total"), Some(0.0));
    }
}
