//! Kubernetes resource quantities (`50m`, `128Mi`, `1.5`, `2e3`): syntax as
//! the API server accepts it, and a value to compare requests with limits
//! and with the ranges the injector allows.

/// Why a string is not a usable quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not in the API server's quantity syntax.
    #[error("not a Kubernetes quantity like \"100m\" or \"256Mi\"")]
    Syntax,
    /// Syntactically a quantity, but its value overflows (`1e400`).
    #[error("too large a quantity")]
    Overflow,
}

/// The value of quantity `s` (in base units: cores, bytes), or why the
/// API server would not accept it or its value is not a finite number.
///
/// Follows `resource.Quantity`'s grammar: an optionally signed decimal
/// number, then one of the binary SI suffixes (`Ki` … `Ei`), the decimal SI
/// suffixes (`n`, `u`, `m`, `k`, `M`, `G`, `T`, `P`, `E`), or a decimal
/// exponent (`e3`, `E-2`), or nothing. At most 64 characters.
pub fn parse(s: &str) -> Result<f64, QuantityError> {
    if s.is_empty() || s.len() > 64 {
        return Err(QuantityError::Syntax);
    }
    let (sign, rest) = match s.as_bytes()[0] {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    if !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
        return Err(QuantityError::Syntax);
    }
    let mantissa: f64 = number.parse().map_err(|_| QuantityError::Syntax)?;
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
                return Err(QuantityError::Syntax);
            }
            // Digits only, so a failure is an exponent beyond i32: overflow
            // (or underflow to zero, which the ranges refuse just the same).
            let e: i32 = exp[1..].parse().map_err(|_| QuantityError::Overflow)?;
            10f64.powi(e)
        }
        _ => return Err(QuantityError::Syntax),
    };
    let v = sign * mantissa * multiplier;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(QuantityError::Overflow)
    }
}

/// [`parse`], without the reason.
pub fn value(s: &str) -> Option<f64> {
    parse(s).ok()
}

#[cfg(test)]
mod tests {
    use super::{parse, value, QuantityError};

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

    #[test]
    fn overflowing_values_are_refused_not_infinite() {
        for big in ["1e400", "1e2147483648", "9e308", "1e309", "-1e400"] {
            assert_eq!(parse(big), Err(QuantityError::Overflow), "{big:?}");
        }
        assert!(parse("1e308").is_ok_and(f64::is_finite));
        assert_eq!(parse("1e-400"), Ok(0.0), "underflow is zero, refused by the ranges");
        assert_eq!(parse("12MB"), Err(QuantityError::Syntax));
    }

    proptest::proptest! {
        /// Whatever the input, the answer is a finite number or an error: never
        /// infinity or NaN, never a panic.
        #[test]
        fn any_string_gives_a_finite_value_or_an_error(s in "[-+]?[0-9.]{0,40}([eE][-+]?[0-9]{1,12}|[numkMGTPE]|[KMGTPE]i)?") {
            if let Ok(v) = parse(&s) {
                proptest::prop_assert!(v.is_finite(), "{s:?} -> {v}");
            }
        }

        /// Decimal mantissas with binary suffixes scale exactly.
        #[test]
        fn binary_suffixes_scale(n in 0u32..100_000, k in 1i32..=4) {
            let suffix = ["Ki", "Mi", "Gi", "Ti"][(k - 1) as usize];
            proptest::prop_assert_eq!(parse(&format!("{n}{suffix}")), Ok(f64::from(n) * 1024f64.powi(k)));
        }
    }
}
