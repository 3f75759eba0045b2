//! Property tests for the path and glob rules. The glob matcher is checked
//! against a deliberately naive reference matcher written here, so a bug in
//! the production dynamic-programming matcher cannot hide behind itself.

use proptest::prelude::*;
use scaivault_domain::{
    DurationSpec, GlobPattern, MAX_PATH_BYTES, MAX_SEGMENTS, RESERVED_SEGMENTS, SecretPath,
    substitute_captures,
};

mod reference;

use reference::{RefSeg, ref_match, ref_segment};

/// A small alphabet so that random patterns and paths actually collide.
fn small_word() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "db", "db-main", "db-", "x", "ab", "ba", "aba", "bab"])
        .prop_map(str::to_owned)
}

fn ref_segment_strategy() -> impl Strategy<Value = RefSeg> {
    prop_oneof![
        3 => small_word().prop_map(RefSeg::Seg),
        2 => Just(RefSeg::Seg("*".to_owned())),
        2 => Just(RefSeg::Seg("db-*".to_owned())),
        1 => Just(RefSeg::Seg("*b".to_owned())),
        1 => Just(RefSeg::Seg("a*b*".to_owned())),
        1 => Just(RefSeg::Seg("*a*b*".to_owned())),
        3 => Just(RefSeg::Any),
    ]
}

fn pattern_strategy() -> impl Strategy<Value = Vec<RefSeg>> {
    prop::collection::vec(ref_segment_strategy(), 1..6)
}

fn render(pattern: &[RefSeg]) -> String {
    pattern
        .iter()
        .map(|s| match s {
            RefSeg::Any => "**",
            RefSeg::Seg(s) => s.as_str(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn small_path() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(small_word(), 1..7)
}

/// Segments drawn from the full legal alphabet, avoiding only the cases the
/// rules reject (`.`, `..`, a reserved last word).
fn valid_segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,20}".prop_filter("dot segments are invalid", |s| s != "." && s != "..")
}

fn valid_path() -> impl Strategy<Value = String> {
    prop::collection::vec(valid_segment(), 1..=12).prop_map(|segs| segs.join("/")).prop_filter(
        "reserved last segment",
        |p| {
            let last = p.rsplit('/').next().unwrap_or(p);
            !RESERVED_SEGMENTS.contains(&last)
        },
    )
}

proptest! {
    #[test]
    fn valid_paths_round_trip(s in valid_path()) {
        let path = SecretPath::parse(&s).unwrap();
        prop_assert_eq!(path.as_str(), s.as_str());
        prop_assert_eq!(path.to_string(), s.clone());
        prop_assert_eq!(path.segments().collect::<Vec<_>>().join("/"), s.clone());
        let json = serde_json::to_string(&path).unwrap();
        prop_assert_eq!(serde_json::from_str::<SecretPath>(&json).unwrap(), path.clone());
        prop_assert_eq!(s.parse::<SecretPath>().unwrap(), path);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_strings(s in any::<String>()) {
        let path = SecretPath::parse(&s);
        let glob = GlobPattern::parse(&s);
        // Whatever is accepted must obey the documented limits.
        if path.is_ok() {
            prop_assert!(s.len() <= MAX_PATH_BYTES);
            prop_assert!(s.split('/').count() <= MAX_SEGMENTS);
            prop_assert!(glob.is_ok(), "every path is also a literal pattern");
        }
        let _ = DurationSpec::parse(&s);
        let _ = substitute_captures(&s, &[]);
        if let Ok(glob) = GlobPattern::parse("a/**/b*") {
            let _ = glob.matches_str(&s);
        }
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = SecretPath::parse(&s);
        let _ = GlobPattern::parse(&s);
    }

    #[test]
    fn near_miss_strings_never_panic(s in "[a-z/.*%\\\\ é-]{0,40}") {
        if let Ok(path) = SecretPath::parse(&s) {
            prop_assert!(!path.segments().any(|seg| seg.is_empty() || seg == "." || seg == ".."));
        }
        if let Ok(glob) = GlobPattern::parse(&s) {
            prop_assert_eq!(glob.as_str(), s.as_str());
        }
    }

    #[test]
    fn matcher_agrees_with_reference(pattern in pattern_strategy(), path in small_path()) {
        let text = render(&pattern);
        let glob = GlobPattern::parse(&text).unwrap();
        let segments: Vec<&str> = path.iter().map(String::as_str).collect();
        let joined = path.join("/");
        let secret_path = SecretPath::parse(&joined).unwrap();
        let expected = ref_match(&pattern, &segments);
        prop_assert_eq!(glob.matches(&secret_path), expected, "{} vs {}", text, joined);
        prop_assert_eq!(glob.matches_str(&joined), expected);
        prop_assert_eq!(glob.captures(&secret_path).is_some(), expected);
    }

    /// `may_match_below` may say yes too often, never too seldom: a pattern that matches a path
    /// below a prefix is always reported as one that may.
    #[test]
    fn may_match_below_never_misses_a_match(pattern in pattern_strategy(), path in small_path(), cut in 1usize..6) {
        let glob = GlobPattern::parse(&render(&pattern)).unwrap();
        let path = SecretPath::parse(&path.join("/")).unwrap();
        let segments: Vec<&str> = path.as_str().split('/').collect();
        prop_assume!(cut < segments.len());
        let prefix = SecretPath::parse(&segments[..cut].join("/")).unwrap();
        if glob.matches(&path) {
            prop_assert!(glob.may_match_below(&prefix), "{} matches {} below {}", glob.as_str(), path, prefix);
        }
    }

    /// `covers_below` may say no too often, never yes wrongly: a pattern said to cover a prefix
    /// matches every path below it.
    #[test]
    fn covers_below_never_claims_a_path_it_does_not_match(pattern in pattern_strategy(), path in small_path(), cut in 1usize..6) {
        let glob = GlobPattern::parse(&render(&pattern)).unwrap();
        let path = SecretPath::parse(&path.join("/")).unwrap();
        let segments: Vec<&str> = path.as_str().split('/').collect();
        prop_assume!(cut < segments.len());
        let prefix = SecretPath::parse(&segments[..cut].join("/")).unwrap();
        if glob.covers_below(&prefix) {
            prop_assert!(glob.matches(&path), "{} said to cover {} but misses {}", glob.as_str(), prefix, path);
        }
    }

    #[test]
    fn single_segment_stars_agree_with_reference(
        pattern in "[ab*-]{1,8}".prop_filter("'**' inside a segment is invalid", |p| !p.contains("**")),
        text in "[ab-]{1,10}",
    ) {
        let glob = GlobPattern::parse(&pattern).unwrap();
        let expected = ref_segment(pattern.as_bytes(), text.as_bytes());
        prop_assert_eq!(glob.matches_str(&text), expected, "{} vs {}", pattern, text);
        let path = SecretPath::parse(&text).unwrap();
        if let Some(captures) = glob.captures(&path) {
            prop_assert_eq!(substitute_captures(&pattern, &captures).unwrap(), text);
        }
    }

    #[test]
    fn captures_substituted_into_the_pattern_reproduce_the_path(
        pattern in pattern_strategy(),
        path in small_path(),
    ) {
        let text = render(&pattern);
        let glob = GlobPattern::parse(&text).unwrap();
        let secret_path = SecretPath::parse(&path.join("/")).unwrap();
        if let Some(captures) = glob.captures(&secret_path) {
            prop_assert_eq!(captures.len(), glob.capture_count());
            let rebuilt = substitute_captures(&text, &captures).unwrap();
            prop_assert_eq!(rebuilt, secret_path.as_str());
        }
    }

    #[test]
    fn every_path_matches_itself_and_double_star(s in valid_path()) {
        let path = SecretPath::parse(&s).unwrap();
        let literal = GlobPattern::parse(&s).unwrap();
        prop_assert!(literal.is_literal());
        prop_assert!(literal.matches(&path));
        prop_assert_eq!(literal.captures(&path), Some(Vec::new()));
        prop_assert!(GlobPattern::parse("**").unwrap().matches(&path));
    }

    #[test]
    fn durations_round_trip_through_display(value in 0u64..=36_525, unit in prop::sample::select(vec!['s', 'm', 'h', 'd'])) {
        let text = format!("{value}{unit}");
        let d = DurationSpec::parse(&text).unwrap();
        prop_assert_eq!(d.to_string(), text);
        prop_assert_eq!(DurationSpec::parse(&d.to_string()).unwrap(), d);
        prop_assert_eq!(DurationSpec::from_secs(d.as_secs()).as_secs(), d.as_secs());
    }
}
