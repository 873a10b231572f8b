//! Kubernetes resource quantities (`50m`, `128Mi`, `1.5`, `2e3`): syntax as
//! the API server accepts it, and a value to compare requests with limits.

/// The value of quantity `s` (in base units: cores, bytes), or `None` when
/// the API server would not accept it.
///
/// Follows `resource.Quantity`'s grammar: an optionally signed decimal
/// number, then one of the binary SI suffixes (`Ki` … `Ei`), the decimal SI
/// suffixes (`n`, `u`, `m`, `k`, `M`, `G`, `T`, `P`, `E`), or a decimal
/// exponent (`e3`, `E-2`), or nothing.
pub fn value(s: &str) -> Option<f64> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let (sign, rest) = match s.as_bytes()[0] {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    if !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
        return None;
    }
    let mantissa: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let digits = exp[1..].strip_prefix(['+', '-']).unwrap_or(&exp[1..]);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let e: i32 = exp[1..].parse().ok()?;
            10f64.powi(e)
        }
        _ => return None,
    };
    Some(sign * mantissa * multiplier)
}

#[cfg(test)]
mod tests {
    use super::value;

    #[test]
    fn accepts_the_api_servers_forms() {
        assert_eq!(value("50m"), Some(0.05));
        assert_eq!(value("128Mi"), Some(128.0 * 1024.0 * 1024.0));
        assert_eq!(value("1.5"), Some(1.5));
        assert_eq!(value("2e3"), Some(2000.0));
        assert_eq!(value("1E-3"), Some(0.001));
        assert_eq!(value("+1G"), Some(1e9));
        assert_eq!(value("-1"), Some(-1.0));
        assert_eq!(value(".5"), Some(0.5));
    }

    #[test]
    fn rejects_what_the_api_server_rejects() {
        for bad in ["", "m", "1.2.3", "12 Mi", "12mi", "12MB", "1e", "1e+", "abc", "0x10", "1Ki2", "."] {
            assert_eq!(value(bad), None, "{bad:?}");
        }
    }
}
