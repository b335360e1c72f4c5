//! Zone files: `<zone>.zone` (RFC 1035 master file, origin = file name) → validated records.
//!
//! hickory-proto's parser reads the text; this module adds what it does not: the origin from the
//! file name, srvd's load-time rules (one SOA at the apex, nothing outside the zone, no
//! delegations, no CNAME beside other data, never `local.` itself), and error messages that
//! name the file and line. The parser reports no positions, so a failing entry is found by
//! parsing growing prefixes of the file (binary search over entry boundaries): errors are rare,
//! loads are fast, and the happy path parses once. The parser also folds most names to lower
//! case; `zonefile/spelling.rs` puts the written spelling back.

use std::fmt;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

mod spelling;

/// The example zone shipped in `zones/` and compiled in, served when no zone directory exists.
pub const EMBEDDED_ZONE: &str = include_str!("../zones/service.local.zone");
/// The origin of [`EMBEDDED_ZONE`].
pub const EMBEDDED_ORIGIN: &str = "service.local.";
const EMBEDDED_SOURCE: &str = "<embedded>/service.local.zone";

/// A zone file that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ZoneFileError {
    /// The file, as given (or `<embedded>/…`).
    pub file: String,
    /// 1-based line of the offending entry, when one entry is to blame.
    pub line: Option<usize>,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl fmt::Display for ZoneFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The validated contents of one zone file.
#[derive(Debug, Clone)]
pub struct ZoneFile {
    /// Where it came from.
    pub source: String,
    /// The zone apex.
    pub origin: Name,
    /// Every record, all at or below `origin`.
    pub records: Vec<Record>,
}

/// Loads every `*.zone` file in `dir`, sorted by file name.
///
/// # Errors
/// The directory cannot be read, holds no zone file, or a file fails to load.
pub fn load_dir(dir: &Path) -> Result<Vec<ZoneFile>, ZoneFileError> {
    let dir_error = |message: String| ZoneFileError {
        file: dir.display().to_string(),
        line: None,
        message,
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| dir_error(format!("cannot read the zones directory: {e}")))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "zone") && path.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(dir_error(
            "no zone files: expected at least one <zone>.zone file (e.g. service.local.zone)"
                .into(),
        ));
    }
    paths.iter().map(|path| load_file(path)).collect()
}

/// Loads one zone file; its origin is its file name without `.zone`.
///
/// # Errors
/// The file cannot be read or fails to parse or validate.
pub fn load_file(path: &Path) -> Result<ZoneFile, ZoneFileError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ZoneFileError {
        file: source.clone(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    parse(&text, &format!("{stem}."), &source, Some(path))
}

/// Loads one zone file for the zone `origin`, whatever its file name (CoreDNS's `file DBFILE
/// ZONE`).
///
/// # Errors
/// The file cannot be read or fails to parse or validate.
pub fn load_file_for(path: &Path, origin: &Name) -> Result<ZoneFile, ZoneFileError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ZoneFileError {
        file: source.clone(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(&text, &origin.to_ascii(), &source, Some(path))
}

/// The compiled-in example zone.
///
/// # Errors
/// Never in a released binary: a test parses it.
pub fn embedded() -> Result<ZoneFile, ZoneFileError> {
    parse(EMBEDDED_ZONE, EMBEDDED_ORIGIN, EMBEDDED_SOURCE, None)
}

/// Parses and validates zone text whose origin is `origin`.
///
/// # Errors
/// A syntax error or a broken load-time rule, with the line of the entry at fault.
pub fn parse(
    text: &str,
    origin: &str,
    source: &str,
    path: Option<&Path>,
) -> Result<ZoneFile, ZoneFileError> {
    let error = |line: Option<usize>, message: String| ZoneFileError {
        file: source.to_string(),
        line,
        message,
    };
    let origin = Name::from_ascii(origin)
        .map_err(|e| error(None, format!("file name is not a zone name ({e})")))?;
    if origin == Name::from_ascii("local.").unwrap_or_default() {
        return Err(error(
            None,
            "refusing to be authoritative for `local.` itself: it belongs to mDNS (RFC 6762) and \
             an SOA for it changes how nss-mdns resolves every .local name; serve a zone below it, \
             such as service.local"
                .into(),
        ));
    }
    let entries = entry_starts(text);
    let records = match parse_records(text, &origin, path) {
        Ok(records) => records,
        Err(message) => {
            let line = locate(text, &entries, |prefix| {
                parse_records(prefix, &origin, path).is_err()
            });
            return Err(error(line, message));
        }
    };
    if let Some((bad, message)) = first_violation(&origin, &records) {
        let line = locate(text, &entries, |prefix| {
            parse_records(prefix, &origin, path).is_ok_and(|rs| rs.iter().any(|r| same(r, bad)))
        });
        return Err(error(line, message));
    }
    if !records
        .iter()
        .any(|r| r.record_type() == RecordType::SOA && r.name == origin)
    {
        return Err(error(
            None,
            format!(
                "no SOA record at the apex {origin}: expected one, e.g. `@ IN SOA ns1 hostmaster 1 3600 600 86400 30`"
            ),
        ));
    }
    let offsets: Vec<usize> = entries.iter().map(|entry| entry.offset).collect();
    let spellings = spelling::Spellings::read(text, &offsets, &origin);
    let mut records = records;
    for record in &mut records {
        spellings.restore(record);
    }
    Ok(ZoneFile {
        source: source.to_string(),
        origin,
        records,
    })
}

fn parse_records(text: &str, origin: &Name, path: Option<&Path>) -> Result<Vec<Record>, String> {
    let parser = Parser::new(text, path.map(Path::to_path_buf), Some(origin.clone()));
    let (_, rrsets) = parser.parse().map_err(|e| e.to_string())?;
    Ok(rrsets
        .values()
        .flat_map(|rrset| rrset.records_without_rrsigs().cloned())
        .collect())
}

fn same(a: &Record, b: &Record) -> bool {
    a.name == b.name && a.record_type() == b.record_type() && a.data == b.data
}

/// The first record that breaks a load-time rule, with the reason.
fn first_violation<'r>(origin: &Name, records: &'r [Record]) -> Option<(&'r Record, String)> {
    for record in records {
        let name = &record.name;
        if !origin.zone_of(name) {
            return Some((
                record,
                format!(
                    "{name} is outside the zone {origin}: expected names at or below the origin"
                ),
            ));
        }
        match record.record_type() {
            RecordType::NS if name != origin => {
                return Some((
                    record,
                    format!(
                        "NS at {name} would delegate a child zone; delegations are not supported (only NS at the apex {origin})"
                    ),
                ));
            }
            RecordType::SOA if name != origin => {
                return Some((
                    record,
                    format!("SOA at {name}: expected the only SOA at the apex {origin}"),
                ));
            }
            RecordType::CNAME
                if records.iter().any(|other| {
                    other.name == *name && other.record_type() != RecordType::CNAME
                }) =>
            {
                return Some((
                    record,
                    format!(
                        "CNAME at {name} beside other records: a CNAME must be the only record at its name (RFC 1034 §3.6.2)"
                    ),
                ));
            }
            _ => {}
        }
    }
    let soas = records
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .count();
    if soas > 1 {
        let second = records
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .nth(1)?;
        return Some((second, "a second SOA: expected exactly one".into()));
    }
    None
}

/// An entry: the 1-based line it starts on and the byte offset of that line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    line: usize,
    offset: usize,
}

/// Where each entry (a record or a `$` directive, parentheses joining lines) starts.
fn entry_starts(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut depth = 0usize;
    let mut in_quote = false;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let mut has_content = false;
        let mut escaped = false;
        let depth_at_start = depth;
        for ch in line.chars() {
            if escaped {
                escaped = false;
                has_content = true;
                continue;
            }
            match ch {
                '\\' => escaped = true,
                '"' => in_quote = !in_quote,
                ';' if !in_quote => break,
                '(' if !in_quote => depth += 1,
                ')' if !in_quote => depth = depth.saturating_sub(1),
                _ => {}
            }
            if !ch.is_whitespace() {
                has_content = true;
            }
        }
        if depth_at_start == 0 && has_content {
            entries.push(Entry {
                line: index + 1,
                offset,
            });
        }
        offset += line.len();
    }
    entries
}

/// The line of the first entry `k` such that `is_bad(prefix through entry k)` holds, assuming
/// badness is monotonic in the prefix.
fn locate(text: &str, entries: &[Entry], is_bad: impl Fn(&str) -> bool) -> Option<usize> {
    let prefix = |k: usize| -> &str {
        match entries.get(k + 1) {
            Some(next) => &text[..next.offset],
            None => text,
        }
    };
    let (mut lo, mut hi) = (0, entries.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if is_bad(prefix(mid)) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    entries.get(lo).map(|entry| entry.line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "$ORIGIN example.test.\n$TTL 60\n@ IN SOA ns hostmaster ( 1 3600\n  600 86400 30 )\n@ IN NS ns\nns IN A 10.0.0.1\n";

    #[test]
    fn embedded_zone_parses() {
        let zone = embedded().unwrap();
        assert_eq!(zone.origin, Name::from_ascii(EMBEDDED_ORIGIN).unwrap());
        assert!(zone.records.len() > 10);
    }

    #[test]
    fn entries_join_parenthesised_lines_and_skip_comments() {
        let starts: Vec<usize> = entry_starts(ZONE).iter().map(|e| e.line).collect();
        assert_eq!(starts, vec![1, 2, 3, 5, 6]);
    }

    #[test]
    fn syntax_error_names_its_line() {
        let text = format!("{ZONE}www IN A 10.0.0.300\nok IN A 10.0.0.2\n");
        let err = parse(&text, "example.test.", "t.zone", None).unwrap_err();
        assert_eq!(err.line, Some(7), "{err}");
        assert!(err.to_string().starts_with("t.zone:7: "), "{err}");
    }

    #[test]
    fn delegation_is_rejected_with_its_line() {
        let text = format!("{ZONE}; comment\nsub IN NS ns.sub\n");
        let err = parse(&text, "example.test.", "t.zone", None).unwrap_err();
        assert_eq!(err.line, Some(8), "{err}");
        assert!(err.message.contains("delegat"), "{err}");
    }

    #[test]
    fn missing_soa_and_local_zone_are_rejected() {
        let err = parse(
            "$TTL 60\na IN A 10.0.0.1\n",
            "example.test.",
            "t.zone",
            None,
        )
        .unwrap_err();
        assert!(err.message.contains("no SOA"), "{err}");
        let err = parse(ZONE, "local.", "local.zone", None).unwrap_err();
        assert!(err.message.contains("mDNS"), "{err}");
    }

    #[test]
    fn cname_beside_other_data_is_rejected() {
        let text = format!("{ZONE}www IN CNAME ns\nwww IN TXT \"x\"\n");
        let err = parse(&text, "example.test.", "t.zone", None).unwrap_err();
        assert_eq!(err.line, Some(7), "{err}");
    }
}
