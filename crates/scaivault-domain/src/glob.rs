use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::path::{MAX_PATH_BYTES, MAX_SEGMENT_CHARS, MAX_SEGMENTS, SecretPath};
use crate::syntax::{self, Issue};
use crate::text::describe_char;

/// A path pattern used by policies, subscriptions and federation mappings.
///
/// Segments follow the path character rules plus `*`, which matches any run
/// of characters (possibly none) inside one segment. A segment that is exactly
/// `**` matches zero or more whole segments, except at the very end of the
/// pattern, where it needs at least one so that `a/**` means "below `a`" and
/// never `a` itself. Reserved words are allowed, so `a/versions` is a valid
/// pattern even though it is not a valid secret path.
///
/// Matching runs in polynomial time whatever the pattern: patterns come from
/// API callers, and naive backtracking over several `**` is exponential.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GlobPattern {
    source: String,
    segments: Vec<PatternSegment>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PatternSegment {
    /// `**`
    AnySegments,
    /// The literal text between the single stars of one segment: `db-*` is
    /// `["db-", ""]`, `*` is `["", ""]`, and a star-free segment has exactly
    /// one piece. Neighbouring pieces are never both empty except in `*`,
    /// since `**` inside a segment is rejected.
    Segment(Vec<String>),
}

impl GlobPattern {
    pub fn parse(s: &str) -> Result<GlobPattern, GlobError> {
        syntax::check(s, true).map_err(GlobError::from)?;
        let mut segments = Vec::new();
        for (index, segment) in s.split('/').enumerate() {
            if segment == "**" {
                segments.push(PatternSegment::AnySegments);
            } else if segment.contains("**") {
                return Err(GlobError::MisplacedDoubleStar { index });
            } else {
                segments.push(PatternSegment::Segment(segment.split('*').map(str::to_owned).collect()));
            }
        }
        Ok(GlobPattern { source: s.to_owned(), segments })
    }

    /// Whether the pattern could match some path strictly below `prefix`, segment by segment:
    /// each of the prefix's segments must match the pattern's segment in its place, and the
    /// pattern must go on past them; a `**` on the way may match anything from there, so it
    /// answers yes. Never no for a pattern that matches a path below the prefix.
    pub fn may_match_below(&self, prefix: &SecretPath) -> bool {
        let mut pattern = self.segments.iter();
        for segment in prefix.segments() {
            match pattern.next() {
                None => return false,
                Some(PatternSegment::AnySegments) => return true,
                Some(PatternSegment::Segment(pieces)) => {
                    if !segment_match(pieces, segment, None) {
                        return false;
                    }
                }
            }
        }
        pattern.next().is_some()
    }

    /// Whether the pattern matches every path below `prefix` (and so the whole subtree there): it
    /// is `**`, or a pattern ending in `/**` whose start matches `prefix` or one of its ancestors.
    pub fn covers_below(&self, prefix: &SecretPath) -> bool {
        let Some((PatternSegment::AnySegments, start)) = self.segments.split_last() else { return false };
        let segments: Vec<&str> = prefix.segments().collect();
        start.is_empty() || (1..=segments.len()).any(|k| Table::build(start, &segments[..k]).get(0, 0))
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, path: &SecretPath) -> bool {
        self.matches_str(path.as_str())
    }

    /// Matches a raw string split on `/`, without validating it first, so
    /// callers can test strings that are not secret paths (a reserved last
    /// segment, say). On a valid path it agrees with [`GlobPattern::matches`].
    pub fn matches_str(&self, path: &str) -> bool {
        if self.is_literal() {
            return self.source == path;
        }
        let segments: Vec<&str> = path.split('/').collect();
        Table::build(&self.segments, &segments).get(0, 0)
    }

    /// The text each wildcard matched, left to right; `None` if the path does
    /// not match. A `**` capture is its segments joined by `/`, possibly empty.
    ///
    /// Where several splits would match, every wildcard takes as little as it
    /// can, left to right, so the result is deterministic. Either way,
    /// [`substitute_captures`] into this pattern's own text gives the path back.
    pub fn captures(&self, path: &SecretPath) -> Option<Vec<String>> {
        let path: Vec<&str> = path.segments().collect();
        let table = Table::build(&self.segments, &path);
        if !table.get(0, 0) {
            return None;
        }
        let last = self.segments.len() - 1;
        let mut captures = Vec::with_capacity(self.capture_count());
        let mut j = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                PatternSegment::AnySegments => {
                    let end = if i == last {
                        path.len()
                    } else {
                        (j..=path.len()).find(|&k| table.get(i + 1, k))?
                    };
                    captures.push(path[j..end].join("/"));
                    j = end;
                }
                PatternSegment::Segment(pieces) => {
                    segment_match(pieces, path[j], Some(&mut captures));
                    j += 1;
                }
            }
        }
        Some(captures)
    }

    /// True when the pattern has no wildcard and so matches exactly one path.
    pub fn is_literal(&self) -> bool {
        !self.source.contains('*')
    }

    /// How many captures a match yields, which is also how many wildcards a
    /// substitution template for this pattern must have.
    pub fn capture_count(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                PatternSegment::AnySegments => 1,
                PatternSegment::Segment(pieces) => pieces.len() - 1,
            })
            .sum()
    }
}

/// `reach[i][j]`: pattern segments `i..` match path segments `j..`. Filled
/// from the end so each cell is computed once: O(pattern x path) segment
/// comparisons however many `**` there are.
struct Table {
    width: usize,
    reach: Vec<bool>,
}

impl Table {
    fn build(pattern: &[PatternSegment], path: &[&str]) -> Table {
        let (p, n) = (pattern.len(), path.len());
        let width = n + 1;
        let mut table = Table { width, reach: vec![false; (p + 1) * width] };
        table.reach[p * width + n] = true;
        for i in (0..p).rev() {
            for j in (0..=n).rev() {
                let ok = match &pattern[i] {
                    PatternSegment::AnySegments if i + 1 == p => j < n,
                    PatternSegment::AnySegments => table.get(i + 1, j) || (j < n && table.get(i, j + 1)),
                    PatternSegment::Segment(pieces) => {
                        j < n && table.get(i + 1, j + 1) && segment_match(pieces, path[j], None)
                    }
                };
                table.reach[i * width + j] = ok;
            }
        }
        table
    }

    fn get(&self, i: usize, j: usize) -> bool {
        self.reach[i * self.width + j]
    }
}

/// Matches one segment against star-separated literal pieces, pushing what
/// each star matched when asked to.
///
/// Taking each middle piece at its leftmost occurrence is enough: with only
/// `*` wildcards, if any placement works the leftmost one does, since it
/// leaves the most text for the pieces after it.
fn segment_match(pieces: &[String], text: &str, captures: Option<&mut Vec<String>>) -> bool {
    let [first, middle @ .., last] = pieces else {
        return pieces.first().is_some_and(|p| p == text);
    };
    if text.len() < first.len() + last.len()
        || !text.starts_with(first.as_str())
        || !text.ends_with(last.as_str())
    {
        return false;
    }
    // Pieces are ASCII, so these offsets fall on character boundaries even
    // when `matches_str` hands us arbitrary UTF-8.
    let end = text.len() - last.len();
    let mut pos = first.len();
    let mut spans = Vec::with_capacity(pieces.len() - 1);
    for piece in middle {
        let Some(found) = text[pos..end].find(piece.as_str()) else {
            return false;
        };
        spans.push((pos, pos + found));
        pos += found + piece.len();
    }
    spans.push((pos, end));
    if let Some(captures) = captures {
        captures.extend(spans.into_iter().map(|(a, b)| text[a..b].to_owned()));
    }
    true
}

/// Fills a target template with captures from [`GlobPattern::captures`]: each
/// `**` segment and each `*` inside a segment takes the next capture in order.
///
/// A `**` segment whose capture is empty disappears together with one `/`, so
/// `a/**/c` filled with `[""]` is `a/c` rather than `a//c`. Characters other
/// than wildcards are copied as they are and the result is not validated:
/// targets may name paths in external systems with other rules, and callers
/// producing a ScaiVault path parse it with [`SecretPath::parse`].
pub fn substitute_captures(template: &str, captures: &[String]) -> Result<String, GlobError> {
    let mut expected = 0;
    for (index, segment) in template.split('/').enumerate() {
        if segment == "**" {
            expected += 1;
        } else if segment.contains("**") {
            return Err(GlobError::MisplacedDoubleStar { index });
        } else {
            expected += segment.bytes().filter(|&b| b == b'*').count();
        }
    }
    if expected != captures.len() {
        return Err(GlobError::CaptureCountMismatch { expected, got: captures.len() });
    }
    let mut next = captures.iter();
    let mut out = String::with_capacity(template.len() + captures.iter().map(String::len).sum::<usize>());
    let mut first = true;
    for segment in template.split('/') {
        if segment == "**" {
            let capture = next.next().map_or("", String::as_str);
            if capture.is_empty() {
                continue;
            }
            if !first {
                out.push('/');
            }
            out.push_str(capture);
        } else {
            if !first {
                out.push('/');
            }
            for (i, piece) in segment.split('*').enumerate() {
                if i > 0 {
                    out.push_str(next.next().map_or("", String::as_str));
                }
                out.push_str(piece);
            }
        }
        first = false;
    }
    Ok(out)
}

impl fmt::Display for GlobPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for GlobPattern {
    type Err = GlobError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GlobPattern::parse(s)
    }
}

impl Serialize for GlobPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for GlobPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        GlobPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a glob pattern or substitution template is invalid. Like `PathError`,
/// messages point at positions (zero-based) instead of repeating the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("pattern is empty")]
    Empty,
    #[error("pattern is {len} bytes long, the maximum is {MAX_PATH_BYTES}")]
    TooLong { len: usize },
    #[error("pattern has {count} segments, the maximum is {MAX_SEGMENTS}")]
    TooManySegments { count: usize },
    #[error("pattern segment {index} is empty (leading, trailing or doubled '/')")]
    EmptySegment { index: usize },
    #[error("pattern segment {index} is '.' or '..', which are not allowed")]
    DotSegment { index: usize },
    /// `character` is `Some` only for printable ASCII.
    #[error(
        "invalid character {} at byte {position}, allowed are A-Z a-z 0-9 . _ - * and '/' between segments",
        describe_char(*.character)
    )]
    InvalidCharacter { position: usize, character: Option<char> },
    #[error("pattern segment {index} is {len} characters long, the maximum is {MAX_SEGMENT_CHARS}")]
    SegmentTooLong { index: usize, len: usize },
    #[error("'**' must be a whole segment, but segment {index} has it alongside other characters")]
    MisplacedDoubleStar { index: usize },
    #[error("template has {expected} wildcards but {got} captures were given")]
    CaptureCountMismatch { expected: usize, got: usize },
}

impl From<Issue> for GlobError {
    fn from(issue: Issue) -> Self {
        match issue {
            Issue::Empty => GlobError::Empty,
            Issue::TooLong { len } => GlobError::TooLong { len },
            Issue::TooManySegments { count } => GlobError::TooManySegments { count },
            Issue::EmptySegment { index } => GlobError::EmptySegment { index },
            Issue::DotSegment { index } => GlobError::DotSegment { index },
            Issue::InvalidCharacter { position, character } => {
                GlobError::InvalidCharacter { position, character }
            }
            Issue::SegmentTooLong { index, len } => GlobError::SegmentTooLong { index, len },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(s: &str) -> GlobPattern {
        GlobPattern::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn path(s: &str) -> SecretPath {
        SecretPath::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    /// One row of the spec's glob table.
    fn check(pattern: &str, path_str: &str, expected: bool) {
        let p = glob(pattern);
        assert_eq!(p.matches(&path(path_str)), expected, "{pattern:?} vs {path_str:?}");
        assert_eq!(p.matches_str(path_str), expected, "{pattern:?} vs {path_str:?} (str)");
        assert_eq!(p.captures(&path(path_str)).is_some(), expected);
    }

    #[test]
    fn spec_glob_table() {
        let table: &[(&str, &[&str], &[&str])] = &[
            ("a/b", &["a/b"], &["a/b/c", "a", "a/bc", "A/b"]),
            ("a/*", &["a/b", "a/c"], &["a", "a/b/c", "b/a"]),
            ("a/*/c", &["a/b/c"], &["a/c", "a/b/x/c"]),
            ("a/**", &["a/b", "a/b/c/d"], &["a", "b/a"]),
            ("a/**/c", &["a/c", "a/b/c", "a/b/x/c"], &["a/b/c/d", "a"]),
            ("**", &["a", "a/b", "x/y/z/w"], &[]),
            ("db-*", &["db-main", "db-"], &["db", "x/db-main", "db-main/x"]),
        ];
        for (pattern, yes, no) in table {
            for p in *yes {
                check(pattern, p, true);
            }
            for p in *no {
                check(pattern, p, false);
            }
        }
    }

    #[test]
    fn below_a_prefix() {
        let below = |pattern: &str, prefix: &str| glob(pattern).may_match_below(&path(prefix));
        for (pattern, prefix) in
            [("a/**", "a"), ("**", "x/y"), ("a/*/c", "a/b"), ("*-prod/x", "app-prod"), ("a/b/c", "a")]
        {
            assert!(below(pattern, prefix), "{pattern} below {prefix}");
        }
        // Segment by segment: a literal sibling, the prefix itself, a parent, another first segment.
        for (pattern, prefix) in [
            ("team", "team-b/vault"),
            ("app", "app/ext"),
            ("app/ext", "app/ext"),
            ("*-prod/**", "app/ext"),
            ("a/b", "a/c"),
        ] {
            assert!(!below(pattern, prefix), "{pattern} below {prefix}");
        }
        let covers = |pattern: &str, prefix: &str| glob(pattern).covers_below(&path(prefix));
        for (pattern, prefix) in
            [("**", "a"), ("a/**", "a/b"), ("a/**", "a"), ("a/*/**", "a/b/c"), ("*/**", "x")]
        {
            assert!(covers(pattern, prefix), "{pattern} covers {prefix}");
        }
        for (pattern, prefix) in [("a/*", "a"), ("a/b/**", "a"), ("b/**", "a/b"), ("a/x*/**", "a/y")] {
            assert!(!covers(pattern, prefix), "{pattern} covers {prefix}");
        }
    }

    #[test]
    fn more_matching_cases() {
        let table: &[(&str, &str, bool)] = &[
            ("**/c", "c", true),
            ("**/c", "a/b/c", true),
            ("**/c", "a/b/c/d", false),
            ("a/**/**", "a/b", true),
            ("a/**/**", "a", false),
            ("**/x/**", "x/y", true),
            ("**/x/**", "a/x", false),
            ("*", "anything", true),
            ("*", "a/b", false),
            ("*-*-*", "a-b-c", true),
            ("*-*-*", "a--", true),
            ("*-*-*", "a-b", false),
            ("*ab*ab", "abab", true),
            ("*ab*ab", "xabyab", true),
            ("*ab*ab", "ab", false),
            ("*a*b*", "aba", true),
            ("*a*b*", "bba", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            (".*", ".env", true),
            ("a/versions", "a/versions", true),
        ];
        for (pattern, p, expected) in table {
            assert_eq!(glob(pattern).matches_str(p), *expected, "{pattern} vs {p}");
        }
    }

    fn check_captures(pattern: &str, path_str: &str, expected: Option<&[&str]>) {
        let got = glob(pattern).captures(&path(path_str));
        let expected = expected.map(|e| e.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(got, expected, "{pattern:?} vs {path_str:?}");
    }

    #[test]
    fn captures_are_in_left_to_right_order() {
        check_captures("a/b", "a/b", Some(&[]));
        check_captures("a/*", "a/b", Some(&["b"]));
        check_captures("a/**", "a/b/c", Some(&["b/c"]));
        check_captures("a/**/c", "a/c", Some(&[""]));
        check_captures("a/**/c", "a/b/x/c", Some(&["b/x"]));
        check_captures("a/*/x/**", "a/q/x/r/s", Some(&["q", "r/s"]));
        check_captures("db-*", "db-", Some(&[""]));
        check_captures("*-*", "a-b-c", Some(&["a", "b-c"]));
        check_captures("**/x/**", "a/x/b/x/c", Some(&["a", "b/x/c"]));
        check_captures("a/*", "b/c", None);
    }

    fn check_substitute(template: &str, captures: &[&str], expected: Result<&str, GlobError>) {
        let captures: Vec<String> = captures.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            substitute_captures(template, &captures),
            expected.map(str::to_owned),
            "{template:?} with {captures:?}"
        );
    }

    #[test]
    fn substitution_fills_wildcards_in_order() {
        check_substitute("secret/data/**", &["app/db"], Ok("secret/data/app/db"));
        check_substitute("kv/*/**", &["q", "r/s"], Ok("kv/q/r/s"));
        check_substitute("kv/plain", &[], Ok("kv/plain"));
        check_substitute("a/**/c", &[""], Ok("a/c"));
        check_substitute("**/c", &[""], Ok("c"));
        check_substitute("a/**", &[""], Ok("a"));
        check_substitute("x-*-y", &["1"], Ok("x-1-y"));
        check_substitute("*/*", &["1", "2"], Ok("1/2"));
        check_substitute("kv/*/**", &["q"], Err(GlobError::CaptureCountMismatch { expected: 2, got: 1 }));
        check_substitute(
            "kv/plain",
            &["extra"],
            Err(GlobError::CaptureCountMismatch { expected: 0, got: 1 }),
        );
        check_substitute("kv/a**", &["x"], Err(GlobError::MisplacedDoubleStar { index: 1 }));
    }

    #[test]
    fn federation_mapping_end_to_end() {
        let source = glob("external/hashicorp/**");
        let caps = source.captures(&path("external/hashicorp/team/db")).unwrap();
        assert_eq!(substitute_captures("secret/data/**", &caps).unwrap(), "secret/data/team/db");
    }

    fn check_parse(input: &str, expected: Result<(), GlobError>) {
        let got = GlobPattern::parse(input);
        match expected {
            Ok(()) => {
                let p = got.unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
                assert_eq!(p.as_str(), input);
                assert_eq!(p.to_string(), input);
            }
            Err(want) => assert_eq!(got, Err(want), "input {input:?}"),
        }
    }

    #[test]
    fn pattern_syntax() {
        check_parse("a/b", Ok(()));
        check_parse("**", Ok(()));
        check_parse("a/**/b/**", Ok(()));
        check_parse("*", Ok(()));
        check_parse("db-*", Ok(()));
        check_parse("*x*y*", Ok(()));
        check_parse("a/versions", Ok(()));
        check_parse("versions", Ok(()));
        check_parse("", Err(GlobError::Empty));
        check_parse("a//b", Err(GlobError::EmptySegment { index: 1 }));
        check_parse("/a", Err(GlobError::EmptySegment { index: 0 }));
        check_parse("a/", Err(GlobError::EmptySegment { index: 1 }));
        check_parse("a/../b", Err(GlobError::DotSegment { index: 1 }));
        check_parse("a/**b", Err(GlobError::MisplacedDoubleStar { index: 1 }));
        check_parse("a**", Err(GlobError::MisplacedDoubleStar { index: 0 }));
        check_parse("***", Err(GlobError::MisplacedDoubleStar { index: 0 }));
        check_parse("a/?", Err(GlobError::InvalidCharacter { position: 2, character: Some('?') }));
        check_parse("a/[bc]", Err(GlobError::InvalidCharacter { position: 2, character: Some('[') }));
        check_parse(&"a/".repeat(300), Err(GlobError::TooLong { len: 600 }));
        check_parse(&vec!["*"; 33].join("/"), Err(GlobError::TooManySegments { count: 33 }));
        check_parse(&"*".repeat(129), Err(GlobError::SegmentTooLong { index: 0, len: 129 }));
        check_parse(&"a*".repeat(65), Err(GlobError::SegmentTooLong { index: 0, len: 130 }));
    }

    #[test]
    fn literal_detection_and_capture_count() {
        assert!(glob("a/b").is_literal());
        assert!(!glob("a/*").is_literal());
        assert!(!glob("**").is_literal());
        assert_eq!(glob("a/b").capture_count(), 0);
        assert_eq!(glob("a/*/x/**").capture_count(), 2);
        assert_eq!(glob("*-*/**").capture_count(), 3);
    }

    #[test]
    fn raw_string_matching_never_panics_on_odd_input() {
        let p = glob("a/*b*/**");
        assert!(!p.matches_str("a/é/b"));
        assert!(p.matches_str("a/ébé/c"));
        assert!(glob("*").matches_str(""));
        assert!(glob("a/*").matches_str("a/"));
        assert!(!glob("a/b").matches_str("a/b/"));
        assert!(!glob("x*y").matches_str("xé"));
        assert!(glob("x*").matches_str("xé"));
    }

    #[test]
    fn many_double_stars_do_not_explode() {
        let pattern = vec!["**"; 31].join("/") + "/nomatch";
        let p = glob(&pattern);
        let long = path(&vec!["s"; 32].join("/"));
        assert!(!p.matches(&long));
        assert!(p.captures(&long).is_none());
    }

    #[test]
    fn serde_round_trip() {
        let p = glob("a/**");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"a/**\"");
        assert_eq!(serde_json::from_str::<GlobPattern>("\"a/**\"").unwrap(), p);
        assert!(serde_json::from_str::<GlobPattern>("\"a/**x\"").is_err());
        assert_eq!("a/*".parse::<GlobPattern>().unwrap(), glob("a/*"));
    }
}
