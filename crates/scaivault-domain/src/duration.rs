use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::text::truncate_for_message;

/// The longest duration accepted: 100 years of 365.25 days. Anything longer
/// in a TTL or rotation interval is a typo, and the cap keeps every
/// conversion (notably to `chrono::TimeDelta`) far from overflow.
pub const MAX_DURATION_SECS: u64 = 36_525 * 86_400;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
}

impl Unit {
    /// Largest first, which is the order `from_secs` tries them in.
    const ALL: [Unit; 5] = [Unit::Weeks, Unit::Days, Unit::Hours, Unit::Minutes, Unit::Seconds];

    fn secs(self) -> u64 {
        match self {
            Unit::Seconds => 1,
            Unit::Minutes => 60,
            Unit::Hours => 3_600,
            Unit::Days => 86_400,
            Unit::Weeks => 604_800,
        }
    }

    fn suffix(self) -> char {
        match self {
            Unit::Seconds => 's',
            Unit::Minutes => 'm',
            Unit::Hours => 'h',
            Unit::Days => 'd',
            Unit::Weeks => 'w',
        }
    }

    fn from_suffix(s: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| {
            let mut buf = [0; 4];
            u.suffix().encode_utf8(&mut buf) == s
        })
    }
}

/// A duration written as an integer and a unit: `90d`, `48h`, `30m`, `45s`,
/// `2w`.
///
/// The unit is kept so the value displays and serializes the way it was
/// written: `90d` stays `90d` rather than becoming `7776000s`. Equality is
/// therefore on value and unit (`60s != 1m`), while ordering is by length
/// first, so sorting durations sorts them by how long they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DurationSpec {
    value: u64,
    unit: Unit,
}

impl DurationSpec {
    /// Parses the strict form `<digits><unit>`: no sign, no spaces, no
    /// leading zeros, one lower-case unit letter. Zero (`0s`) is allowed.
    pub fn parse(s: &str) -> Result<DurationSpec, DurationError> {
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        if s.chars().any(char::is_whitespace) {
            return Err(DurationError::Whitespace);
        }
        if s.starts_with(['+', '-']) {
            return Err(DurationError::Sign);
        }
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = s.split_at(digits);
        if number.is_empty() {
            return Err(DurationError::MissingNumber);
        }
        if unit.is_empty() {
            return Err(DurationError::MissingUnit);
        }
        if number.len() > 1 && number.starts_with('0') {
            return Err(DurationError::LeadingZero);
        }
        let unit =
            Unit::from_suffix(unit).ok_or_else(|| DurationError::UnknownUnit(truncate_for_message(unit)))?;
        let value = number.parse::<u64>().map_err(|_| DurationError::TooLarge)?;
        match value.checked_mul(unit.secs()) {
            Some(total) if total <= MAX_DURATION_SECS => Ok(DurationSpec { value, unit }),
            _ => Err(DurationError::TooLarge),
        }
    }

    /// Builds a duration from seconds, in the largest unit that divides it
    /// exactly (`86400` becomes `1d`), and capped at [`MAX_DURATION_SECS`] so
    /// that every `DurationSpec` obeys the same bound as a parsed one.
    pub fn from_secs(secs: u64) -> DurationSpec {
        let secs = secs.min(MAX_DURATION_SECS);
        if secs == 0 {
            return DurationSpec { value: 0, unit: Unit::Seconds };
        }
        let unit = Unit::ALL.into_iter().find(|u| secs.is_multiple_of(u.secs())).unwrap_or(Unit::Seconds);
        DurationSpec { value: secs / unit.secs(), unit }
    }

    /// Total length in seconds.
    pub fn as_secs(&self) -> u64 {
        // Cannot overflow: construction bounds the product by MAX_DURATION_SECS.
        self.value * self.unit.secs()
    }

    pub fn as_std(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.as_secs())
    }

    pub fn as_chrono(&self) -> chrono::TimeDelta {
        // The bound keeps this far inside TimeDelta's range; the fallbacks
        // only exist so no arithmetic here can panic.
        i64::try_from(self.as_secs())
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .unwrap_or(chrono::TimeDelta::MAX)
    }
}

impl PartialOrd for DurationSpec {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DurationSpec {
    /// By length, then by unit so the order stays consistent with `Eq`
    /// (`60s` sorts just before `1m`).
    fn cmp(&self, other: &Self) -> Ordering {
        (self.as_secs(), self.unit).cmp(&(other.as_secs(), other.unit))
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.value, self.unit.suffix())
    }
}

impl std::str::FromStr for DurationSpec {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DurationSpec::parse(s)
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        DurationSpec::parse(&s).map_err(de::Error::custom)
    }
}

/// An ordered list of durations, such as rotation reminders `7d,1d`.
///
/// Written either as one comma-separated string or as a JSON array of
/// duration strings; always serialized as the string. The order is kept as
/// given and duplicates are allowed, since what they mean is up to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DurationList(Vec<DurationSpec>);

impl DurationList {
    /// Parses `7d,1d`. Spaces right after a comma are tolerated because
    /// people write lists that way; anywhere else they are an error, as in a
    /// single duration. The empty string is the empty list, so an empty list
    /// survives a round trip through its string form.
    pub fn parse(s: &str) -> Result<DurationList, DurationError> {
        if s.is_empty() {
            return Ok(DurationList(Vec::new()));
        }
        s.split(',')
            .enumerate()
            .map(|(index, item)| {
                let item = if index == 0 { item } else { item.trim_start_matches(' ') };
                DurationSpec::parse(item).map_err(|e| e.in_list(index))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(DurationList)
    }

    pub fn as_slice(&self) -> &[DurationSpec] {
        &self.0
    }
}

impl From<Vec<DurationSpec>> for DurationList {
    fn from(items: Vec<DurationSpec>) -> Self {
        DurationList(items)
    }
}

impl fmt::Display for DurationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for DurationList {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DurationList::parse(s)
    }
}

impl Serialize for DurationList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationListVisitor)
    }
}

struct DurationListVisitor;

impl<'de> Visitor<'de> for DurationListVisitor {
    type Value = DurationList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a comma-separated duration string like \"7d,1d\" or an array of duration strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        DurationList::parse(v).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element::<String>()? {
            let parsed = DurationSpec::parse(&item).map_err(|e| de::Error::custom(e.in_list(items.len())))?;
            items.push(parsed);
        }
        Ok(DurationList(items))
    }
}

/// Why a string is not a duration or duration list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration is empty")]
    Empty,
    #[error("duration must not contain spaces")]
    Whitespace,
    #[error("duration must not have a sign")]
    Sign,
    #[error("duration must start with a whole number, as in \"90d\"")]
    MissingNumber,
    #[error("duration needs a unit after the number: s, m, h, d or w")]
    MissingUnit,
    #[error("duration must not have leading zeros")]
    LeadingZero,
    /// Holds the text after the number, shortened if long.
    #[error("unknown duration unit {0:?}, expected one of s, m, h, d, w")]
    UnknownUnit(String),
    #[error("duration is longer than the maximum of 100 years")]
    TooLarge,
    /// An item of a duration list, counted from zero, is invalid.
    #[error("duration list item {index}: {error}")]
    ListItem { index: usize, error: Box<DurationError> },
}

impl DurationError {
    fn in_list(self, index: usize) -> DurationError {
        DurationError::ListItem { index, error: Box::new(self) }
    }
}

impl schemars::JsonSchema for DurationSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(0|[1-9][0-9]*)[smhdw]$",
            "description": "An integer and a unit: s, m, h, d or w (\"90d\", \"48h\")."
        })
    }
}

impl schemars::JsonSchema for DurationList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DurationList".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Durations, comma-separated (\"7d,1d\") or as an array of strings.",
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<u64, DurationError>) {
        let got = DurationSpec::parse(input);
        assert_eq!(got.as_ref().map(DurationSpec::as_secs), expected.as_ref().map(|s| *s), "{input:?}");
        if let Ok(d) = got {
            assert_eq!(d.to_string(), input, "display keeps the unit");
            assert_eq!(d.as_std(), std::time::Duration::from_secs(d.as_secs()));
            assert_eq!(d.as_chrono().num_seconds(), i64::try_from(d.as_secs()).unwrap());
            assert_eq!(serde_json::to_value(d).unwrap(), input);
            assert_eq!(serde_json::from_value::<DurationSpec>(input.into()).unwrap(), d);
        } else {
            assert!(serde_json::from_value::<DurationSpec>(input.into()).is_err());
        }
    }

    #[test]
    fn good_durations() {
        check("90d", Ok(90 * 86_400));
        check("48h", Ok(48 * 3_600));
        check("30m", Ok(30 * 60));
        check("45s", Ok(45));
        check("2w", Ok(2 * 604_800));
        check("0s", Ok(0));
        check("0d", Ok(0));
        check("36525d", Ok(MAX_DURATION_SECS));
        check("3155760000s", Ok(MAX_DURATION_SECS));
    }

    #[test]
    fn bad_durations() {
        use DurationError::*;
        check("", Err(Empty));
        check("90", Err(MissingUnit));
        check("0", Err(MissingUnit));
        check("d", Err(MissingNumber));
        check("d90", Err(MissingNumber));
        check("90x", Err(UnknownUnit("x".into())));
        check("90D", Err(UnknownUnit("D".into())));
        check("90ms", Err(UnknownUnit("ms".into())));
        check("1h30m", Err(UnknownUnit("h30m".into())));
        check("1.5h", Err(UnknownUnit(".5h".into())));
        check("90dé", Err(UnknownUnit("dé".into())));
        check("90 d", Err(Whitespace));
        check(" 90d", Err(Whitespace));
        check("90d\n", Err(Whitespace));
        check("90d\u{a0}", Err(Whitespace));
        check("-1d", Err(Sign));
        check("+1d", Err(Sign));
        check("07d", Err(LeadingZero));
        check("00s", Err(LeadingZero));
        check("36526d", Err(TooLarge));
        check("3155760001s", Err(TooLarge));
        check("5218w", Err(TooLarge));
        check("18446744073709551615w", Err(TooLarge));
        check("99999999999999999999999999s", Err(TooLarge));
    }

    #[test]
    fn unknown_unit_error_is_bounded() {
        let input = format!("1{}", "y".repeat(10_000));
        let msg = DurationSpec::parse(&input).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn from_secs_picks_the_largest_exact_unit_and_caps() {
        let table = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (90, "90s"),
            (3_600, "1h"),
            (86_400, "1d"),
            (90 * 86_400, "90d"),
            (604_800, "1w"),
            (1_209_600, "2w"),
            (u64::MAX, "36525d"),
        ];
        for (secs, text) in table {
            let d = DurationSpec::from_secs(secs);
            assert_eq!(d.to_string(), text, "{secs}");
            assert_eq!(d.as_secs(), secs.min(MAX_DURATION_SECS));
        }
    }

    #[test]
    fn ordering_is_by_length_and_consistent_with_eq() {
        let p = |s| DurationSpec::parse(s).unwrap();
        assert!(p("2s") < p("1m"));
        assert!(p("23h") < p("1d"));
        assert!(p("6d") < p("1w"));
        assert_ne!(p("60s"), p("1m"));
        assert!(p("60s") < p("1m"));
        let mut list = [p("1w"), p("1d"), p("60s"), p("1m"), p("0s")];
        list.sort();
        let sorted: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(sorted, ["0s", "60s", "1m", "1d", "1w"]);
    }

    fn check_list(input: &str, expected: Result<&[&str], DurationError>) {
        let got = DurationList::parse(input);
        let got_strings = got.map(|l| l.as_slice().iter().map(ToString::to_string).collect::<Vec<_>>());
        let expected_strings = expected.map(|e| e.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(got_strings, expected_strings, "{input:?}");
    }

    #[test]
    fn list_from_string() {
        use DurationError::*;
        let item = |index, e: DurationError| ListItem { index, error: Box::new(e) };
        check_list("7d,1d", Ok(&["7d", "1d"]));
        check_list("7d, 1d,  12h", Ok(&["7d", "1d", "12h"]));
        check_list("30m", Ok(&["30m"]));
        check_list("1d,1d", Ok(&["1d", "1d"]));
        check_list("", Ok(&[]));
        check_list("7d,", Err(item(1, Empty)));
        check_list(",7d", Err(item(0, Empty)));
        check_list("7d,,1d", Err(item(1, Empty)));
        check_list("7d ,1d", Err(item(0, Whitespace)));
        check_list(" 7d", Err(item(0, Whitespace)));
        check_list("7d,\t1d", Err(item(1, Whitespace)));
        check_list("7d,1x", Err(item(1, UnknownUnit("x".into()))));
        check_list("7d;1d", Err(item(0, UnknownUnit("d;1d".into()))));
    }

    #[test]
    fn list_from_json_string_or_array() {
        let from = |v: serde_json::Value| serde_json::from_value::<DurationList>(v);
        let expected = DurationList::parse("7d,1d").unwrap();
        assert_eq!(from(serde_json::json!("7d,1d")).unwrap(), expected);
        assert_eq!(from(serde_json::json!("7d, 1d")).unwrap(), expected);
        assert_eq!(from(serde_json::json!(["7d", "1d"])).unwrap(), expected);
        assert_eq!(from(serde_json::json!([])).unwrap(), DurationList::default());
        let err = from(serde_json::json!(["7d", "1y"])).unwrap_err().to_string();
        assert!(err.contains("item 1") && err.contains("\"y\""), "{err}");
        assert!(from(serde_json::json!(["7d", 1])).is_err());
        assert!(from(serde_json::json!(["7d,1d"])).is_err());
        assert!(from(serde_json::json!(7)).is_err());
        assert!(from(serde_json::json!({"a": "7d"})).is_err());
        assert!(from(serde_json::json!(null)).is_err());
    }

    #[test]
    fn list_serializes_and_displays_as_the_compact_string() {
        let list = DurationList::parse("7d, 1d, 30m").unwrap();
        assert_eq!(list.to_string(), "7d,1d,30m");
        assert_eq!(serde_json::to_value(&list).unwrap(), "7d,1d,30m");
        let back: DurationList = serde_json::from_value(serde_json::to_value(&list).unwrap()).unwrap();
        assert_eq!(back, list);
        let empty = DurationList::default();
        assert_eq!(DurationList::parse(&empty.to_string()).unwrap(), empty);
    }
}
