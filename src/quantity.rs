//! Kubernetes quantities (`512Mi`, `1.5G`, `129e6`, `500m`), parsed and printed the way the API
//! server does.
//!
//! Playbooks compare and raise memory limits and read CPU settings; state files and settings are
//! written by people in Kubernetes' own notation. Parsing it exactly (binary and decimal
//! suffixes, exponents, fractions rounded up as `Quantity::Value()` does) keeps a repair's
//! arithmetic identical to what `kubectl` would show, and printing in the canonical binary form
//! (`640Mi`, not `671088640`) keeps actions and reports readable.
//!
//! Memory is handled in bytes and CPU in millicores, both as `i64` like Kubernetes' `Value()` and
//! `MilliValue()`. Negative quantities are rejected: no memory or CPU setting can be negative.

/// A string that is not a valid quantity for its use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {message}")]
pub struct QuantityError {
    /// The text as given (untrimmed).
    pub input: String,
    /// What is wrong and what is expected.
    pub message: String,
}

const MEMORY_EXAMPLES: &str =
    "expected a memory quantity such as 128974848, 129e6, 129M, 123Mi, 1.5Gi";
const CPU_EXAMPLES: &str = "expected a CPU quantity such as 500m, 0.5, 2 or 1.25";

/// An exact non-negative rational `numerator / denominator`, as parsed.
struct Exact {
    numerator: i128,
    denominator: i128,
}

/// How a suffix scales the number: ×2^n or ×10^n (n may be negative for decimal).
enum Scale {
    Binary(u32),
    Decimal(i32),
}

fn suffix_scale(suffix: &str) -> Option<Scale> {
    Some(match suffix {
        "" => Scale::Decimal(0),
        "Ki" => Scale::Binary(10),
        "Mi" => Scale::Binary(20),
        "Gi" => Scale::Binary(30),
        "Ti" => Scale::Binary(40),
        "Pi" => Scale::Binary(50),
        "Ei" => Scale::Binary(60),
        "n" => Scale::Decimal(-9),
        "u" => Scale::Decimal(-6),
        "m" => Scale::Decimal(-3),
        "k" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        _ => {
            // Decimal exponent: e3, E-2, e+6.
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4
            {
                return None;
            }
            Scale::Decimal(rest.parse().ok()?)
        }
    })
}

fn error(input: &str, message: impl Into<String>) -> QuantityError {
    QuantityError {
        input: input.to_owned(),
        message: message.into(),
    }
}

/// Parses any Kubernetes quantity into an exact fraction; `expected` explains the valid forms.
fn parse_exact(input: &str, expected: &str) -> Result<Exact, QuantityError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(error(input, format!("empty; {expected}")));
    }
    let (sign, body) = match s.as_bytes()[0] {
        b'-' => (-1, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let number_len = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(error(input, format!("no number; {expected}")));
    }
    if fraction.contains('.') {
        return Err(error(
            input,
            format!("more than one decimal point; {expected}"),
        ));
    }
    let Some(scale) = suffix_scale(suffix) else {
        return Err(error(
            input,
            format!(
                "unknown suffix {suffix:?} (valid: Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or an exponent like e6); {expected}"
            ),
        ));
    };
    if sign < 0 && (whole.bytes().chain(fraction.bytes())).any(|b| b != b'0') {
        return Err(error(input, format!("negative; {expected}")));
    }
    let too_large = || error(input, format!("too large; {expected}"));
    let digits = whole.trim_start_matches('0').len() + fraction.len();
    if digits > 30 {
        return Err(too_large());
    }
    let mut numerator: i128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        numerator = numerator * 10 + i128::from(b - b'0');
    }
    let mut denominator: i128 = 10i128.pow(fraction.len() as u32);
    match scale {
        Scale::Binary(n) => numerator = numerator.checked_mul(1i128 << n).ok_or_else(too_large)?,
        Scale::Decimal(n) if n >= 0 => {
            let factor = 10i128.checked_pow(n.unsigned_abs()).ok_or_else(too_large)?;
            numerator = numerator.checked_mul(factor).ok_or_else(too_large)?;
        }
        Scale::Decimal(n) => {
            // With at most 30 digits, a denominator beyond i128 means a value far below one
            // millionth of a unit: it rounds up to 1 (or stays 0) whatever the unit.
            match 10i128
                .checked_pow(n.unsigned_abs())
                .and_then(|factor| denominator.checked_mul(factor))
            {
                Some(d) => denominator = d,
                None => {
                    return Ok(Exact {
                        numerator: numerator.min(1),
                        denominator: i128::MAX,
                    });
                }
            }
        }
    }
    Ok(Exact {
        numerator,
        denominator,
    })
}

/// `ceil(exact × multiplier)` as an `i64`, or "too large".
fn round_up(
    input: &str,
    exact: &Exact,
    multiplier: i128,
    expected: &str,
) -> Result<i64, QuantityError> {
    let too_large = || error(input, format!("too large; {expected}"));
    let scaled = exact
        .numerator
        .checked_mul(multiplier)
        .ok_or_else(too_large)?;
    let value = scaled / exact.denominator + i128::from(scaled % exact.denominator != 0);
    i64::try_from(value).map_err(|_| too_large())
}

/// Parses a memory quantity into bytes, as Kubernetes' `Quantity::Value()`.
///
/// Accepts plain bytes (`128974848`), exponents (`129e6`), decimal suffixes (`k M G T P E`),
/// binary suffixes (`Ki Mi Gi Ti Pi Ei`), fractions (`1.5Gi`) and sub-unit suffixes (`1000m` is
/// one byte). Fractional bytes round up. Surrounding whitespace is ignored.
pub fn parse_memory(s: &str) -> Result<i64, QuantityError> {
    let exact = parse_exact(s, MEMORY_EXAMPLES)?;
    round_up(s, &exact, 1, MEMORY_EXAMPLES)
}

/// Parses a CPU quantity into millicores, as Kubernetes' `Quantity::MilliValue()`: `500m`, `0.5`
/// (500), `2` (2000), `1.25` (1250). Fractions of a millicore round up.
pub fn parse_cpu(s: &str) -> Result<i64, QuantityError> {
    let exact = parse_exact(s, CPU_EXAMPLES)?;
    round_up(s, &exact, 1000, CPU_EXAMPLES)
}

/// Prints bytes in Kubernetes' canonical binary-SI form: the largest of `Ei Pi Ti Gi Mi Ki` that
/// divides the value exactly, else plain bytes (`536870912` → `512Mi`, `1500` → `1500`).
pub fn format_memory(bytes: i64) -> String {
    const UNITS: [(&str, u32); 6] = [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ];
    if bytes != 0 {
        for (suffix, shift) in UNITS {
            let unit = 1i64 << shift;
            if bytes % unit == 0 {
                return format!("{}{suffix}", bytes / unit);
            }
        }
    }
    bytes.to_string()
}

/// Prints millicores as Kubernetes does: whole cores without a suffix (`2`), else millicores
/// (`500m`, `1500m`).
pub fn format_cpu(millis: i64) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KI: i64 = 1 << 10;
    const MI: i64 = 1 << 20;
    const GI: i64 = 1 << 30;

    #[test]
    fn memory_quantities_parse_to_bytes_like_kubernetes() {
        let cases: &[(&str, i64)] = &[
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("129E6", 129_000_000),
            ("1e+3", 1000),
            ("129M", 129_000_000),
            ("123Mi", 123 * MI),
            ("1Gi", GI),
            ("1.5Gi", 3 * GI / 2),
            ("500Ki", 500 * KI),
            ("1k", 1000),
            ("1G", 1_000_000_000),
            ("1T", 1_000_000_000_000),
            ("1Ti", 1 << 40),
            ("1P", 1_000_000_000_000_000),
            ("1Pi", 1 << 50),
            ("1E", 1_000_000_000_000_000_000),
            ("1Ei", 1 << 60),
            ("1000m", 1),
            ("0", 0),
            ("0.5Ki", 512),
            (".5Ki", 512),
            ("+1Ki", KI),
            ("  256Mi \n", 256 * MI),
        ];
        for (input, bytes) in cases {
            assert_eq!(parse_memory(input), Ok(*bytes), "{input}");
        }
    }

    #[test]
    fn fractional_bytes_round_up() {
        let cases: &[(&str, i64)] = &[
            ("1500m", 2),
            ("1m", 1),
            ("0.1", 1),
            ("1.0001k", 1001),
            ("1n", 1),
            ("1e-40", 1),
            ("1.5e-9999", 1),
            ("0e-40", 0),
        ];
        for (input, bytes) in cases {
            assert_eq!(parse_memory(input), Ok(*bytes), "{input}");
        }
    }

    #[test]
    fn cpu_quantities_parse_to_millicores() {
        let cases: &[(&str, i64)] = &[
            ("500m", 500),
            ("0.5", 500),
            ("2", 2000),
            ("1.25", 1250),
            ("100m", 100),
            (" 1 ", 1000),
            ("0.0001", 1),
            ("1k", 1_000_000),
        ];
        for (input, millis) in cases {
            assert_eq!(parse_cpu(input), Ok(*millis), "{input}");
        }
    }

    #[test]
    fn invalid_quantities_are_rejected_naming_the_input_and_the_expected_form() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("Mi", "no number"),
            ("1.2.3Mi", "more than one decimal point"),
            ("1KB", "unknown suffix"),
            ("1K", "unknown suffix"),
            ("1 Gi", "unknown suffix"),
            ("1mi", "unknown suffix"),
            ("abc", "no number"),
            ("1e", "unknown suffix"),
            ("-1Gi", "negative"),
            ("9Ei", "too large"),
            ("1e40", "too large"),
            ("99999999999999999999999999999999999", "too large"),
        ];
        for (input, problem) in cases {
            let err = parse_memory(input).expect_err(input);
            assert_eq!(err.input, *input);
            assert!(err.message.contains(problem), "{input}: {}", err.message);
            assert!(
                err.message.contains("expected a memory quantity"),
                "{input}: {}",
                err.message
            );
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
        let err = parse_cpu("fast").unwrap_err();
        assert!(
            err.message.contains("expected a CPU quantity"),
            "{}",
            err.message
        );
    }

    #[test]
    fn negative_zero_is_zero() {
        assert_eq!(parse_memory("-0"), Ok(0));
    }

    #[test]
    fn memory_is_printed_in_the_largest_exact_binary_unit() {
        let cases: &[(i64, &str)] = &[
            (536_870_912, "512Mi"),
            (GI, "1Gi"),
            (1500, "1500"),
            (0, "0"),
            (KI, "1Ki"),
            (640 * MI, "640Mi"),
            (3 * GI / 2, "1536Mi"),
            (1 << 60, "1Ei"),
            (1_000_000_000, "1000000000"),
            (1_024_000, "1000Ki"),
            (-2 * MI, "-2Mi"),
        ];
        for (bytes, text) in cases {
            assert_eq!(format_memory(*bytes), *text, "{bytes}");
        }
    }

    #[test]
    fn cpu_is_printed_as_whole_cores_or_millicores() {
        let cases: &[(i64, &str)] = &[
            (500, "500m"),
            (2000, "2"),
            (1500, "1500m"),
            (0, "0"),
            (1, "1m"),
        ];
        for (millis, text) in cases {
            assert_eq!(format_cpu(*millis), *text, "{millis}");
        }
    }

    #[test]
    fn printed_memory_parses_back_to_the_same_bytes() {
        for bytes in [0, 1, 1500, KI, 3 * KI, 512 * MI, 640 * MI, 7 * GI, 1 << 62] {
            assert_eq!(parse_memory(&format_memory(bytes)), Ok(bytes));
        }
    }
}
