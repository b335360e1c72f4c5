//! Restores the spelling of names as written in a zone file.
//!
//! hickory-proto's zone parser reads every name label that does not start with `_` as an IDNA
//! host name (UTS #46), which folds it to lower case: `Printer\.2._printer._tcp` comes back as
//! `printer\.2._printer._tcp`, and the PTR, SRV, CNAME, NS, MX and SOA names inside records the
//! same way. DNS is case-preserving (RFC 4343 §2) and a DNS-SD instance label is shown to users
//! as written (RFC 6763 §4.1), so the loader puts the written spelling back: it reads the names
//! in name positions of each entry itself (case-preserving, with RFC 1035 escapes), and replaces
//! every parsed name whose case-folded key equals a written one. The keys being equal, lookups
//! are unchanged; only what goes on the wire is.
//!
//! When one name is written in several spellings, the first in the file wins for every record
//! that uses it. Names in `$INCLUDE`d files keep hickory's spelling.

use std::collections::HashMap;
use std::str::FromStr;

use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::index::name_key::owned_key;

/// Every written name in a name position, by case-folded key; the first spelling wins.
pub(super) struct Spellings {
    by_key: HashMap<Box<[u8]>, Name>,
}

impl Spellings {
    /// Reads the names of the entries of `text`, each entry starting at one of `entry_offsets`.
    pub(super) fn read(text: &str, entry_offsets: &[usize], origin: &Name) -> Self {
        let mut spellings = Self {
            by_key: HashMap::new(),
        };
        let mut origin = origin.clone();
        for (i, &start) in entry_offsets.iter().enumerate() {
            let end = entry_offsets.get(i + 1).copied().unwrap_or(text.len());
            let entry = &text[start..end];
            let tokens = tokens(entry);
            let Some(first) = tokens.first() else {
                continue;
            };
            if first.eq_ignore_ascii_case("$ORIGIN") {
                if let Some(name) = tokens.get(1).and_then(|t| absolute(t, &origin)) {
                    origin = name;
                }
                continue;
            }
            if first.starts_with('$') {
                continue;
            }
            let mut rest = &tokens[..];
            // An entry that starts with blank space continues the previous owner.
            if !entry.starts_with([' ', '\t']) {
                spellings.add(first, &origin);
                rest = &tokens[1..];
            }
            let Some(type_at) = rest.iter().position(|t| is_type(t)) else {
                continue;
            };
            let rdata = &rest[type_at + 1..];
            let positions: &[usize] = match RecordType::from_str(&rest[type_at].to_uppercase()) {
                Ok(RecordType::CNAME | RecordType::NS | RecordType::PTR) => &[0],
                Ok(RecordType::MX) => &[1],
                Ok(RecordType::SRV) => &[3],
                Ok(RecordType::SOA) => &[0, 1],
                _ => &[],
            };
            for &at in positions {
                if let Some(token) = rdata.get(at) {
                    spellings.add(token, &origin);
                }
            }
        }
        spellings
    }

    fn add(&mut self, token: &str, origin: &Name) {
        if let Some(name) = absolute(token, origin) {
            self.by_key.entry(owned_key(&name)).or_insert(name);
        }
    }

    /// Puts the written spelling back into the owner and the names inside `record`.
    pub(super) fn restore(&self, record: &mut Record) {
        self.respell(&mut record.name);
        match &mut record.data {
            RData::PTR(ptr) => self.respell(&mut ptr.0),
            RData::CNAME(cname) => self.respell(&mut cname.0),
            RData::NS(ns) => self.respell(&mut ns.0),
            RData::MX(mx) => self.respell(&mut mx.exchange),
            RData::SRV(srv) => self.respell(&mut srv.target),
            RData::SOA(soa) => {
                self.respell(&mut soa.mname);
                self.respell(&mut soa.rname);
            }
            _ => {}
        }
    }

    fn respell(&self, name: &mut Name) {
        if let Some(written) = self.by_key.get(owned_key(name).as_ref()) {
            written.clone_into(name);
        }
    }
}

/// Whether a token names a record type (and so is neither a TTL nor a class).
fn is_type(token: &str) -> bool {
    !token.eq_ignore_ascii_case("IN")
        && !token.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && RecordType::from_str(&token.to_uppercase()).is_ok()
}

/// `token` as an absolute name: `@` is the origin, a name without a final dot is below it.
fn absolute(token: &str, origin: &Name) -> Option<Name> {
    if token == "@" {
        return Some(origin.clone());
    }
    let name = Name::from_ascii(token).ok()?;
    if name.is_fqdn() {
        Some(name)
    } else {
        name.append_domain(origin).ok()
    }
}

/// The blank-separated tokens of one entry, without comments, parentheses and quoted strings
/// (which never hold names); escapes stay part of their token.
fn tokens(entry: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut escaped = false;
    let mut in_quote = false;
    let mut in_comment = false;
    for (at, ch) in entry.char_indices() {
        if in_comment {
            in_comment = ch != '\n';
            continue;
        }
        if escaped {
            escaped = false;
            continue;
        }
        if in_quote {
            match ch {
                '\\' => escaped = true,
                '"' => in_quote = false,
                _ => {}
            }
            continue;
        }
        let ends_token = matches!(ch, ';' | '"' | '(' | ')') || ch.is_whitespace();
        if ends_token {
            if let Some(s) = start.take() {
                out.push(&entry[s..at]);
            }
            match ch {
                ';' => in_comment = true,
                '"' => in_quote = true,
                _ => {}
            }
        } else {
            if start.is_none() {
                start = Some(at);
            }
            escaped = ch == '\\';
        }
    }
    if let Some(s) = start {
        out.push(&entry[s..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_skip_comments_quotes_and_parentheses_and_keep_escapes() {
        assert_eq!(
            tokens("A\\.b IN TXT \"x y\" ( 1\n 2 ) ; c d\n"),
            ["A\\.b", "IN", "TXT", "1", "2"]
        );
    }

    #[test]
    fn only_names_in_name_positions_are_read() {
        let origin = Name::from_ascii("z.test.").unwrap();
        let text = "Srv 60 IN SRV 0 0 1 Host.z.test.\n TXT \"Mx\"\n";
        let spellings = Spellings::read(text, &[0, text.find(" TXT").unwrap()], &origin);
        let mut written: Vec<String> = spellings.by_key.values().map(Name::to_ascii).collect();
        written.sort();
        assert_eq!(written, ["Host.z.test.", "Srv.z.test."]);
    }
}
