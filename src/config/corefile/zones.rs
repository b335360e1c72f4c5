//! Server block keys and zone arguments: `service.local:1053`, `dns://.:53`, `10.0.0.0/24`.
//!
//! As CoreDNS's `SplitHostPort` (`plugin/normalize.go`): a trailing `:NUMBER` is the port; a
//! CIDR becomes the reverse zones that cover it, split on label boundaries (8 bits for IPv4,
//! 4 for IPv6), so `10.0.0.0/22` is four `/24` zones; anything else is a domain name, made
//! lower-case and absolute. The transports are CoreDNS's `dns://` (the default), `tls://`
//! (DNS over TLS) and `https://` (DNS over HTTPS).

use std::net::IpAddr;

use hickory_proto::rr::Name;

use crate::server::tls::Encrypted;

/// The transport of a key: `None` for plain DNS (`dns://` or no scheme). Only meaningful for a
/// key [`key`] accepts.
pub fn transport(text: &str) -> Option<Encrypted> {
    match text.split_once("://") {
        Some(("tls", _)) => Some(Encrypted::Tls),
        Some(("https", _)) => Some(Encrypted::Https),
        _ => None,
    }
}

/// The zones and optional port of a key.
///
/// # Errors
/// What is wrong with the key, and what was expected.
pub fn key(text: &str) -> Result<(Vec<Name>, Option<u16>), String> {
    let rest = match text.split_once("://") {
        None => text,
        Some(("dns" | "tls" | "https", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{text:?}: {scheme}:// server blocks are not supported (expected a plain, dns://, tls:// or https:// zone such as service.local:1053)"
            ));
        }
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((_, "")) => return Err(format!("{text:?}: expecting data after last colon")),
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("{text:?}: port {port} is not 0..=65535"))?;
            (host, Some(port))
        }
        _ => (rest, None),
    };
    if host.is_empty() {
        return Err(format!(
            "{text:?}: expected a zone before the port (`.` for the root)"
        ));
    }
    if let Some(zones) = reverse_zones(host)? {
        return Ok((zones, port));
    }
    let zone = super::super::parse_zone(host)?;
    Ok((vec![zone], port))
}

/// The reverse zones of `text` if it is a CIDR (`None` otherwise).
fn reverse_zones(text: &str) -> Result<Option<Vec<Name>>, String> {
    let Some((ip, bits)) = text.split_once('/') else {
        return Ok(None);
    };
    let (Ok(ip), Ok(bits)) = (ip.parse::<IpAddr>(), bits.parse::<u8>()) else {
        return Ok(None);
    };
    let (width, digit) = match ip {
        IpAddr::V4(_) => (32u8, 8u8),
        IpAddr::V6(_) => (128u8, 4u8),
    };
    if bits > width {
        return Err(format!(
            "{text:?}: a /{bits} mask is longer than the address"
        ));
    }
    let value: u128 = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let host_bits = width - bits;
    let network = if host_bits >= 128 {
        0
    } else {
        value >> host_bits << host_bits
    };
    // Round the mask up to a label boundary; each subnet of that size is one zone.
    let rounded = bits.div_ceil(digit) * digit;
    let count = 1u128 << (rounded - bits);
    let step_bits = width - rounded;
    let mut zones = Vec::new();
    for i in 0..count {
        let start = network + (i << step_bits);
        let labels = usize::from(rounded / digit);
        let mut name = String::new();
        for l in (0..labels).rev() {
            let shift = width - digit * (l as u8 + 1);
            let part = (start >> shift) & ((1u128 << digit) - 1);
            if digit == 8 {
                name.push_str(&format!("{part}."));
            } else {
                name.push_str(&format!("{part:x}."));
            }
        }
        name.push_str(if digit == 8 {
            "in-addr.arpa."
        } else {
            "ip6.arpa."
        });
        zones.push(Name::from_ascii(&name).map_err(|e| format!("{text:?}: {e}"))?);
    }
    Ok(Some(zones))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(text: &str) -> (Vec<String>, Option<u16>) {
        let (names, port) = key(text).unwrap();
        (names.iter().map(ToString::to_string).collect(), port)
    }

    #[test]
    fn keys_with_and_without_ports() {
        assert_eq!(
            zones("service.local:1053"),
            (vec!["service.local.".into()], Some(1053))
        );
        assert_eq!(
            zones("Service.Local"),
            (vec!["service.local.".into()], None)
        );
        assert_eq!(zones("dns://.:53"), (vec![".".into()], Some(53)));
        assert_eq!(zones("."), (vec![".".into()], None));
    }

    #[test]
    fn cidrs_become_reverse_zones_split_on_label_boundaries() {
        assert_eq!(zones("10.0.0.0/24").0, ["0.0.10.in-addr.arpa."]);
        assert_eq!(
            zones("10.0.0.0/8:1053"),
            (vec!["10.in-addr.arpa.".into()], Some(1053))
        );
        assert_eq!(
            zones("10.0.0.0/22").0,
            [
                "0.0.10.in-addr.arpa.",
                "1.0.10.in-addr.arpa.",
                "2.0.10.in-addr.arpa.",
                "3.0.10.in-addr.arpa."
            ]
        );
        assert_eq!(
            zones("10.1.2.3/16").0,
            ["1.10.in-addr.arpa."],
            "host bits dropped"
        );
        assert_eq!(zones("fd00::/8").0, ["d.f.ip6.arpa."]);
        assert_eq!(zones("fd00::/7").0, ["c.f.ip6.arpa.", "d.f.ip6.arpa."]);
    }

    #[test]
    fn bad_keys_say_what_was_expected() {
        for (text, want) in [
            (
                "service.local:",
                "\"service.local:\": expecting data after last colon",
            ),
            (
                ":53",
                "\":53\": expected a zone before the port (`.` for the root)",
            ),
            (
                "grpc://service.local:443",
                "\"grpc://service.local:443\": grpc:// server blocks are not supported (expected a plain, dns://, tls:// or https:// zone such as service.local:1053)",
            ),
            ("a:99999", "\"a:99999\": port 99999 is not 0..=65535"),
            (
                "10.0.0.0/33",
                "\"10.0.0.0/33\": a /33 mask is longer than the address",
            ),
        ] {
            assert_eq!(key(text).unwrap_err(), want);
        }
        assert!(key("local").unwrap_err().contains("mDNS"));
    }

    #[test]
    fn tls_and_https_keys_name_their_transport() {
        assert_eq!(
            key("tls://service.local:853"),
            Ok((vec!["service.local.".parse().unwrap()], Some(853)))
        );
        assert_eq!(transport("tls://service.local:853"), Some(Encrypted::Tls));
        assert_eq!(transport("https://service.local"), Some(Encrypted::Https));
        assert_eq!(transport("dns://service.local"), None);
        assert_eq!(transport("service.local"), None);
    }
}
