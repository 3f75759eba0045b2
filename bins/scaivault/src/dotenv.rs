//! `.env` files: reading them for `import`, writing them for `export`.
//!
//! Hand-written rather than `dotenvy`: that crate expands `$VAR` in values from the importing
//! process's environment, which would silently change a secret such as `pa$word`.

use anyhow::bail;

/// `KEY=VALUE` entries in order. Blank lines and `#` comments are skipped and `export ` is
/// tolerated. A value may be:
/// - single-quoted: literal, and may span lines;
/// - double-quoted: may span lines, and understands `\n`, `\"`, `\\`, `\$` and `` \` ``;
/// - unquoted: ends at the line's end or at a ` #` comment, trimmed.
///
/// After a closing quote only a comment may follow on that line.
pub(crate) fn parse(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut line_no = 0;
    while pos < text.len() {
        line_no += 1;
        let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let line = &text[pos..line_end];
        pos = (line_end + 1).min(text.len());
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let entry = trimmed.strip_prefix("export ").unwrap_or(trimmed).trim_start();
        let Some((key, value)) = entry.split_once('=') else {
            bail!("line {line_no}: expected KEY=VALUE");
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("line {line_no}: {key:?} is not a variable name");
        }
        let value = value.trim_start();
        let value = match value.chars().next() {
            Some(quote @ ('\'' | '"')) => {
                // The value may go on over the next lines: scan the text from its opening quote.
                let opened = value.as_ptr() as usize - text.as_ptr() as usize + 1;
                let (value, used) = quoted(&text[opened..], quote)
                    .ok_or_else(|| anyhow::anyhow!("line {line_no}: {quote} is never closed"))?;
                let closed = opened + used;
                line_no += text[opened..closed].matches('\n').count();
                let tail_end = text[closed..].find('\n').map_or(text.len(), |i| closed + i);
                let tail = text[closed..tail_end].trim();
                if !(tail.is_empty() || tail.starts_with('#')) {
                    bail!("line {line_no}: unexpected {tail:?} after the closing {quote}");
                }
                pos = (tail_end + 1).min(text.len());
                value
            }
            _ => value.split(" #").next().unwrap_or(value).trim_end().to_owned(),
        };
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

/// The value of a quoted string whose opening quote came just before `body`, and how many bytes
/// of `body` it used (closing quote included); `None` when it is never closed.
fn quoted(body: &str, quote: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Some((out, i + 1));
        }
        if quote == '"' && c == '\\' {
            match chars.clone().next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, e @ ('"' | '\\' | '$' | '`'))) => out.push(e),
                _ => {
                    out.push(c);
                    continue;
                }
            }
            chars.next();
            continue;
        }
        out.push(c);
    }
    None
}

/// A variable name for a field: upper case, anything but letters, digits and `_` becomes `_`.
pub(crate) fn var_name(field: &str) -> String {
    field.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// Whether a variable decides which program or library a command loads (`PATH`, `IFS`, the
/// dynamic loader's `LD_*` and `DYLD_*`). `run` never takes these from a secret's fields: a field
/// that happens to be called `path` must not redirect the command it starts.
pub(crate) fn steers_the_loader(name: &str) -> bool {
    matches!(name, "PATH" | "IFS" | "BASH_ENV" | "ENV")
        || name.starts_with("LD_")
        || name.starts_with("DYLD_")
}

/// One `KEY=value` entry that reads back the same here, in dotenv loaders, and in a POSIX shell
/// that sources the file, where nothing in it expands: single-quoted (literal everywhere) unless
/// the value holds a `'`; then double-quoted with `\`, `"`, `$` and `` ` `` escaped. Newlines stay
/// as they are, inside the quotes.
pub(crate) fn line(key: &str, value: &str) -> String {
    if !value.contains('\'') {
        return format!("{key}='{value}'");
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("{key}=\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reads_what_people_write() {
        let text = "# comment\nDATABASE_URL=postgresql://u:p@h/db\n\nexport A='x y'\nB=\"line\\nnext \\\"q\\\"\"\nC=plain # note\n\
                    D=\"a b\" # quoted, then a comment\nE='it # is not a comment'\nF=\"costs \\$5\"\nG=\nH = spaced \n";
        let got = parse(text).expect("parse");
        let want: Vec<(String, String)> = [
            ("DATABASE_URL", "postgresql://u:p@h/db"),
            ("A", "x y"),
            ("B", "line\nnext \"q\""),
            ("C", "plain"),
            ("D", "a b"),
            ("E", "it # is not a comment"),
            ("F", "costs $5"),
            ("G", ""),
            ("H", "spaced"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(got, want);
        assert!(parse("no equals").is_err());
        assert!(parse("BAD KEY=1").is_err());
    }

    #[test]
    fn quoted_values_span_lines() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIB\nAAAA\n-----END PRIVATE KEY-----";
        let text = format!("KEY=\"{pem}\"\nNEXT=1\nSINGLE='a\nb' # c\nLAST=2");
        let got = parse(&text).expect("parse");
        assert_eq!(got[0], ("KEY".to_owned(), pem.to_owned()));
        assert_eq!(got[1], ("NEXT".to_owned(), "1".to_owned()));
        assert_eq!(got[2], ("SINGLE".to_owned(), "a\nb".to_owned()));
        assert_eq!(got[3], ("LAST".to_owned(), "2".to_owned()));
    }

    #[test]
    fn malformed_quotes_name_their_line() {
        let e = parse("A=1\nB=\"never closed\nC=3\n").expect_err("unclosed").to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("A=1\nB='x' trailing\n").expect_err("trailing").to_string();
        assert!(e.contains("line 2") && e.contains("trailing"), "{e}");
        let e = parse("A=\"x\ny\" z\n").expect_err("trailing after two lines").to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    proptest! {
        /// Whatever a value holds, its exported line reads back the same.
        #[test]
        fn written_lines_read_back(value in any::<String>()) {
            let l = line("K", &value);
            prop_assert_eq!(parse(&l).expect("parse"), vec![("K".to_owned(), value)]);
        }
    }

    #[test]
    fn var_names() {
        assert_eq!(var_name("client-secret.v2"), "CLIENT_SECRET_V2");
    }

    /// A sourced export expands nothing: the shell sees each value exactly.
    #[test]
    fn a_shell_sourcing_an_export_runs_nothing() {
        let dir = std::env::temp_dir().join(format!("scaivault-dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let canary = dir.join("ran");
        let values = [
            format!("$(touch {})", canary.display()),
            format!("`touch {}`", canary.display()),
            format!("it's $(touch {}) \"q\" \\ $HOME", canary.display()),
            "multi\nline 'quoted'".to_owned(),
            "plain".to_owned(),
        ];
        for (i, value) in values.iter().enumerate() {
            let file = dir.join(format!("{i}.env"));
            std::fs::write(&file, format!("{}\n", line("K", value))).expect("write");
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(". \"$1\" && printf %s \"$K\"")
                .arg("sh")
                .arg(&file)
                .output()
                .expect("sh");
            assert!(out.status.success(), "{value:?}: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout), *value);
            assert!(!canary.exists(), "sourcing {value:?} ran a command");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
