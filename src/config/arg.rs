//! Parsing a command-line override (`--key value`) into a recipe field's type, the way MindCV's
//! argparse does (bools through `str2bool`), with a few lenient extensions for lists and `None`.
use super::choices::{
    AmpLevel, CkptSavePolicy, ColorJitter, DeviceTarget, EraseValue, Interpolation, Loss,
    LossScaleType, Optimizer, Reduction, Scheduler, WeightDecayFilter,
};

/// A recipe field type that can be parsed from one command-line string. The error says what was
/// expected; the caller adds the key and the value.
pub(crate) trait ArgValue: Sized {
    /// What a bare `--key` means (`config.py`'s `nargs='?', const=True`): booleans only.
    const BARE: Option<&'static str> = None;
    /// The kind of value, for help texts.
    const VALUE_NAME: &'static str;
    /// The accepted spellings of a fixed-choice type (empty otherwise).
    const CHOICES: &'static [&'static str] = &[];
    fn parse_arg(s: &str) -> Result<Self, String>;
}

/// MindCV's `str2bool`: `yes`/`true`/`1` or `no`/`false`/`0`, case-insensitive.
pub fn str2bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Some(true),
        "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

impl ArgValue for bool {
    const BARE: Option<&'static str> = Some("True");
    const VALUE_NAME: &'static str = "BOOL";
    fn parse_arg(s: &str) -> Result<Self, String> {
        str2bool(s).ok_or_else(|| "expected a boolean (yes/true/1 or no/false/0)".to_string())
    }
}

macro_rules! arg_from_str {
    ($what:literal, $value_name:literal: $($t:ty),+) => {
        $(impl ArgValue for $t {
            const VALUE_NAME: &'static str = $value_name;
            fn parse_arg(s: &str) -> Result<Self, String> {
                s.trim().parse::<$t>().map_err(|e| format!(concat!("expected ", $what, " ({})"), e))
            }
        })+
    };
}
arg_from_str!("a non-negative integer", "INT": u8, u32, u64, usize);
arg_from_str!("a number", "FLOAT": f64);

impl ArgValue for String {
    const VALUE_NAME: &'static str = "STR";
    fn parse_arg(s: &str) -> Result<Self, String> {
        Ok(s.to_string())
    }
}

/// `None`, `null`, `~` or an empty string mean "unset" (Python `None`).
fn is_none(s: &str) -> bool {
    matches!(
        s.trim(),
        "" | "None" | "none" | "null" | "Null" | "NULL" | "~"
    )
}

impl<T: ArgValue> ArgValue for Option<T> {
    const BARE: Option<&'static str> = T::BARE;
    const VALUE_NAME: &'static str = T::VALUE_NAME;
    const CHOICES: &'static [&'static str] = T::CHOICES;
    fn parse_arg(s: &str) -> Result<Self, String> {
        if is_none(s) {
            Ok(None)
        } else {
            T::parse_arg(s).map(Some)
        }
    }
}

/// The items of a list written `a,b`, `[a, b]` or `(a, b)`.
fn list_items(s: &str) -> Vec<&str> {
    let t = s.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .or_else(|| t.strip_prefix('(').and_then(|t| t.strip_suffix(')')))
        .unwrap_or(t);
    t.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

impl<T: ArgValue> ArgValue for Vec<T> {
    const VALUE_NAME: &'static str = "LIST";
    fn parse_arg(s: &str) -> Result<Self, String> {
        list_items(s)
            .into_iter()
            .map(T::parse_arg)
            .collect::<Result<Vec<T>, String>>()
            .map_err(|e| format!("expected a list like [a, b]: {e}"))
    }
}

impl ArgValue for [f64; 2] {
    const VALUE_NAME: &'static str = "PAIR";
    fn parse_arg(s: &str) -> Result<Self, String> {
        let v = Vec::<f64>::parse_arg(s)?;
        <[f64; 2]>::try_from(v.as_slice())
            .map_err(|_| format!("expected a pair like [lo, hi], got {} items", v.len()))
    }
}

/// `true` if `s` is written as a list (`[a, b]`, `(a, b)` or `a,b`).
fn looks_like_list(s: &str) -> bool {
    s.starts_with('[') || s.starts_with('(') || s.contains(',')
}

impl ArgValue for ColorJitter {
    const VALUE_NAME: &'static str = "FLOAT|LIST";
    fn parse_arg(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let v = if looks_like_list(t) {
            ColorJitter::PerOp(Vec::<f64>::parse_arg(t)?)
        } else {
            ColorJitter::Factor(f64::parse_arg(t)?)
        };
        v.factors()?;
        Ok(v)
    }
}

impl ArgValue for EraseValue {
    const VALUE_NAME: &'static str = "VALUE";
    fn parse_arg(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Ok(x) = t.parse::<f64>() {
            Ok(EraseValue::Constant(x))
        } else if looks_like_list(t) {
            Vec::<f64>::parse_arg(t).map(EraseValue::PerChannel)
        } else {
            Ok(EraseValue::Named(t.to_string()))
        }
    }
}

macro_rules! arg_choice {
    ($($t:ty),+) => {
        $(impl ArgValue for $t {
            const VALUE_NAME: &'static str = "NAME";
            const CHOICES: &'static [&'static str] = <$t>::NAMES;
            fn parse_arg(s: &str) -> Result<Self, String> {
                s.trim().parse::<$t>().map_err(|_| format!("expected one of {}", <$t>::NAMES.join(", ")))
            }
        })+
    };
}
arg_choice!(
    Interpolation,
    Scheduler,
    Optimizer,
    Loss,
    Reduction,
    AmpLevel,
    LossScaleType,
    WeightDecayFilter,
    CkptSavePolicy,
    DeviceTarget
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str2bool_matches_mindcv() {
        for t in ["yes", "True", "TRUE", "1", "true"] {
            assert_eq!(bool::parse_arg(t), Ok(true), "{t}");
        }
        for f in ["no", "False", "0", "false"] {
            assert_eq!(bool::parse_arg(f), Ok(false), "{f}");
        }
        assert!(bool::parse_arg("maybe").is_err());
    }

    #[test]
    fn lists_pairs_and_options() {
        assert_eq!(<[f64; 2]>::parse_arg("[0.08, 1.0]"), Ok([0.08, 1.0]));
        assert_eq!(<[f64; 2]>::parse_arg("(0.75,1.333)"), Ok([0.75, 1.333]));
        assert!(<[f64; 2]>::parse_arg("1,2,3").is_err());
        assert_eq!(Vec::<u32>::parse_arg("30,60,90"), Ok(vec![30, 60, 90]));
        assert_eq!(Option::<usize>::parse_arg("None"), Ok(None));
        assert_eq!(Option::<usize>::parse_arg("1000"), Ok(Some(1000)));
        assert_eq!(
            EraseValue::parse_arg("random"),
            Ok(EraseValue::Named("random".into()))
        );
        assert_eq!(EraseValue::parse_arg("0"), Ok(EraseValue::Constant(0.0)));
    }

    #[test]
    fn color_jitter_is_a_factor_or_a_list_of_three_or_four() {
        assert_eq!(ColorJitter::parse_arg("0.4"), Ok(ColorJitter::Factor(0.4)));
        assert_eq!(
            ColorJitter::parse_arg("[0.4, 0.3, 0.2]"),
            Ok(ColorJitter::PerOp(vec![0.4, 0.3, 0.2]))
        );
        assert_eq!(
            ColorJitter::parse_arg("0.4,0.4,0.4,0.1").unwrap().factors(),
            Ok([0.4, 0.4, 0.4, 0.1])
        );
        for bad in ["[0.4, 0.4]", "-0.1", "[0.1, 0.1, 0.1, 0.6]", "x"] {
            assert!(ColorJitter::parse_arg(bad).is_err(), "{bad}");
        }
        assert_eq!(Option::<ColorJitter>::parse_arg("None"), Ok(None));
    }
}
