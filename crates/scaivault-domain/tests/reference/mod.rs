//! Deliberately naive reference implementations shared by the property tests.

#![allow(dead_code, unreachable_pub)]

/// A pattern segment as the reference matcher sees it.
#[derive(Clone, Debug)]
pub enum RefSeg {
    /// `**`
    Any,
    /// A segment possibly containing single `*`s.
    Seg(String),
}

/// Plain recursive backtracking over segment lists: obviously correct,
/// exponential in the worst case, fine for the small inputs generated here.
pub fn ref_match(pattern: &[RefSeg], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((RefSeg::Any, [])) => !path.is_empty(),
        Some((RefSeg::Any, rest)) => (0..=path.len()).any(|k| ref_match(rest, &path[k..])),
        Some((RefSeg::Seg(seg), rest)) => match path.split_first() {
            Some((first, others)) => ref_segment(seg.as_bytes(), first.as_bytes()) && ref_match(rest, others),
            None => false,
        },
    }
}

/// Character-level backtracking for `*` inside one segment.
pub fn ref_segment(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|k| ref_segment(rest, &text[k..])),
        Some((c, rest)) => text.first() == Some(c) && ref_segment(rest, &text[1..]),
    }
}

/// Parses a pattern string into reference segments.
pub fn ref_pattern(pattern: &str) -> Vec<RefSeg> {
    pattern.split('/').map(|s| if s == "**" { RefSeg::Any } else { RefSeg::Seg(s.to_owned()) }).collect()
}
