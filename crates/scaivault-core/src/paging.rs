use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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

/// Cursors are opaque to clients: the last key of the previous page, base64url-encoded.
pub(crate) fn encode_cursor(last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_key)
}

pub(crate) fn decode_cursor(cursor: Option<&str>) -> Result<Option<String>, CoreError> {
    cursor
        .filter(|c| !c.is_empty())
        .map(|c| {
            URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| CoreError::InvalidRequest("cursor is not valid".into()))
        })
        .transpose()
}
