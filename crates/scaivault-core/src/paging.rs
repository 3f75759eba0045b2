use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use scaivault_crypto::CursorKey;

use crate::CoreError;

pub(crate) const DEFAULT_LIMIT: u32 = 100;
pub(crate) const MAX_LIMIT: u32 = 1000;

pub(crate) fn limit(requested: Option<u32>) -> Result<u32, CoreError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => {
            Err(CoreError::InvalidRequest(format!("limit must be between 1 and {MAX_LIMIT}, got {n}")))
        }
    }
}

/// Cursors are opaque to clients: the list they belong to and the last key of the previous page,
/// base64url-encoded. A cursor of one list given to another is refused rather than followed.
pub(crate) fn encode_cursor(list: &str, last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{list}:{last_key}"))
}

/// The cursor of a list filtered by the caller's access: its position may be a path the caller
/// may not see, so it is sealed (encrypted and authenticated) rather than merely encoded, and only
/// a cursor this server sealed for the same list opens.
pub(crate) fn seal_cursor(key: &CursorKey, list: &str, position: &str) -> Result<String, CoreError> {
    let sealed = key.seal(list, position.as_bytes()).map_err(|e| CoreError::Internal(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(sealed))
}

/// The position a [`seal_cursor`] cursor holds.
pub(crate) fn open_cursor(
    key: &CursorKey,
    list: &str,
    cursor: Option<&str>,
) -> Result<Option<String>, CoreError> {
    cursor
        .filter(|c| !c.is_empty())
        .map(|c| {
            URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|sealed| key.open(list, &sealed))
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| CoreError::InvalidRequest("cursor is not valid for this list".into()))
        })
        .transpose()
}

pub(crate) fn decode_cursor(list: &str, cursor: Option<&str>) -> Result<Option<String>, CoreError> {
    cursor
        .filter(|c| !c.is_empty())
        .map(|c| {
            let text = URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                // Keys are paths and ids: a control character (NUL among them) is no cursor of ours.
                .filter(|t| !t.chars().any(char::is_control))
                .ok_or_else(|| CoreError::InvalidRequest("cursor is not valid".into()))?;
            text.strip_prefix(list)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::to_owned)
                .ok_or_else(|| CoreError::InvalidRequest("cursor belongs to another list".into()))
        })
        .transpose()
}

/// A cursor whose key is a number (a version, a delivery's sequence).
pub(crate) fn decode_number_cursor(list: &str, cursor: Option<&str>) -> Result<Option<u64>, CoreError> {
    decode_cursor(list, cursor)?
        .map(|c| c.parse::<u64>().map_err(|_| CoreError::InvalidRequest("cursor is not valid".into())))
        .transpose()
}

/// The cursor after a page of `rows` read with `limit`: only a full page may have more after it.
pub(crate) fn next_cursor<T>(
    list: &str,
    rows: &[T],
    limit: u32,
    key: impl Fn(&T) -> String,
) -> Option<String> {
    if rows.len() as u32 != limit {
        return None;
    }
    rows.last().map(|last| encode_cursor(list, &key(last)))
}
