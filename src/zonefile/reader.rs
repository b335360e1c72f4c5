//! Reads RFC 1035 master-file text (§5.1) into records, each with the file and line it came from.
//!
//! srvd reads the syntax itself rather than through hickory-proto's zone `Parser` because that
//! parser reports no positions, folds written names to lower case (IDNA), and keys every record in
//! an ordered map by `Name` on the way, which made a large zone load several times slower than NSD
//! loads it. Reading here keeps each name as written (DNS is case-preserving, RFC 4343 §2; a
//! DNS-SD instance label is shown to users, RFC 6763 §4.1) and names the line of any error.
//!
//! The RDATA of the types a DNS-SD zone holds (A, AAAA, SRV, TXT, PTR, CNAME, NS, MX, SOA) is
//! read here; any other type is handed to hickory-proto's parser one record at a time (hickory
//! exposes no per-type RDATA text parser), so every type it read before still loads.
//!
//! Hostile input costs bounded work: the text is scanned once, `$INCLUDE` is limited in depth and
//! in count and refuses a file that includes itself, and an unclosed `(` or `"` is an error that
//! names the line it opened on.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::{Parser, parse_ttl};

/// How deep `$INCLUDE`s may nest.
const MAX_INCLUDE_DEPTH: usize = 8;
/// How many `$INCLUDE`s one zone may use in all (nesting could otherwise multiply the work).
const MAX_INCLUDES: usize = 64;

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Position {
    /// Index into [`Read::files`].
    pub file: usize,
    /// 1-based line of the entry.
    pub line: usize,
}

/// The records of a zone file and of the files it includes.
#[derive(Debug, Default)]
pub(super) struct Read {
    /// Every record, in the order written.
    pub records: Vec<Record>,
    /// Where each record was written (same index as `records`).
    pub positions: Vec<Position>,
    /// The zone file first, then every included file.
    pub files: Vec<String>,
}

/// A syntax error: the file as named in [`Read::files`], the line, and what was expected.
#[derive(Debug)]
pub(super) struct ReadError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Reads `text`, the zone file `source` (at `path`, which relative `$INCLUDE`s need).
pub(super) fn read(
    text: &str,
    origin: &Name,
    source: &str,
    path: Option<&Path>,
) -> Result<Read, ReadError> {
    let mut reader = Reader {
        read: Read {
            files: vec![source.to_string()],
            ..Read::default()
        },
        default_ttl: None,
        last_ttl: None,
        class: DNSClass::IN,
        owner: None,
        stack: path.map(Path::to_path_buf).into_iter().collect(),
        includes: 0,
        owner_text: String::new(),
        owner_generation: 0,
        origin_generation: 1,
    };
    reader.read_file(text, origin.clone(), 0, path)?;
    Ok(reader.read)
}

/// One token: its text as written (escapes not decoded) and whether it was quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token<'t> {
    text: &'t str,
    quoted: bool,
}

/// Splits text into entries: tokens up to a line end outside parentheses and quotes.
struct Lexer<'t> {
    text: &'t str,
    pos: usize,
    line: usize,
}

/// Where an entry starts: its first line (errors name it), and whether that line starts with
/// blank space (the previous owner continues).
struct EntryHead {
    line: usize,
    blank: bool,
}

impl<'t> Lexer<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text,
            pos: 0,
            line: 1,
        }
    }

    /// The next entry with at least one token, its tokens in `tokens`; `None` at the end.
    fn next_entry(
        &mut self,
        tokens: &mut Vec<Token<'t>>,
    ) -> Result<Option<EntryHead>, (usize, String)> {
        let bytes = self.text.as_bytes();
        tokens.clear();
        let mut head = EntryHead {
            line: self.line,
            blank: matches!(bytes.get(self.pos), Some(b' ' | b'\t')),
        };
        let mut open: Option<usize> = None;
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    if open.is_none() {
                        if !tokens.is_empty() {
                            return Ok(Some(head));
                        }
                        head = EntryHead {
                            line: self.line,
                            blank: matches!(bytes.get(self.pos), Some(b' ' | b'\t')),
                        };
                    }
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b';' => {
                    while bytes.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                b'(' => {
                    if open.is_some() {
                        return Err((
                            self.line,
                            "a `(` inside parentheses: expected `)` first".into(),
                        ));
                    }
                    open = Some(self.line);
                    self.pos += 1;
                }
                b')' => {
                    if open.take().is_none() {
                        return Err((self.line, "a `)` without a `(` before it".into()));
                    }
                    self.pos += 1;
                }
                b'"' => {
                    let opened = self.line;
                    let start = self.pos + 1;
                    let mut at = start;
                    loop {
                        match bytes.get(at) {
                            None => {
                                return Err((
                                    opened,
                                    "a quoted string is never closed: expected a `\"`".into(),
                                ));
                            }
                            Some(b'"') => break,
                            Some(b'\\') => {
                                if bytes.get(at + 1) == Some(&b'\n') {
                                    self.line += 1;
                                }
                                at += 2;
                            }
                            Some(b'\n') => {
                                self.line += 1;
                                at += 1;
                            }
                            Some(_) => at += 1,
                        }
                    }
                    tokens.push(Token {
                        text: &self.text[start..at],
                        quoted: true,
                    });
                    self.pos = at + 1;
                }
                c if c < 0x20 || c == 0x7f => {
                    return Err((
                        self.line,
                        format!("a control character (0x{c:02x}): expected text"),
                    ));
                }
                _ => {
                    let start = self.pos;
                    let mut at = start;
                    while let Some(&c) = bytes.get(at) {
                        match c {
                            b'\\' => {
                                if bytes.get(at + 1) == Some(&b'\n') {
                                    self.line += 1;
                                }
                                at = (at + 2).min(bytes.len());
                            }
                            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                            // Left for the entry loop to report.
                            c if c < 0x20 || c == 0x7f => break,
                            _ => at += 1,
                        }
                    }
                    tokens.push(Token {
                        text: &self.text[start..at],
                        quoted: false,
                    });
                    self.pos = at;
                }
            }
        }
        if let Some(line) = open {
            return Err((line, "a `(` is never closed: expected a `)`".into()));
        }
        Ok((!tokens.is_empty()).then_some(head))
    }
}

/// State carried from entry to entry, and across `$INCLUDE`s (RFC 1035 §5.1 leaves only the
/// origin to the including file).
struct Reader {
    read: Read,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    class: DNSClass,
    owner: Option<Name>,
    /// The files being read, outermost first (a file may not include one of them).
    stack: Vec<PathBuf>,
    includes: usize,
    /// The owner token of the last entry that named one, and the origin generation it was read
    /// under: consecutive records of one owner (an RRset) parse its name once.
    owner_text: String,
    owner_generation: u64,
    /// Changes whenever the origin may have (a `$ORIGIN`, entering or leaving a `$INCLUDE`).
    origin_generation: u64,
}

impl Reader {
    fn read_file(
        &mut self,
        text: &str,
        mut origin: Name,
        file: usize,
        path: Option<&Path>,
    ) -> Result<(), ReadError> {
        let mut lexer = Lexer::new(text);
        let mut tokens = Vec::new();
        loop {
            let head = match lexer.next_entry(&mut tokens) {
                Ok(Some(head)) => head,
                Ok(None) => return Ok(()),
                Err((line, message)) => return Err(self.error(file, line, message)),
            };
            let first = tokens[0];
            if !head.blank && !first.quoted && first.text.starts_with('$') {
                self.directive(&tokens, &mut origin, file, head.line, path)?;
                continue;
            }
            let record = self
                .record(&tokens, head.blank, &origin)
                .map_err(|message| self.error(file, head.line, message))?;
            if let Some(record) = record {
                self.read.records.push(record);
                self.read.positions.push(Position {
                    file,
                    line: head.line,
                });
            }
        }
    }

    fn error(&self, file: usize, line: usize, message: String) -> ReadError {
        ReadError {
            file: self.read.files[file].clone(),
            line: Some(line),
            message,
        }
    }

    fn directive(
        &mut self,
        tokens: &[Token<'_>],
        origin: &mut Name,
        file: usize,
        line: usize,
        path: Option<&Path>,
    ) -> Result<(), ReadError> {
        let fail = |this: &Self, message: String| Err(this.error(file, line, message));
        let word = tokens[0].text;
        let args = &tokens[1..];
        if word.eq_ignore_ascii_case("$ORIGIN") {
            let [name] = args else {
                return fail(self, "$ORIGIN takes one domain name".into());
            };
            match self.name(name.text, origin) {
                Ok(name) => *origin = name,
                Err(message) => return fail(self, message),
            }
            self.origin_generation += 1;
        } else if word.eq_ignore_ascii_case("$TTL") {
            let [ttl] = args else {
                return fail(self, "$TTL takes one TTL (seconds, or e.g. 1h30m)".into());
            };
            match parse_ttl(ttl.text) {
                Ok(ttl) => self.default_ttl = Some(ttl),
                Err(e) => return fail(self, format!("bad $TTL `{}`: {e}", ttl.text)),
            }
        } else if word.eq_ignore_ascii_case("$INCLUDE") {
            let (include, include_origin) = match args {
                [file_name] => (file_name.text, origin.clone()),
                [file_name, name] => match self.name(name.text, origin) {
                    Ok(name) => (file_name.text, name),
                    Err(message) => return fail(self, message),
                },
                _ => {
                    return fail(
                        self,
                        "$INCLUDE takes a file name and, optionally, its origin".into(),
                    );
                }
            };
            self.include(include, include_origin, file, line, path)?;
        } else {
            return fail(
                self,
                format!("unknown directive `{word}`: expected $ORIGIN, $TTL or $INCLUDE"),
            );
        }
        Ok(())
    }

    fn include(
        &mut self,
        include: &str,
        origin: Name,
        file: usize,
        line: usize,
        path: Option<&Path>,
    ) -> Result<(), ReadError> {
        let include = Path::new(include);
        let include = if include.is_absolute() {
            include.to_path_buf()
        } else if let Some(dir) = path.and_then(Path::parent) {
            dir.join(include)
        } else {
            return Err(self.error(
                file,
                line,
                "a relative $INCLUDE in a zone that is not read from a file".into(),
            ));
        };
        if self.stack.len() > MAX_INCLUDE_DEPTH || self.includes >= MAX_INCLUDES {
            return Err(self.error(
                file,
                line,
                format!(
                    "too many $INCLUDEs: at most {MAX_INCLUDE_DEPTH} deep and {MAX_INCLUDES} in all"
                ),
            ));
        }
        let canonical = include.canonicalize().unwrap_or_else(|_| include.clone());
        if self
            .stack
            .iter()
            .any(|open| open.canonicalize().is_ok_and(|open| open == canonical))
        {
            return Err(self.error(
                file,
                line,
                format!(
                    "$INCLUDE {} includes a file that is already being read (a loop)",
                    include.display()
                ),
            ));
        }
        let text = std::fs::read_to_string(&include).map_err(|e| {
            self.error(
                file,
                line,
                format!("cannot read $INCLUDE {}: {e}", include.display()),
            )
        })?;
        self.includes += 1;
        self.read.files.push(include.display().to_string());
        let index = self.read.files.len() - 1;
        self.stack.push(include.clone());
        self.origin_generation += 1;
        let result = self.read_file(&text, origin, index, Some(&include));
        self.origin_generation += 1;
        self.stack.pop();
        result
    }

    /// One record entry; `None` for a line that only names an owner.
    fn record(
        &mut self,
        tokens: &[Token<'_>],
        blank: bool,
        origin: &Name,
    ) -> Result<Option<Record>, String> {
        let mut rest = tokens;
        if !blank {
            let text = rest[0].text;
            let again = self.owner.is_some()
                && self.owner_generation == self.origin_generation
                && self.owner_text == text;
            if !again {
                self.owner = Some(self.name(text, origin)?);
                self.owner_text.clear();
                self.owner_text.push_str(text);
                self.owner_generation = self.origin_generation;
            }
            rest = &rest[1..];
        }
        let mut ttl = None;
        let mut rtype = None;
        while let Some((token, tail)) = rest.split_first() {
            rest = tail;
            let text = token.text;
            if text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                ttl = Some(parse_ttl(text).map_err(|e| format!("bad TTL `{text}`: {e}"))?);
            } else if text.eq_ignore_ascii_case("IN") {
                self.class = DNSClass::IN;
            } else if let Some(class) = class(text) {
                self.class = class;
            } else {
                rtype = Some(record_type(text)?);
                break;
            }
        }
        let Some(rtype) = rtype else {
            if tokens.len() == 1 && !blank {
                return Ok(None);
            }
            return Err("no record type: expected one after the owner, TTL and class".into());
        };
        let owner = self.owner.clone().ok_or_else(|| {
            "no owner name: a line that starts with blank space continues the previous record's \
             owner, and there is none"
                .to_string()
        })?;
        let ttl = match ttl {
            Some(ttl) => {
                self.last_ttl = Some(ttl);
                ttl
            }
            None => self.default_ttl.or(self.last_ttl).ok_or_else(|| {
                "no TTL: expected a $TTL directive or a TTL in the record".to_string()
            })?,
        };
        let rdata = self.rdata(rtype, rest, origin, ttl)?;
        let mut record = Record::from_rdata(owner, ttl, rdata);
        record.dns_class = self.class;
        Ok(Some(record))
    }

    fn rdata(
        &mut self,
        rtype: RecordType,
        tokens: &[Token<'_>],
        origin: &Name,
        ttl: u32,
    ) -> Result<RData, String> {
        Ok(match rtype {
            RecordType::A => {
                let [address] = fields(tokens, rtype, &["an IPv4 address"])?;
                RData::A(A(Ipv4Addr::from_str(address.text).map_err(|_| {
                    format!(
                        "bad IPv4 address `{}`: expected e.g. 192.0.2.1",
                        address.text
                    )
                })?))
            }
            RecordType::AAAA => {
                let [address] = fields(tokens, rtype, &["an IPv6 address"])?;
                RData::AAAA(AAAA(Ipv6Addr::from_str(address.text).map_err(|_| {
                    format!(
                        "bad IPv6 address `{}`: expected e.g. 2001:db8::1",
                        address.text
                    )
                })?))
            }
            RecordType::CNAME => {
                let [target] = fields(tokens, rtype, &["a target name"])?;
                RData::CNAME(CNAME(self.name(target.text, origin)?))
            }
            RecordType::NS => {
                let [host] = fields(tokens, rtype, &["a name server"])?;
                RData::NS(NS(self.name(host.text, origin)?))
            }
            RecordType::PTR => {
                let [target] = fields(tokens, rtype, &["a target name"])?;
                RData::PTR(PTR(self.name(target.text, origin)?))
            }
            RecordType::MX => {
                let [preference, exchange] =
                    fields(tokens, rtype, &["a preference", "an exchange"])?;
                RData::MX(MX::new(
                    number(preference.text, "preference")?,
                    self.name(exchange.text, origin)?,
                ))
            }
            RecordType::SRV => {
                let [priority, weight, port, target] = fields(
                    tokens,
                    rtype,
                    &["a priority", "a weight", "a port", "a target"],
                )?;
                RData::SRV(SRV::new(
                    number(priority.text, "priority")?,
                    number(weight.text, "weight")?,
                    number(port.text, "port")?,
                    self.name(target.text, origin)?,
                ))
            }
            RecordType::SOA => {
                let [mname, rname, serial, refresh, retry, expire, minimum] = fields(
                    tokens,
                    rtype,
                    &[
                        "a primary name server",
                        "a mailbox",
                        "a serial",
                        "a refresh",
                        "a retry",
                        "an expire",
                        "a minimum",
                    ],
                )?;
                let time = |token: &Token<'_>, what: &str| {
                    parse_ttl(token.text)
                        .map_err(|e| format!("bad SOA {what} `{}`: {e}", token.text))
                };
                let signed = |token: &Token<'_>, what: &str| {
                    i32::try_from(time(token, what)?)
                        .map_err(|_| format!("SOA {what} `{}` is too large", token.text))
                };
                RData::SOA(SOA::new(
                    self.name(mname.text, origin)?,
                    self.name(rname.text, origin)?,
                    time(serial, "serial")?,
                    signed(refresh, "refresh")?,
                    signed(retry, "retry")?,
                    signed(expire, "expire")?,
                    time(minimum, "minimum")?,
                ))
            }
            RecordType::TXT => {
                let strings = tokens
                    .iter()
                    .map(|token| {
                        let bytes = unescape(token.text)?;
                        if bytes.len() > 255 {
                            return Err(format!(
                                "a TXT string of {} bytes: expected at most 255 per string \
                                 (split it into several quoted strings)",
                                bytes.len()
                            ));
                        }
                        Ok(bytes)
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                RData::TXT(TXT::from_bytes(strings.iter().map(AsRef::as_ref).collect()))
            }
            _ => self.other_rdata(rtype, tokens, origin, ttl)?,
        })
    }

    /// Hands a record of a type not read here to hickory-proto's zone parser, on its own.
    fn other_rdata(
        &mut self,
        rtype: RecordType,
        tokens: &[Token<'_>],
        origin: &Name,
        ttl: u32,
    ) -> Result<RData, String> {
        let mut text = format!("@ {ttl} {} {rtype}", self.class);
        for token in tokens {
            text.push(' ');
            if token.quoted {
                text.push('"');
                text.push_str(token.text);
                text.push('"');
            } else {
                text.push_str(token.text);
            }
        }
        text.push('\n');
        let (_, rrsets) = Parser::new(text, None, Some(origin.clone()))
            .parse()
            .map_err(|e| e.to_string())?;
        rrsets
            .into_values()
            .flat_map(|set| set.into_iter())
            .map(|record| record.data)
            .next()
            .ok_or_else(|| format!("no {rtype} record data"))
    }

    /// `token` as an absolute name, kept as written: `@` is the origin, a name without a final
    /// dot lies below it.
    fn name(&mut self, token: &str, origin: &Name) -> Result<Name, String> {
        if token == "@" {
            return Ok(origin.clone());
        }
        let parse = |text: &str| {
            if text.is_ascii() {
                Name::from_ascii(text)
            } else {
                Name::from_utf8(text)
            }
        };
        let bad = |e: &dyn std::fmt::Display| format!("bad domain name `{token}`: {e}");
        let absolute = token
            .strip_suffix('.')
            .is_some_and(|head| head.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 0);
        if absolute {
            return parse(token).map_err(|e| bad(&e));
        }
        // Relative: the origin's labels are appended as they are, not parsed again.
        parse(token)
            .and_then(|name| name.append_domain(origin))
            .map_err(|e| bad(&e))
    }
}

/// Exactly `N` RDATA fields, or an error naming the missing or extra one.
fn fields<'a, 't, const N: usize>(
    tokens: &'a [Token<'t>],
    rtype: RecordType,
    names: &[&str; N],
) -> Result<&'a [Token<'t>; N], String> {
    if let Some(missing) = names.get(tokens.len()) {
        return Err(format!(
            "{rtype} record data ends early: expected {missing}"
        ));
    }
    tokens.try_into().map_err(|_| {
        format!(
            "unexpected `{}` after the {rtype} record data",
            tokens[N].text
        )
    })
}

fn number(text: &str, what: &str) -> Result<u16, String> {
    u16::from_str(text).map_err(|_| format!("bad {what} `{text}`: expected a number 0..65535"))
}

fn class(text: &str) -> Option<DNSClass> {
    ["CH", "HS", "NONE", "ANY", "CS"]
        .iter()
        .any(|c| text.eq_ignore_ascii_case(c))
        .then(|| DNSClass::from_str(&text.to_ascii_uppercase()).ok())
        .flatten()
}

fn record_type(text: &str) -> Result<RecordType, String> {
    const COMMON: [(&str, RecordType); 9] = [
        ("A", RecordType::A),
        ("AAAA", RecordType::AAAA),
        ("SRV", RecordType::SRV),
        ("TXT", RecordType::TXT),
        ("PTR", RecordType::PTR),
        ("CNAME", RecordType::CNAME),
        ("NS", RecordType::NS),
        ("MX", RecordType::MX),
        ("SOA", RecordType::SOA),
    ];
    if let Some((_, rtype)) = COMMON
        .iter()
        .find(|(word, _)| text.eq_ignore_ascii_case(word))
    {
        return Ok(*rtype);
    }
    RecordType::from_str(&text.to_ascii_uppercase()).map_err(|_| {
        format!("unknown record type or class `{text}`: expected a type such as A, SRV or TXT")
    })
}

/// The bytes a character-string token stands for: `\X` is X, `\DDD` the byte of decimal DDD
/// (RFC 1035 §5.1).
fn unescape(text: &str) -> Result<Cow<'_, [u8]>, String> {
    if !text.contains('\\') {
        return Ok(Cow::Borrowed(text.as_bytes()));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        if b != b'\\' {
            out.push(b);
            at += 1;
            continue;
        }
        let digits = bytes.get(at + 1..at + 4);
        if let Some(digits) = digits.filter(|d| d.iter().all(u8::is_ascii_digit)) {
            let value = digits
                .iter()
                .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
            let byte = u8::try_from(value)
                .map_err(|_| format!("bad escape `\\{value}`: expected \\000 to \\255"))?;
            out.push(byte);
            at += 4;
        } else if let Some(&next) = bytes.get(at + 1) {
            out.push(next);
            at += 2;
        } else {
            return Err("a `\\` at the end of a string: expected a character after it".into());
        }
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_ascii("z.test.").unwrap()
    }

    fn records(text: &str) -> Vec<String> {
        read(text, &origin(), "t.zone", None)
            .unwrap()
            .records
            .iter()
            .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
            .collect()
    }

    fn error(text: &str) -> String {
        let e = read(text, &origin(), "t.zone", None).unwrap_err();
        format!("{}:{}: {}", e.file, e.line.unwrap_or(0), e.message)
    }

    #[test]
    fn owners_ttls_and_classes_may_be_omitted_and_reordered() {
        assert_eq!(
            records("$TTL 60\nWww IN 30 A 192.0.2.1\n  A 192.0.2.2\n@ 1m IN TXT x\n"),
            [
                "Www.z.test. 30 A 192.0.2.1",
                "Www.z.test. 60 A 192.0.2.2",
                "z.test. 60 TXT x",
            ]
        );
    }

    #[test]
    fn without_ttl_directive_the_last_ttl_carries_on() {
        assert_eq!(
            records("a 40 A 192.0.2.1\nb A 192.0.2.2\n"),
            ["a.z.test. 40 A 192.0.2.1", "b.z.test. 40 A 192.0.2.2"]
        );
    }

    #[test]
    fn origin_directive_applies_to_later_relative_names() {
        assert_eq!(
            records("$TTL 5\n$ORIGIN Sub\nx CNAME y\n$ORIGIN other.test.\nz PTR @\n"),
            [
                "x.Sub.z.test. 5 CNAME y.Sub.z.test.",
                "z.other.test. 5 PTR other.test.",
            ]
        );
    }

    #[test]
    fn one_owner_text_under_another_origin_is_another_name() {
        assert_eq!(
            records("$TTL 5\n$ORIGIN a.z.test.\nw A 192.0.2.1\n$ORIGIN b.z.test.\nw A 192.0.2.2\n"),
            ["w.a.z.test. 5 A 192.0.2.1", "w.b.z.test. 5 A 192.0.2.2"]
        );
    }

    #[test]
    fn names_keep_their_written_case_and_escapes() {
        assert_eq!(
            records("$TTL 5\nPrinter\\.2._ipp._tcp SRV 0 0 631 Host-P\n"),
            ["Printer\\.2._ipp._tcp.z.test. 5 SRV 0 0 631 Host-P.z.test."]
        );
    }

    #[test]
    fn parentheses_join_lines_and_comments_end_at_the_line() {
        let text =
            "$TTL 5 ; default\n@ SOA ns host ( 7 ; serial\n 1h 10m\n 1w 30 )\nnext A 192.0.2.9\n";
        assert_eq!(
            records(text),
            [
                "z.test. 5 SOA ns.z.test. host.z.test. 7 3600 600 604800 30",
                "next.z.test. 5 A 192.0.2.9",
            ]
        );
    }

    #[test]
    fn txt_strings_are_quoted_unescaped_and_may_sit_in_parentheses() {
        let text = "$TTL 5\nt TXT ( \"a b\" \"q\\\"\\059\" plain\\032x )\n";
        let zone = read(text, &origin(), "t.zone", None).unwrap();
        let RData::TXT(txt) = &zone.records[0].data else {
            panic!("{:?}", zone.records[0]);
        };
        let strings: Vec<&[u8]> = txt.txt_data.iter().map(AsRef::as_ref).collect();
        assert_eq!(strings, [&b"a b"[..], b"q\";", b"plain x"]);
    }

    #[test]
    fn other_types_go_through_hickory() {
        assert_eq!(
            records("$TTL 5\nx CAA 0 issue \"ca.example\"\n"),
            ["x.z.test. 5 CAA 0 issue \"ca.example\""]
        );
    }

    #[test]
    fn errors_name_the_line_of_the_entry() {
        assert_eq!(
            error("$TTL 5\na A 192.0.2.1\nb SRV 0 0 ( 80\n\n)\n"),
            "t.zone:3: SRV record data ends early: expected a target"
        );
        assert_eq!(
            error("$TTL 5\na A 192.0.2.1 extra\n"),
            "t.zone:2: unexpected `extra` after the A record data"
        );
        assert_eq!(
            error("$TTL 5\na A 192.0.2.1\nb BOGUS x\n"),
            "t.zone:3: unknown record type or class `BOGUS`: expected a type such as A, SRV or TXT"
        );
        assert_eq!(
            error(" A 192.0.2.1\n"),
            "t.zone:1: no owner name: a line that starts with blank space continues the previous \
             record's owner, and there is none"
        );
        assert_eq!(
            error("a A 192.0.2.1\n"),
            "t.zone:1: no TTL: expected a $TTL directive or a TTL in the record"
        );
        assert_eq!(
            error("$TTL 5\n$GENERATE 1-2 a A 1.2.3.$\n"),
            "t.zone:2: unknown directive `$GENERATE`: expected $ORIGIN, $TTL or $INCLUDE"
        );
        let long = "x".repeat(256);
        assert!(
            error(&format!("$TTL 5\nt TXT \"{long}\"\n"))
                .starts_with("t.zone:2: a TXT string of 256 bytes"),
        );
    }

    #[test]
    fn unbalanced_input_is_an_error_at_the_line_it_opened() {
        assert_eq!(
            error("$TTL 5\na A 192.0.2.1\nb TXT ( \"x\"\nc A 192.0.2.2\n"),
            "t.zone:3: a `(` is never closed: expected a `)`"
        );
        assert_eq!(
            error("$TTL 5\nb TXT \"x\nc A 192.0.2.2\n"),
            "t.zone:2: a quoted string is never closed: expected a `\"`"
        );
        assert_eq!(
            error("$TTL 5\nb A 192.0.2.1 )\n"),
            "t.zone:2: a `)` without a `(` before it"
        );
        assert_eq!(
            error("$TTL 5\nb TXT x\u{7}\n"),
            "t.zone:2: a control character (0x07): expected text"
        );
    }

    #[test]
    fn a_huge_line_is_read_once() {
        let text = format!("$TTL 5\nt TXT {}\n", "\"abc\" ".repeat(200_000));
        let zone = read(&text, &origin(), "t.zone", None).unwrap();
        let RData::TXT(txt) = &zone.records[0].data else {
            panic!();
        };
        assert_eq!(txt.txt_data.len(), 200_000);
    }

    #[test]
    fn includes_are_read_relative_to_the_file_and_loops_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("z.test.zone");
        std::fs::write(
            dir.path().join("part"),
            "Inc A 192.0.2.7\n$ORIGIN elsewhere.test.\n",
        )
        .unwrap();
        let text = "$TTL 5\n$INCLUDE part sub\nafter A 192.0.2.8\n";
        let zone = read(text, &origin(), "z.test.zone", Some(&main)).unwrap();
        let owners: Vec<String> = zone.records.iter().map(|r| r.name.to_string()).collect();
        // The included file's $ORIGIN ends with it (RFC 1035 §5.1).
        assert_eq!(owners, ["Inc.sub.z.test.", "after.z.test."]);
        assert_eq!(zone.positions[0], Position { file: 1, line: 1 });
        assert_eq!(zone.files[1], dir.path().join("part").display().to_string());

        std::fs::write(dir.path().join("loop"), "$INCLUDE loop\n").unwrap();
        let e = read("$INCLUDE loop\n", &origin(), "z.test.zone", Some(&main)).unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("(a loop)"), "{}", e.message);
        assert_eq!(e.file, dir.path().join("loop").display().to_string());
    }
}
