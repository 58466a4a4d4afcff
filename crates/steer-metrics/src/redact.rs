//! Secrets out of text: the one redaction every steer crate uses for the
//! URLs, specs, error messages, reports and logs it prints.
//!
//! Rules, applied by [`redact`] anywhere in a text (a bare URL, an error
//! message quoting one, a libpq `key=value` string):
//!
//! * **userinfo**: in `scheme://user:password@host`, the password becomes
//!   `***` (`scheme://user:***@host`); a user name alone is kept.
//! * **secret-looking parameters**: in `name=value` (URL query, libpq
//!   connection string, `key=value` lists), the value becomes `***` when the
//!   name (case-insensitive) contains `password`, `passwd`, `pwd`, `pass`,
//!   `secret`, `token`, `key`, `auth`, `signature`, `credential`,
//!   `session` or `cookie`, or is `sig`. The value ends at `&`, `;`, `,`,
//!   `#`, whitespace, a quote or a closing bracket.
//!
//! Then, and only then, cut: [`redact_truncated`] redacts first and
//! truncates after, so a secret straddling the cut can never leave a
//! prefix behind.
//!
//! ```
//! use steer_metrics::redact::{redact, redact_truncated};
//! assert_eq!(
//!     redact("postgres://steer:hunter2@db:5432/m?sslmode=require&password=hunter3"),
//!     "postgres://steer:***@db:5432/m?sslmode=require&password=***"
//! );
//! assert_eq!(redact("influxdb2://h:8086?org=o&bucket=b&token=abc"), "influxdb2://h:8086?org=o&bucket=b&token=***");
//! assert_eq!(redact("host=db user=steer password=hunter2"), "host=db user=steer password=***");
//! assert_eq!(redact_truncated("error: token=abcdef", 14), "error: token=*…");
//! ```

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Whether a parameter name suggests its value is a secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    if n.is_empty() {
        return false;
    }
    const PARTS: [&str; 12] = [
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "token",
        "key",
        "auth",
        "signature",
        "credential",
        "session",
        "cookie",
    ];
    n == "sig" || PARTS.iter().any(|p| n.contains(p))
}

/// Characters that end a parameter value or a URL.
fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '&' | ';' | ',' | '#' | '"' | '\'' | '`' | ')' | ']' | '}' | '>' | '<'
        )
}

/// Characters a parameter name is made of.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '%')
}

/// Hide every secret in `text` (see the module docs for the rules).
pub fn redact(text: &str) -> String {
    redact_params(&redact_userinfo(text))
}

/// Redact, then truncate to at most `max` bytes (on a character boundary,
/// with `…` appended when cut). Use this, never the other order.
pub fn redact_truncated(text: &str, max: usize) -> String {
    truncate(redact(text), max)
}

/// Cut `s` to at most `max` bytes on a character boundary, appending `…`
/// when something was cut. Does not redact: see [`redact_truncated`].
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let cut = truncate_str(&s, max).len();
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary (no `…` appended). Does not redact.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `scheme://user:password@host` → `scheme://user:***@host`, for every
/// `//` in the text (a scheme-less `//user:pw@host` too).
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("//") {
        let start = pos + 2;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        // The URL ends at whitespace or a quote.
        let token_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let token = &after[..token_end];
        let path = token.find(['/', '?', '#']).unwrap_or(token.len());
        let userinfo = match token.rfind('@') {
            // The usual case: `user:pw@host/...`.
            Some(at) if at < path => Some(&token[..at]),
            // A password holding `/`, `?` or `#` unencoded: `user:a/b@host`,
            // but not `host:80/path@x` (a port before the path).
            Some(at) => token[..at].split_once(':').and_then(|(user, after_colon)| {
                let first = after_colon.split(['/', '?', '#']).next().unwrap_or("");
                let port = !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit());
                (!user.contains(['/', '?', '#']) && !port).then_some(&token[..at])
            }),
            None => None,
        };
        match userinfo {
            Some(ui) => {
                match ui.find(':') {
                    Some(colon) => {
                        out.push_str(&ui[..colon]);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None => out.push_str(ui),
                }
                rest = &after[ui.len()..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// `name=value` with a secret-looking name → `name=***`.
fn redact_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let bytes = text.as_bytes();
    while let Some(rel) = text[i..].find('=') {
        let eq = i + rel;
        // The name: the run of name characters before `=`.
        let name_start = text[..eq]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| name_char(c))
            .last()
            .map_or(eq, |(j, _)| j);
        let name = &text[name_start..eq];
        out.push_str(&text[i..=eq]);
        let value_start = eq + 1;
        let value_end = match text[value_start..].chars().next() {
            // A quoted value (libpq `password='a b'`) runs to its closing quote.
            Some(q @ ('\'' | '"')) => text[value_start + 1..]
                .find(q)
                .map_or(text.len(), |r| value_start + 1 + r + 1),
            _ => text[value_start..]
                .find(ends_value)
                .map_or(text.len(), |r| value_start + r),
        };
        // `==` or a value that is itself a masked secret: nothing to do.
        let value = &text[value_start..value_end];
        if is_secret_name(name) && !value.is_empty() && value != MASK && bytes.get(value_start) != Some(&b'=')
        {
            out.push_str(MASK);
            i = value_end;
        } else {
            i = value_start;
        }
    }
    out.push_str(&text[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urls() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db?password=pw", "postgres://u@h/db?password=***"),
            (
                "postgres://h/db?user=u&password=pw&sslmode=disable",
                "postgres://h/db?user=u&password=***&sslmode=disable",
            ),
            (
                "otlp:http://h:4318/v1?api_key=K&x=1",
                "otlp:http://h:4318/v1?api_key=***&x=1",
            ),
            (
                "http://h/?X-Amz-Signature=abc&X-Amz-Credential=AKIA",
                "http://h/?X-Amz-Signature=***&X-Amz-Credential=***",
            ),
            ("https://h/?sig=abc", "https://h/?sig=***"),
            ("http://u:p@ss@h/", "http://u:***@h/"),
            (
                "see http://a:b@h/x and https://c:d@k/y?token=t.",
                "see http://a:***@h/x and https://c:***@k/y?token=***",
            ),
            ("http://h/?org=o&bucket=b", "http://h/?org=o&bucket=b"),
            ("no url here", "no url here"),
            ("host=h password='p w' user=u", "host=h password=*** user=u"),
            ("postgres://u:a/b?c@h/db", "postgres://u:***@h/db"),
            ("http://h:80/x@y", "http://h:80/x@y"),
            ("//u:pw@h:1", "//u:***@h:1"),
            ("http://h//x", "http://h//x"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn redact_then_truncate_leaves_no_prefix() {
        let key = "sk-live-0123456789abcdef0123456789abcdef";
        let text = format!("{} token={key} rest", "x".repeat(290));
        for max in 280..340 {
            let out = redact_truncated(&text, max);
            assert!(!out.contains("sk-live-0123"), "{max}: {out}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_hides_passwords(user in "[a-z]{1,8}", pw in "[A-Za-z0-9]{8,20}", pre in ".{0,20}", post in "[ -~]{0,20}") {
            let s = format!("{pre}postgres://{user}:{pw}@host:5432/db?password={pw}{post}");
            let out = redact(&s);
            prop_assert!(!out.contains(&format!(":{pw}@")), "{}", out);
            prop_assert!(!out.contains(&format!("password={pw}")), "{}", out);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = redact_truncated(&s, 50);
        }
    }
}
