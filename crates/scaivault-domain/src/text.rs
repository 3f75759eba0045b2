/// Longest user-supplied fragment an error message may repeat. Errors end up
/// in logs and HTTP responses, so an attacker-sized input must not be copied
/// into them whole.
pub(crate) const MAX_ECHO_CHARS: usize = 64;

/// Shortens `s` to at most [`MAX_ECHO_CHARS`] characters for an error message.
pub(crate) fn truncate_for_message(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}...", &s[..cut]),
    }
}

/// How an error message refers to an offending character: printable ASCII is
/// shown, anything else is only described, so control bytes and look-alike
/// Unicode never reach a terminal or log viewer raw.
pub(crate) fn describe_char(character: Option<char>) -> String {
    match character {
        Some(c) => format!("{c:?}"),
        None => "(non-printable or non-ascii)".to_owned(),
    }
}

/// A byte as `describe_char` wants it: `Some` only for printable ASCII.
pub(crate) fn printable_ascii(byte: u8) -> Option<char> {
    (byte.is_ascii_graphic() || byte == b' ').then_some(char::from(byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_short_input_and_cuts_long_input_on_a_char_boundary() {
        assert_eq!(truncate_for_message("abc"), "abc");
        let long = "é".repeat(100);
        let cut = truncate_for_message(&long);
        assert_eq!(cut.chars().count(), MAX_ECHO_CHARS + 3);
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn only_printable_ascii_is_echoed() {
        assert_eq!(printable_ascii(b'%'), Some('%'));
        assert_eq!(printable_ascii(b' '), Some(' '));
        assert_eq!(printable_ascii(b'\t'), None);
        assert_eq!(printable_ascii(0), None);
        assert_eq!(printable_ascii(0xC3), None);
    }
}
