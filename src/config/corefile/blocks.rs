//! Corefile structure: server blocks (keys, then directives in `{ }`), snippets `(name) { … }`
//! and `import`, as CoreDNS's Caddyfile parser reads them.
//!
//! A directive is the words on one line: its name, its arguments, and, when the line ends with
//! `{`, the directives up to the matching `}`. `import NAME` pastes a snippet's words; `import
//! PATTERN` pastes the words of the files it names (relative to the importing file; `*` and `?`
//! may stand in the file name), in name order. Imports are expanded before lines are grouped, so
//! an imported word keeps the line it has in its own file. A Corefile with a single server block
//! may leave its braces out. Expansion is bounded: imports nest at most [`MAX_DEPTH`] deep and a
//! Corefile expands to at most [`MAX_TOKENS`] words, so an import cycle or a snippet that pastes
//! itself over and over is an error, not a hang.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::CorefileError;
use super::lexer::{Token, tokens};

/// How deep imports may nest.
pub const MAX_DEPTH: usize = 16;
/// The most words a Corefile may expand to.
pub const MAX_TOKENS: usize = 100_000;

/// One server block.
#[derive(Debug, Clone)]
pub struct ServerBlock {
    /// Its keys (`service.local:1053`, `.:53`), commas removed.
    pub keys: Vec<Token>,
    /// Its directives, in order.
    pub directives: Vec<Directive>,
}

/// One directive: a name, arguments, and an optional block of sub-directives.
#[derive(Debug, Clone)]
pub struct Directive {
    /// The directive's name (its first word).
    pub name: Token,
    /// The other words on its line.
    pub args: Vec<Token>,
    /// The directives between `{` and `}` (empty without a block).
    pub block: Vec<Directive>,
}

/// Reads files for `import`.
pub trait Files {
    /// The text of `path`.
    ///
    /// # Errors
    /// The I/O error, as text.
    fn read(&self, path: &Path) -> Result<String, String>;
    /// The files in `dir` whose names match `pattern` (`*`, `?`), sorted.
    fn matching(&self, dir: &Path, pattern: &str) -> Vec<PathBuf>;
}

/// The real file system.
pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    fn matching(&self, dir: &Path, pattern: &str) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
            .filter(|entry| wildcard(pattern, &entry.file_name().to_string_lossy()))
            .map(|entry| entry.path())
            .collect();
        found.sort();
        found
    }
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` one.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Parses a Corefile into server blocks.
pub struct Parser<'a> {
    files: &'a dyn Files,
    env: &'a dyn Fn(&str) -> Option<String>,
    snippets: HashMap<String, Vec<Token>>,
    expanded: usize,
}

impl<'a> Parser<'a> {
    /// A parser reading imports through `files` and variables through `env`.
    pub fn new(files: &'a dyn Files, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            files,
            env,
            snippets: HashMap::new(),
            expanded: 0,
        }
    }

    /// The server blocks of `text`, the contents of the Corefile at `path`.
    ///
    /// # Errors
    /// The first structural error: braces, imports, a block without keys.
    pub fn parse(&mut self, text: &str, path: &Path) -> Result<Vec<ServerBlock>, CorefileError> {
        let file: Arc<str> = Arc::from(path.display().to_string());
        let words = tokens(text, &file, self.env)?;
        let words = self.top_level(words, 0)?;
        self.blocks(words)
    }

    /// Takes snippet definitions out and expands top-level imports (which may bring server
    /// blocks and snippets of their own).
    fn top_level(&mut self, words: Vec<Token>, depth: usize) -> Result<Vec<Token>, CorefileError> {
        let mut out = Vec::new();
        let mut i = 0;
        let mut nesting = 0usize;
        while i < words.len() {
            let word = &words[i];
            let at_line_start =
                i == 0 || words[i - 1].line != word.line || words[i - 1].file != word.file;
            if nesting == 0
                && at_line_start
                && !word.quoted
                && word.text.len() > 2
                && word.text.starts_with('(')
                && word.text.ends_with(')')
                && words.get(i + 1).is_some_and(|t| t.is("{"))
            {
                let name = word.text[1..word.text.len() - 1].to_string();
                let (body, next) = braced(&words, i + 1)?;
                self.snippets.insert(name, body);
                i = next;
                continue;
            }
            if nesting == 0 && at_line_start && word.is("import") {
                let (pasted, next) = self.import(&words, i, depth)?;
                out.extend(self.top_level(pasted, depth + 1)?);
                i = next;
                continue;
            }
            if word.is("{") {
                nesting += 1;
            } else if word.is("}") {
                nesting = nesting.saturating_sub(1);
            }
            out.push(word.clone());
            i += 1;
        }
        Ok(out)
    }

    /// The words `import` at `words[at]` stands for, and the index after its line.
    fn import(
        &mut self,
        words: &[Token],
        at: usize,
        depth: usize,
    ) -> Result<(Vec<Token>, usize), CorefileError> {
        let import = &words[at];
        let line_end = line_end(words, at);
        let args = &words[at + 1..line_end];
        let [target] = args else {
            return Err(CorefileError::in_directive(
                import,
                "import",
                "expected one snippet name or file pattern",
            ));
        };
        if depth >= MAX_DEPTH {
            return Err(CorefileError::in_directive(
                import,
                "import",
                &format!("imports nest more than {MAX_DEPTH} deep (an import cycle?)"),
            ));
        }
        let pasted = if let Some(snippet) = self.snippets.get(&target.text) {
            snippet.clone()
        } else {
            let base = Path::new(&*target.file).parent().unwrap_or(Path::new("."));
            let pattern = Path::new(&target.text);
            let full = if pattern.is_absolute() {
                pattern.to_path_buf()
            } else {
                base.join(pattern)
            };
            let dir = full.parent().unwrap_or(Path::new(".")).to_path_buf();
            let name = full
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let paths = if name.contains(['*', '?']) {
                self.files.matching(&dir, &name)
            } else {
                vec![full.clone()]
            };
            let mut pasted = Vec::new();
            for file in paths {
                let text = self.files.read(&file).map_err(|e| {
                    CorefileError::in_directive(
                        target,
                        "import",
                        &format!(
                            "cannot read {}: {e} (expected a snippet name or a file)",
                            file.display()
                        ),
                    )
                })?;
                let name: Arc<str> = Arc::from(file.display().to_string());
                let words = tokens(&text, &name, self.env)?;
                pasted.extend(self.top_level(words, depth + 1)?);
            }
            pasted
        };
        self.expanded += pasted.len();
        if self.expanded > MAX_TOKENS {
            return Err(CorefileError::in_directive(
                import,
                "import",
                &format!("the Corefile expands to more than {MAX_TOKENS} words"),
            ));
        }
        Ok((pasted, line_end))
    }

    /// Replaces every `import` line inside a block with the words it stands for, recursively.
    fn expand(&mut self, words: Vec<Token>, depth: usize) -> Result<Vec<Token>, CorefileError> {
        if !words.iter().any(|w| w.is("import")) {
            return Ok(words);
        }
        let mut out = Vec::with_capacity(words.len());
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            let at_line_start =
                i == 0 || words[i - 1].line != word.line || words[i - 1].file != word.file;
            if at_line_start && word.is("import") {
                let (pasted, next) = self.import(&words, i, depth)?;
                out.extend(self.expand(pasted, depth + 1)?);
                i = next;
            } else {
                out.push(word.clone());
                i += 1;
            }
        }
        Ok(out)
    }

    /// Splits top-level words into server blocks.
    fn blocks(&mut self, words: Vec<Token>) -> Result<Vec<ServerBlock>, CorefileError> {
        let mut blocks = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let first = &words[i];
            if first.is("{") || first.is("}") {
                return Err(CorefileError::at(
                    &first.file,
                    first.line,
                    &format!(
                        "unexpected '{}' (expected server block keys such as service.local:1053)",
                        first.text
                    ),
                ));
            }
            // Keys: the words on the first line, up to a `{`.
            let end = line_end(&words, i);
            let brace = (i..end).find(|j| words[*j].is("{"));
            let keys_end = brace.unwrap_or(end);
            let keys = split_keys(&words[i..keys_end]);
            let (body, next) = match brace {
                Some(open) => {
                    if open + 1 != end {
                        let after = &words[open + 1];
                        return Err(CorefileError::at(
                            &after.file,
                            after.line,
                            "a server block's '{' must end its line",
                        ));
                    }
                    braced(&words, open)?
                }
                None if blocks.is_empty() => {
                    // One server block without braces: the rest of the file is its body.
                    (words[end..].to_vec(), words.len())
                }
                None => {
                    return Err(CorefileError::at(
                        &first.file,
                        first.line,
                        "expected '{' after the server block keys",
                    ));
                }
            };
            let body = self.expand(body, 0)?;
            let directives = directives(&body)?;
            blocks.push(ServerBlock { keys, directives });
            i = next;
        }
        Ok(blocks)
    }
}

/// Keys separated by spaces or commas.
fn split_keys(words: &[Token]) -> Vec<Token> {
    words
        .iter()
        .flat_map(|w| {
            w.text
                .split(',')
                .filter(|k| !k.is_empty())
                .map(|k| Token {
                    text: k.to_string(),
                    ..w.clone()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The index just past the words on `words[at]`'s line.
fn line_end(words: &[Token], at: usize) -> usize {
    let (file, line) = (&words[at].file, words[at].line);
    let mut end = at + 1;
    while end < words.len() && words[end].line == line && words[end].file == *file {
        end += 1;
    }
    end
}

/// The words between the `{` at `open` and its matching `}`, and the index after the `}`.
fn braced(words: &[Token], open: usize) -> Result<(Vec<Token>, usize), CorefileError> {
    let mut depth = 0usize;
    for (j, word) in words.iter().enumerate().skip(open) {
        if word.is("{") {
            depth += 1;
        } else if word.is("}") {
            depth -= 1;
            if depth == 0 {
                return Ok((words[open + 1..j].to_vec(), j + 1));
            }
        }
    }
    let start = &words[open];
    Err(CorefileError::at(
        &start.file,
        start.line,
        "this '{' is never closed (expected a matching '}')",
    ))
}

/// Groups a block's words into directives by line.
fn directives(words: &[Token]) -> Result<Vec<Directive>, CorefileError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let name = &words[i];
        if name.is("{") || name.is("}") {
            return Err(CorefileError::at(
                &name.file,
                name.line,
                &format!("unexpected '{}' (expected a directive)", name.text),
            ));
        }
        let end = line_end(words, i);
        let opens = end - 1 > i && words[end - 1].is("{");
        let args_end = if opens { end - 1 } else { end };
        let (block, next) = if opens {
            let (inner, next) = braced(words, end - 1)?;
            (directives(&inner)?, next)
        } else {
            (Vec::new(), end)
        };
        out.push(Directive {
            name: name.clone(),
            args: words[i + 1..args_end].to_vec(),
            block,
        });
        i = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files held in memory.
    struct Memory(Vec<(&'static str, &'static str)>);

    impl Files for Memory {
        fn read(&self, path: &Path) -> Result<String, String> {
            self.0
                .iter()
                .find(|(p, _)| Path::new(p) == path)
                .map(|(_, text)| text.to_string())
                .ok_or_else(|| "No such file or directory (os error 2)".to_string())
        }

        fn matching(&self, dir: &Path, pattern: &str) -> Vec<PathBuf> {
            let mut found: Vec<PathBuf> = self
                .0
                .iter()
                .map(|(p, _)| PathBuf::from(p))
                .filter(|p| {
                    p.parent() == Some(dir)
                        && wildcard(pattern, &p.file_name().unwrap().to_string_lossy())
                })
                .collect();
            found.sort();
            found
        }
    }

    fn parse(
        text: &str,
        files: &[(&'static str, &'static str)],
    ) -> Result<Vec<ServerBlock>, String> {
        let files = Memory(files.to_vec());
        let env = |_: &str| None;
        Parser::new(&files, &env)
            .parse(text, Path::new("/etc/srvd/Corefile"))
            .map_err(|e| e.to_string())
    }

    /// `keys: name args… {sub…}; …` for comparing.
    fn show(blocks: &[ServerBlock]) -> Vec<String> {
        fn directive(d: &Directive) -> String {
            let mut s = d.name.text.clone();
            for a in &d.args {
                s.push(' ');
                s.push_str(&a.text);
            }
            if !d.block.is_empty() {
                let inner: Vec<String> = d.block.iter().map(directive).collect();
                s.push_str(&format!(" {{{}}}", inner.join("; ")));
            }
            s
        }
        blocks
            .iter()
            .map(|b| {
                let keys: Vec<&str> = b.keys.iter().map(|k| k.text.as_str()).collect();
                let body: Vec<String> = b.directives.iter().map(directive).collect();
                format!("{}: {}", keys.join(" "), body.join("; "))
            })
            .collect()
    }

    #[test]
    fn blocks_directives_and_sub_blocks() {
        let blocks = parse(
            "service.local:1053 example.test, other.test {\n  etcd service.local {\n    path /skydns\n    endpoint http://a:2379 http://b:2379\n  }\n  log\n}\n\n.:1054 {\n  errors\n}\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            show(&blocks),
            [
                "service.local:1053 example.test other.test: etcd service.local {path /skydns; endpoint http://a:2379 http://b:2379}; log",
                ".:1054: errors"
            ]
        );
        assert_eq!(blocks[0].directives[1].name.line, 6);
    }

    #[test]
    fn a_single_block_may_leave_its_braces_out() {
        let blocks = parse("service.local:1053\netcd\nlog\n", &[]).unwrap();
        assert_eq!(show(&blocks), ["service.local:1053: etcd; log"]);
    }

    #[test]
    fn snippets_and_file_imports_are_pasted_with_their_own_lines() {
        let blocks = parse(
            "(common) {\n  log\n  errors\n}\nimport blocks/*.conf\nservice.local {\n  import common\n  etcd\n}\n",
            &[
                ("/etc/srvd/blocks/a.conf", "a.test {\n  import common\n}\n"),
                ("/etc/srvd/blocks/b.conf", "b.test {\n  cache\n}\n"),
                ("/etc/srvd/blocks/c.txt", "c.test {\n}\n"),
            ],
        )
        .unwrap();
        assert_eq!(
            show(&blocks),
            [
                "a.test: log; errors",
                "b.test: cache",
                "service.local: log; errors; etcd"
            ]
        );
        let etcd = &blocks[2].directives[2];
        assert_eq!(
            (etcd.name.line, &*etcd.name.file),
            (8, "/etc/srvd/Corefile")
        );
        let b = &blocks[1].directives[0];
        assert_eq!((b.name.line, &*b.name.file), (2, "/etc/srvd/blocks/b.conf"));
    }

    #[test]
    fn structural_errors_name_the_file_and_line() {
        for (text, files, want) in [
            (
                "a.test {\n  log\n",
                vec![],
                "/etc/srvd/Corefile:1: this '{' is never closed (expected a matching '}')",
            ),
            (
                "}\n",
                vec![],
                "/etc/srvd/Corefile:1: unexpected '}' (expected server block keys such as service.local:1053)",
            ),
            (
                "a.test {\n  import missing.conf\n}\n",
                vec![],
                "/etc/srvd/Corefile:2: import: cannot read /etc/srvd/missing.conf: No such file or directory (os error 2) (expected a snippet name or a file)",
            ),
            (
                "a.test {\n  import\n}\n",
                vec![],
                "/etc/srvd/Corefile:2: import: expected one snippet name or file pattern",
            ),
            (
                "import loop.conf\n",
                vec![("/etc/srvd/loop.conf", "import loop.conf\n")],
                "/etc/srvd/loop.conf:1: import: imports nest more than 16 deep (an import cycle?)",
            ),
            (
                "a.test {\n  log\n}\nb.test\n  log\n",
                vec![],
                "/etc/srvd/Corefile:4: expected '{' after the server block keys",
            ),
        ] {
            assert_eq!(parse(text, &files).unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn a_snippet_that_doubles_itself_is_stopped() {
        let mut text = String::from("(s0) {\n  log\n}\n");
        for i in 1..16 {
            text.push_str(&format!(
                "(s{i}) {{\n  import s{}\n  import s{}\n}}\n",
                i - 1,
                i - 1
            ));
        }
        text.push_str("a.test {\n  import s15\n}\n");
        let error = parse(&text, &[]).unwrap_err();
        assert!(
            error.contains("expands to more than 100000 words"),
            "{error}"
        );
    }

    #[test]
    fn wildcards_match_whole_names() {
        assert!(wildcard("*.conf", "a.conf"));
        assert!(wildcard("a?c", "abc"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("*.conf", "a.conf.bak"));
        assert!(!wildcard("a?c", "ac"));
    }
}
