//! `allowedSourceRanges`: who may reach a load-balanced service.

use std::net::IpAddr;

/// What an empty or missing `allowedSourceRanges` means: only the node itself.
pub const DEFAULT_SOURCE_RANGE: &str = "127.0.0.1/32";

/// Whether the manifest leaves the ranges to the default: omitted or empty, which Zalando treats
/// alike (an empty list would otherwise mean "open to everyone" on some cloud load balancers).
pub fn uses_default(ranges: Option<&[String]>) -> bool {
    ranges.is_none_or(<[String]>::is_empty)
}

/// The ranges a load balancer gets: the manifest's, or [`DEFAULT_SOURCE_RANGE`] when none.
/// The webhook writes the same default into the manifest ([`uses_default`]), so both agree.
pub fn effective_source_ranges(ranges: Option<&[String]>) -> Vec<String> {
    match ranges {
        Some(ranges) if !uses_default(Some(ranges)) => ranges.to_vec(),
        _ => vec![DEFAULT_SOURCE_RANGE.to_string()],
    }
}

/// Checks one entry strictly (address family, octets, prefix length), which the schema pattern
/// alone cannot do for IPv6.
pub fn check_cidr(value: &str) -> Result<(), String> {
    let expected =
        "expected an IPv4 or IPv6 network in CIDR notation such as 10.0.0.0/8 or 2001:db8::/32";
    let (address, prefix) = value
        .split_once('/')
        .ok_or_else(|| format!("{value:?} has no /prefix: {expected}"))?;
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("{value:?} is not a valid address: {expected}"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(bits) if bits <= max && !prefix.starts_with('+') => Ok(()),
        _ => Err(format!(
            "{value:?} has an invalid prefix length (0 to {max}): {expected}"
        )),
    }
}

/// Every invalid entry of a manifest's ranges, with its index, as `(field, message)`.
pub fn invalid_ranges(ranges: &[String]) -> Vec<(String, String)> {
    ranges
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            check_cidr(r)
                .err()
                .map(|e| (format!("spec.allowedSourceRanges[{i}]"), e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaulting() {
        assert_eq!(effective_source_ranges(None), vec!["127.0.0.1/32"]);
        assert_eq!(effective_source_ranges(Some(&[])), vec!["127.0.0.1/32"]);
        let own = vec!["10.0.0.0/8".to_string()];
        assert_eq!(effective_source_ranges(Some(&own)), own);
    }

    #[test]
    fn strict_cidrs() {
        for good in [
            "127.0.0.1/32",
            "0.0.0.0/0",
            "10.0.0.0/8",
            "::1/128",
            "2001:db8::/32",
            "::/0",
        ] {
            assert_eq!(check_cidr(good), Ok(()), "{good}");
        }
        for bad in [
            "127.0.0.1",
            "300.1.1.1/8",
            "10.0.0.0/33",
            "::1/129",
            "2001:db8:::/32",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0.0/",
        ] {
            assert!(check_cidr(bad).is_err(), "{bad}");
        }
        let found = invalid_ranges(&["10.0.0.0/8".into(), "10.0.0.0/40".into()]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "spec.allowedSourceRanges[1]");
        assert!(found[0].1.contains("invalid prefix length (0 to 32)"));
    }
}
