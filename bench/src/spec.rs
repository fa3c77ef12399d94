//! A workload's parameters as one line of `key=value` pairs,
//! `heap=64,live=0.5,seed=1`: the `params` of a [`RunRecord`], the `spec`
//! of a [`Job`] handed to a child process, the `MOVEGC_COMPACT_CHILD` and
//! `BT_IMPLS` settings of the benches. [`Spec`] is the one place that
//! writes ([`Display`](std::fmt::Display)) and reads ([`str::parse`]) that
//! form; workloads turn their parameter structs into a `Spec` and back.
//!
//! Pairs keep their order (the human columns of the report show them as
//! written). Serialized with serde as that same string, so a JSON file
//! holding one reads as before.
//!
//! [`RunRecord`]: crate::record::RunRecord
//! [`Job`]: crate::suite::Job

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Ordered `key=value` pairs; keys are unique. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Spec(Vec<(String, String)>);

/// Why a spec did not parse or lacks what a workload needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// An item without `=`.
    NotKeyValue(String),
    /// An item with nothing before its `=`.
    EmptyKey(String),
    /// A key given twice.
    Duplicate(String),
    /// A key the reader does not know, and the ones it does.
    Unknown {
        /// The key found.
        key: String,
        /// The keys the reader accepts.
        known: Vec<String>,
    },
    /// A key the reader needs is absent.
    Missing(String),
    /// A value that does not parse as its key's type.
    BadValue {
        /// The key.
        key: String,
        /// The value found.
        value: String,
    },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::NotKeyValue(item) => write!(f, "{item:?} is not key=value"),
            SpecError::EmptyKey(item) => write!(f, "{item:?} has no key"),
            SpecError::Duplicate(key) => write!(f, "key {key:?} given twice"),
            SpecError::Unknown { key, known } => {
                write!(f, "unknown key {key:?} (valid: {})", known.join(", "))
            }
            SpecError::Missing(key) => write!(f, "missing key {key:?}"),
            SpecError::BadValue { key, value } => write!(f, "bad value {value:?} for {key}"),
        }
    }
}

impl std::error::Error for SpecError {}

impl From<SpecError> for String {
    fn from(e: SpecError) -> String {
        e.to_string()
    }
}

impl Spec {
    /// No pairs.
    pub fn new() -> Spec {
        Spec::default()
    }

    /// `self` with `key` set to `value` (see [`set`](Self::set)).
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Spec {
        self.set(key, value);
        self
    }

    /// [`with`](Self::with) unless `value` is 0 (then `self` as it is): a
    /// key written only when it is not at its default of 0.
    pub fn with_nonzero(self, key: &str, value: usize) -> Spec {
        match value {
            0 => self,
            v => self.with(key, v),
        }
    }

    /// Sets `key` to `value`: in place if the key is present, else at the
    /// end.
    ///
    /// # Panics
    /// If the key is empty or either holds a `,` or `=` or surrounding
    /// space, which the one-line form could not read back: keys and values
    /// come from code, not from users.
    pub fn set(&mut self, key: &str, value: impl fmt::Display) {
        let value = value.to_string();
        let clean = |s: &str| !s.contains([',', '=']) && s.trim() == s;
        assert!(
            !key.is_empty() && clean(key) && clean(&value),
            "{key:?}={value:?} cannot be written as key=value"
        );
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `self` without `key`.
    pub fn without(&self, key: &str) -> Spec {
        Spec(self.0.iter().filter(|(k, _)| k != key).cloned().collect())
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The keys, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// Whether `key` is present with `value`.
    pub fn has(&self, key: &str, value: &str) -> bool {
        self.get(key) == Some(value)
    }

    /// No pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Err` naming the first key not in `known` (and listing `known`).
    pub fn only(&self, known: &[&str]) -> Result<(), SpecError> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((key, _)) => Err(SpecError::Unknown {
                key: key.clone(),
                known: known.iter().map(|k| k.to_string()).collect(),
            }),
            None => Ok(()),
        }
    }

    /// The value of `key` read by `parse` (`None` means a bad value), or
    /// `default` if the key is absent.
    pub fn read_or<T>(
        &self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, SpecError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse(v).ok_or_else(|| SpecError::BadValue {
                key: key.to_string(),
                value: v.to_string(),
            }),
        }
    }

    /// The value of `key` as a `T`, or `default` if the key is absent.
    pub fn value_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, SpecError> {
        self.read_or(key, default, |v| v.parse().ok())
    }

    /// The value of `key` as a `T`; `Err` if it is absent.
    pub fn require<T: FromStr>(&self, key: &str) -> Result<T, SpecError> {
        let v = self
            .get(key)
            .ok_or_else(|| SpecError::Missing(key.to_string()))?;
        v.parse().map_err(|_| SpecError::BadValue {
            key: key.to_string(),
            value: v.to_string(),
        })
    }
}

/// A boolean value: `1`/`true`/`yes` or `0`/`false`/`no` (for
/// [`Spec::read_or`]).
pub fn flag(v: &str) -> Option<bool> {
    match v {
        "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

impl fmt::Display for Spec {
    /// `key=value,key=value` (empty without pairs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl FromStr for Spec {
    type Err = SpecError;

    /// Reads [`Display`](fmt::Display)'s form. Space around items, keys and
    /// values is ignored, as are empty items; `-` alone (what a record
    /// without parameters once held) is no pairs.
    fn from_str(s: &str) -> Result<Spec, SpecError> {
        let mut spec = Spec::new();
        if s.trim() == "-" {
            return Ok(spec);
        }
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| SpecError::NotKeyValue(item.to_string()))?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() {
                return Err(SpecError::EmptyKey(item.to_string()));
            }
            if v.contains('=') {
                return Err(SpecError::NotKeyValue(item.to_string()));
            }
            if spec.get(k).is_some() {
                return Err(SpecError::Duplicate(k.to_string()));
            }
            spec.0.push((k.to_string(), v.to_string()));
        }
        Ok(spec)
    }
}

impl Serialize for Spec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Spec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Spec, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `key=value` reading and writing every workload's parameter type
/// shares, from its `spec()` (every key, in a fixed order), `read_spec(s,
/// &defaults)` (the keys given, over the defaults) and `validate()`:
/// `to_spec`, `from_spec` (unknown keys are an error, missing ones keep
/// their defaults, the result is validated) and `parse_spec`.
macro_rules! spec_io {
    ($t:ty) => {
        $crate::spec::spec_io!($t, optional []);
    };
    // `optional`: keys `spec` writes only when they are not at their
    // defaults (so the default's spec does not list them).
    ($t:ty, optional [$($opt:literal),*]) => {
        impl $t {
            /// [`spec`](Self::spec) as one `key=value,..` line, which
            /// [`parse_spec`](Self::parse_spec) reads back (used to hand a
            /// run to a child process).
            pub fn to_spec(&self) -> String {
                self.spec().to_string()
            }

            /// Reads a [`Spec`](crate::spec::Spec); missing keys keep their
            /// defaults, keys [`spec`](Self::spec) does not write (for the
            /// defaults, optional keys aside) are an error; the result is
            /// validated.
            pub fn from_spec(s: &$crate::spec::Spec) -> Result<$t, String> {
                let d = <$t>::default();
                let (spec, optional) = (d.spec(), [$($opt),*]);
                let mut known = spec.keys();
                known.extend_from_slice(&optional);
                s.only(&known)?;
                let p = <$t>::read_spec(s, &d)?;
                p.validate()?;
                Ok(p)
            }

            /// Parses [`to_spec`](Self::to_spec)'s format (see
            /// [`from_spec`](Self::from_spec)).
            pub fn parse_spec(spec: &str) -> Result<$t, String> {
                <$t>::from_spec(&spec.parse()?)
            }
        }
    };
}
pub(crate) use spec_io;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_in_order() {
        let s = Spec::new()
            .with("heap", 64)
            .with("live", 0.5)
            .with("strategy", "concurrent-move")
            .with("seed", 24301u64);
        let text = s.to_string();
        assert_eq!(text, "heap=64,live=0.5,strategy=concurrent-move,seed=24301");
        let back: Spec = text.parse().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.value_or("live", 1.0), Ok(0.5));
        assert_eq!(back.require::<u64>("seed"), Ok(24301));
        assert_eq!(back.get("strategy"), Some("concurrent-move"));
        assert_eq!(back.keys(), ["heap", "live", "strategy", "seed"]);
        let pairs: Vec<(&str, &str)> = back.iter().collect();
        assert_eq!(pairs[1], ("live", "0.5"));
    }

    #[test]
    fn serde_is_the_one_line_string() {
        let s = Spec::new().with("n", 17).with("young", "on");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#""n=17,young=on""#);
        assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), s);
        let e = serde_json::from_str::<Spec>(r#""n=17,n=18""#).unwrap_err();
        assert!(e.to_string().contains(r#"key "n" given twice"#), "{e}");
    }

    #[test]
    fn set_replaces_in_place_and_without_removes() {
        let mut s: Spec = "a=1,b=2,c=3".parse().unwrap();
        s.set("b", "x");
        s.set("d", 4);
        assert_eq!(s.to_string(), "a=1,b=x,c=3,d=4");
        assert_eq!(s.without("b").to_string(), "a=1,c=3,d=4");
        assert_eq!(s.without("nope"), s);
        assert!(s.has("a", "1") && !s.has("a", "2") && !s.has("z", "1"));
    }

    #[test]
    fn empty_forms() {
        for text in ["", "-", " , ,"] {
            let s: Spec = text.parse().unwrap();
            assert!(s.is_empty(), "{text:?}");
        }
        assert_eq!(Spec::new().to_string(), "");
        let s: Spec = " heap = 64 , seed=1 ".parse().unwrap();
        assert_eq!(s.to_string(), "heap=64,seed=1");
    }

    #[test]
    fn malformed_specs_are_clear_errors() {
        let err = |t: &str| t.parse::<Spec>().unwrap_err().to_string();
        assert_eq!(err("heap=64,rounds"), r#""rounds" is not key=value"#);
        assert_eq!(err("=3"), r#""=3" has no key"#);
        assert_eq!(err("a=1=2"), r#""a=1=2" is not key=value"#);
        assert_eq!(err("a=1,a=2"), r#"key "a" given twice"#);
    }

    #[test]
    fn unknown_missing_and_bad_values_are_clear_errors() {
        let s: Spec = "n=17,bogus=1,x=abc".parse().unwrap();
        assert_eq!(
            s.only(&["n", "x"]).unwrap_err().to_string(),
            r#"unknown key "bogus" (valid: n, x)"#
        );
        assert!(s.only(&["n", "x", "bogus"]).is_ok());
        assert_eq!(
            s.require::<u32>("depth").unwrap_err(),
            SpecError::Missing("depth".into())
        );
        assert_eq!(
            s.require::<u32>("depth").unwrap_err().to_string(),
            r#"missing key "depth""#
        );
        assert_eq!(
            s.value_or::<u32>("x", 0).unwrap_err().to_string(),
            r#"bad value "abc" for x"#
        );
        assert_eq!(s.value_or::<u32>("absent", 7), Ok(7));
        assert_eq!(s.read_or("n", 0, |v| v.parse::<u32>().ok()), Ok(17));
        let e: String = s.read_or("x", false, flag).unwrap_err().into();
        assert_eq!(e, r#"bad value "abc" for x"#);
    }

    #[test]
    #[should_panic(expected = "cannot be written as key=value")]
    fn values_that_would_not_read_back_are_refused() {
        let _ = Spec::new().with("list", "1,2");
    }

    #[test]
    fn flags() {
        assert_eq!(flag("1"), Some(true));
        assert_eq!(flag("no"), Some(false));
        assert_eq!(flag("maybe"), None);
    }
}
