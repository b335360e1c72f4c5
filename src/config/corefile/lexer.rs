//! Corefile tokens, as CoreDNS's Caddyfile lexer makes them: words split on whitespace, `"…"`
//! quoting a word that may hold spaces or newlines (`\"` and `\\` escape inside quotes), `#` to
//! the end of the line starting a comment where a word could start, and `{$NAME}` (or `{%NAME%}`)
//! replaced by the environment variable `NAME` inside any word. Each token keeps its file and
//! line for errors, and whether it was quoted (a quoted `{` is a word, not a block).

use std::sync::Arc;

use super::CorefileError;

/// One word of a Corefile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The word, quotes removed and environment variables replaced.
    pub text: String,
    /// The file it comes from.
    pub file: Arc<str>,
    /// Its line (1-based); a quoted word spanning lines has the line it starts on.
    pub line: usize,
    /// Whether it was written in quotes.
    pub quoted: bool,
}

impl Token {
    /// Whether this is the unquoted word `text` (a brace, a keyword).
    pub fn is(&self, text: &str) -> bool {
        !self.quoted && self.text == text
    }
}

/// Splits `text` (the contents of `file`) into tokens; `env` looks environment variables up.
///
/// # Errors
/// A quote that is never closed, naming the line it opened on.
pub fn tokens(
    text: &str,
    file: &Arc<str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Token>, CorefileError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        if c == '\n' {
            line += 1;
            chars.next();
        } else if c.is_whitespace() {
            chars.next();
        } else if c == '#' {
            while chars.peek().is_some_and(|c| *c != '\n') {
                chars.next();
            }
        } else if c == '"' {
            chars.next();
            let start = line;
            let mut word = String::new();
            loop {
                match chars.next() {
                    None => {
                        return Err(CorefileError::at(
                            file,
                            start,
                            "a quoted word is never closed (expected a closing \")",
                        ));
                    }
                    Some('"') => break,
                    Some('\\') if matches!(chars.peek(), Some('"' | '\\')) => {
                        word.extend(chars.next());
                    }
                    Some(c) => {
                        if c == '\n' {
                            line += 1;
                        }
                        word.push(c);
                    }
                }
            }
            out.push(Token {
                text: substitute(&word, env),
                file: file.clone(),
                line: start,
                quoted: true,
            });
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '"' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(Token {
                text: substitute(&word, env),
                file: file.clone(),
                line,
                quoted: false,
            });
        }
    }
    Ok(out)
}

/// Replaces `{$NAME}` and `{%NAME%}` with the variable's value (empty when unset), as CoreDNS
/// does.
fn substitute(word: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    if !word.contains("{$") && !word.contains("{%") {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let (name, used) = if let Some(body) = after.strip_prefix('$') {
            body.find('}').map(|end| (&body[..end], end + 2))
        } else if let Some(body) = after.strip_prefix('%') {
            body.find("%}").map(|end| (&body[..end], end + 3))
        } else {
            None
        }
        .unwrap_or(("", 0));
        if used == 0 || name.is_empty() {
            out.push('{');
            rest = after;
        } else {
            out.push_str(&env(name).unwrap_or_default());
            rest = &after[used..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<(String, usize)> {
        let env = |name: &str| (name == "ZONE").then(|| "service.local".to_string());
        tokens(text, &Arc::from("Corefile"), &env)
            .unwrap()
            .into_iter()
            .map(|t| (t.text, t.line))
            .collect()
    }

    #[test]
    fn words_comments_quotes_and_lines() {
        assert_eq!(
            words("a b # c d\n\"e f\" g#h\n  {\n}"),
            [
                ("a".into(), 1),
                ("b".into(), 1),
                ("e f".into(), 2),
                ("g#h".into(), 2),
                ("{".into(), 3),
                ("}".into(), 4)
            ]
        );
        assert_eq!(
            words("\"a \\\"quoted\\\"\nword\" next"),
            [("a \"quoted\"\nword".into(), 1), ("next".into(), 2)]
        );
    }

    #[test]
    fn environment_variables_are_replaced_inside_words() {
        assert_eq!(
            words("{$ZONE}:1053 x{%ZONE%}y {$UNSET}z {notenv}"),
            [
                ("service.local:1053".into(), 1),
                ("xservice.localy".into(), 1),
                ("z".into(), 1),
                ("{notenv}".into(), 1)
            ]
        );
    }

    #[test]
    fn an_unclosed_quote_names_its_line() {
        let error = tokens("a\n\"b\nc", &Arc::from("Corefile"), &|_| None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Corefile:2: a quoted word is never closed (expected a closing \")"
        );
    }
}
