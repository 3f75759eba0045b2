//! Times on the command line: RFC 3339, `now`, `1 hour ago`, `30 minutes ago`, or a bare duration
//! (`2h`, meaning that long ago).

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};

fn unit_seconds(unit: &str) -> Option<i64> {
    let unit = unit.trim_end_matches('s');
    Some(match unit {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hr" | "hour" => 3600,
        "d" | "day" => 86_400,
        "w" | "week" => 604_800,
        _ => return None,
    })
}

/// A point in time, as RFC 3339 for the API.
pub(crate) fn parse_time(text: &str, now: DateTime<Utc>) -> anyhow::Result<String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now.to_rfc3339());
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc).to_rfc3339());
    }
    let body = t.strip_suffix("ago").map(str::trim).unwrap_or(t);
    let (number, unit) = match body.split_once(char::is_whitespace) {
        Some((n, u)) => (n.trim(), u.trim()),
        None => {
            let digits = body.bytes().take_while(u8::is_ascii_digit).count();
            body.split_at(digits)
        }
    };
    let n: u32 =
        number.parse().with_context(|| format!("{text:?} is not a time (RFC 3339 or \"1 hour ago\")"))?;
    let Some(secs) = unit_seconds(unit) else {
        bail!("{text:?}: unknown unit {unit:?} (seconds, minutes, hours, days, weeks)");
    };
    let ago = i64::from(n).checked_mul(secs).and_then(TimeDelta::try_seconds).context("too far back")?;
    Ok((now - ago).to_rfc3339())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn relative_and_absolute_times() {
        let now = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).single().expect("time");
        let at = |s: &str| parse_time(s, now).expect(s);
        assert_eq!(at("1 hour ago"), "2026-05-01T11:00:00+00:00");
        assert_eq!(at("30 minutes ago"), "2026-05-01T11:30:00+00:00");
        assert_eq!(at("2d"), "2026-04-29T12:00:00+00:00");
        assert_eq!(at("now"), "2026-05-01T12:00:00+00:00");
        assert_eq!(at("2026-04-01T00:00:00Z"), "2026-04-01T00:00:00+00:00");
        for bad in ["yesterday", "1 fortnight ago", "", "-1 hour ago"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }
}
