//! The lexical rules shared by secret paths and glob patterns. Both error
//! enums are built from [`Issue`] so the two can never drift apart.

use crate::path::{MAX_PATH_BYTES, MAX_SEGMENT_CHARS, MAX_SEGMENTS};
use crate::text::printable_ascii;

/// A problem found by [`check`]; converted into `PathError` or `GlobError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Issue {
    Empty,
    TooLong { len: usize },
    TooManySegments { count: usize },
    EmptySegment { index: usize },
    DotSegment { index: usize },
    InvalidCharacter { position: usize, character: Option<char> },
    SegmentTooLong { index: usize, len: usize },
}

/// Whether `s` obeys the lexical rules of a path (`allow_star == false`) or of
/// a glob pattern (`allow_star == true`). Reserved words and the placement of
/// `**` are left to the callers, because only one of them cares about each.
///
/// The checks run cheapest-first and the length limit comes before any
/// per-byte work, so an oversized input costs O(1) to reject.
pub(crate) fn check(s: &str, allow_star: bool) -> Result<(), Issue> {
    if s.is_empty() {
        return Err(Issue::Empty);
    }
    if s.len() > MAX_PATH_BYTES {
        return Err(Issue::TooLong { len: s.len() });
    }
    let count = s.bytes().filter(|&b| b == b'/').count() + 1;
    if count > MAX_SEGMENTS {
        return Err(Issue::TooManySegments { count });
    }
    let mut offset = 0;
    for (index, segment) in s.split('/').enumerate() {
        check_segment(segment, index, offset, allow_star)?;
        offset += segment.len() + 1;
    }
    Ok(())
}

fn check_segment(segment: &str, index: usize, offset: usize, allow_star: bool) -> Result<(), Issue> {
    if segment.is_empty() {
        return Err(Issue::EmptySegment { index });
    }
    if let Some(i) = segment.bytes().position(|b| !(is_path_byte(b) || (allow_star && b == b'*'))) {
        let byte = segment.as_bytes()[i];
        return Err(Issue::InvalidCharacter { position: offset + i, character: printable_ascii(byte) });
    }
    // Every accepted byte is ASCII, so bytes and characters coincide here.
    if segment.len() > MAX_SEGMENT_CHARS {
        return Err(Issue::SegmentTooLong { index, len: segment.len() });
    }
    if segment == "." || segment == ".." {
        return Err(Issue::DotSegment { index });
    }
    Ok(())
}

/// The bytes a path segment may contain: `A-Z a-z 0-9 . _ -`.
pub(crate) fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}
