//! `.env` files: reading them for `import`, writing them for `export`.

use anyhow::bail;

/// `KEY=VALUE` lines in order; blank lines and `#` comments skipped, `export ` tolerated, single
/// or double quotes removed (`\n`, `\"` and `\\` understood inside double quotes).
pub(crate) fn parse(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected KEY=VALUE", n + 1);
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("line {}: {key:?} is not a variable name", n + 1);
        }
        out.push((key.to_owned(), unquote(value.trim())));
    }
    Ok(out)
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_owned();
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let mut out = String::new();
        let mut chars = v[1..v.len() - 1].chars();
        while let Some(c) = chars.next() {
            match (c, chars.clone().next()) {
                ('\\', Some('n')) => {
                    out.push('\n');
                    chars.next();
                }
                ('\\', Some(e @ ('"' | '\\'))) => {
                    out.push(e);
                    chars.next();
                }
                _ => out.push(c),
            }
        }
        return out;
    }
    // An unquoted value ends at an inline comment.
    v.split(" #").next().unwrap_or(v).trim_end().to_owned()
}

/// A variable name for a field: upper case, anything but letters, digits and `_` becomes `_`.
pub(crate) fn var_name(field: &str) -> String {
    field.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// One `KEY="value"` line, quoted so any value reads back the same.
pub(crate) fn line(key: &str, value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!("{key}=\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_people_write() {
        let text = "# comment\nDATABASE_URL=postgresql://u:p@h/db\n\nexport A='x y'\nB=\"line\\nnext \\\"q\\\"\"\nC=plain # note\n";
        let got = parse(text).expect("parse");
        assert_eq!(
            got,
            [
                ("DATABASE_URL".into(), "postgresql://u:p@h/db".into()),
                ("A".into(), "x y".into()),
                ("B".into(), "line\nnext \"q\"".into()),
                ("C".into(), "plain".into()),
            ]
        );
        assert!(parse("no equals").is_err());
        assert!(parse("BAD KEY=1").is_err());
    }

    #[test]
    fn written_lines_read_back() {
        for v in ["simple", "with \"quotes\" and \\ and\nnewline", ""] {
            let l = line("K", v);
            assert_eq!(parse(&l).expect("parse"), [("K".to_owned(), v.to_owned())]);
        }
        assert_eq!(var_name("client-secret.v2"), "CLIENT_SECRET_V2");
    }
}
