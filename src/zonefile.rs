//! Zone files: `<zone>.zone` (RFC 1035 master file, origin = file name) → validated records.
//!
//! `zonefile/reader.rs` reads the text (names as written, each record with its file and line);
//! this module adds the origin from the file name and srvd's load-time rules (one SOA at the
//! apex, nothing outside the zone, no delegations, no CNAME beside other data, never `local.`
//! itself), each broken rule reported at the line of the record that breaks it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, Record, RecordType};

use crate::index::name_key::owned_key;

mod reader;

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
    let read = reader::read(text, &origin, source, path).map_err(|e| ZoneFileError {
        file: e.file,
        line: e.line,
        message: e.message,
    })?;
    if let Some((bad, message)) = first_violation(&origin, &read.records) {
        let at = read.positions[bad];
        return Err(ZoneFileError {
            file: read.files[at.file].clone(),
            line: Some(at.line),
            message,
        });
    }
    if !read
        .records
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
    Ok(ZoneFile {
        source: source.to_string(),
        origin,
        records: read.records,
    })
}

/// The index of the first record, in file order, that breaks a load-time rule, with the reason.
fn first_violation(origin: &Name, records: &[Record]) -> Option<(usize, String)> {
    // Which names hold a CNAME and which hold other data, only when some CNAME exists.
    let mut kinds: HashMap<Box<[u8]>, (bool, bool)> = HashMap::new();
    if records.iter().any(|r| r.record_type() == RecordType::CNAME) {
        for record in records {
            let kind = kinds.entry(owned_key(&record.name)).or_default();
            if record.record_type() == RecordType::CNAME {
                kind.0 = true;
            } else {
                kind.1 = true;
            }
        }
    }
    let mut soa_seen = false;
    for (index, record) in records.iter().enumerate() {
        let name = &record.name;
        if !origin.zone_of(name) {
            return Some((
                index,
                format!(
                    "{name} is outside the zone {origin}: expected names at or below the origin"
                ),
            ));
        }
        match record.record_type() {
            RecordType::NS if name != origin => {
                return Some((
                    index,
                    format!(
                        "NS at {name} would delegate a child zone; delegations are not supported (only NS at the apex {origin})"
                    ),
                ));
            }
            RecordType::SOA if name != origin => {
                return Some((
                    index,
                    format!("SOA at {name}: expected the only SOA at the apex {origin}"),
                ));
            }
            RecordType::SOA if soa_seen => {
                return Some((index, "a second SOA: expected exactly one".into()));
            }
            RecordType::SOA => soa_seen = true,
            RecordType::CNAME
                if kinds
                    .get(owned_key(name).as_ref())
                    .is_some_and(|&(_, other)| other) =>
            {
                return Some((
                    index,
                    format!(
                        "CNAME at {name} beside other records: a CNAME must be the only record at its name (RFC 1034 §3.6.2)"
                    ),
                ));
            }
            _ => {}
        }
    }
    None
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

    #[test]
    fn txt_strings_in_parentheses_keep_their_blanks_and_decimal_escapes() {
        let text = format!("{ZONE}t IN TXT ( \"a b\"\n  \"\\059x\" )\n");
        let zone = parse(&text, "example.test.", "t.zone", None).unwrap();
        let txt = zone
            .records
            .iter()
            .find_map(|r| match &r.data {
                hickory_proto::rr::RData::TXT(txt) => Some(txt),
                _ => None,
            })
            .unwrap();
        let strings: Vec<&[u8]> = txt.txt_data.iter().map(AsRef::as_ref).collect();
        assert_eq!(strings, [&b"a b"[..], b";x"]);
    }

    #[test]
    fn an_include_loop_is_refused_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("example.test.zone");
        let part = dir.path().join("part.inc");
        std::fs::write(&part, "; includes itself\n$INCLUDE part.inc\n").unwrap();
        let text = format!("{ZONE}$INCLUDE part.inc\n");
        let err = parse(&text, "example.test.", "t.zone", Some(&main)).unwrap_err();
        assert_eq!(
            (err.file.as_str(), err.line),
            (part.display().to_string().as_str(), Some(2)),
            "{err}"
        );
        assert!(err.message.contains("(a loop)"), "{err}");
    }
}
