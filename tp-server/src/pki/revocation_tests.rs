use super::*;
use crate::pki::{Ca, LeafSpec, Validity};
use std::time::{Duration, SystemTime};

fn leaf_with_serial(serial: &[u8]) -> crate::pki::Issued {
    let v = Validity::for_ttl(SystemTime::now(), Duration::from_secs(3_600));
    let ca = Ca::generate(
        "rl test CA",
        Validity::for_ttl(SystemTime::now(), Duration::from_secs(86_400)),
    )
    .unwrap();
    let mut spec = LeafSpec::client("alice@corp", v);
    spec.serial = Some(serial.to_vec());
    ca.issue(&spec).unwrap()
}

#[test]
fn serial_forms_all_match() {
    // Top bit set: DER stores 00 c3 5a ..., canonical form drops the 00.
    let leaf = leaf_with_serial(&[0xc3, 0x5a, 0x01]);
    assert_eq!(leaf.serial_hex, "c35a01");
    assert_eq!(serial_hex(&leaf.cert_der).unwrap(), "c35a01");
    for form in [
        "c35a01",
        "C35A01",
        "c3:5a:01",
        "C3:5A:01",
        "00c35a01",
        "00:C3:5A:01",
        "000c35a01",
        "serial=C35A01",
        "  c35a01   # inline comment",
    ] {
        let list = RevocationList::parse(form).unwrap();
        assert_eq!(list.len(), 1, "{form}");
        assert!(list.is_revoked(&leaf.cert_der), "{form}");
    }
    let other = RevocationList::parse("c35a02").unwrap();
    assert!(!other.is_revoked(&leaf.cert_der));
    assert!(
        RevocationList::parse("c35a01")
            .unwrap()
            .contains_serial("00:C3:5A:01")
    );
    assert_eq!(canonical_serial("00:AB:cd").unwrap(), "abcd");
    assert_eq!(canonical_serial("abc").unwrap(), "0abc");
    assert!(canonical_serial("xyz").is_err());
}

#[test]
fn fingerprints_match_exactly() {
    let leaf = leaf_with_serial(&[0x42]);
    let fp = sha256_fingerprint(&leaf.cert_der);
    assert_eq!(fp.len(), 64);
    let colons: Vec<String> = fp
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8(c.to_vec()).unwrap().to_uppercase())
        .collect();
    for form in [
        format!("sha256:{fp}"),
        format!("SHA256:{}", fp.to_uppercase()),
        format!("sha256 Fingerprint={}", colons.join(":")),
    ] {
        let list = RevocationList::parse(&form).unwrap();
        assert!(list.is_revoked(&leaf.cert_der), "{form}");
        assert!(!list.contains_serial("42"));
    }
    let again = leaf_with_serial(&[0x42]);
    let list = RevocationList::parse(&format!("sha256:{fp}")).unwrap();
    assert!(!list.is_revoked(&again.cert_der), "same serial, other cert");
    assert!(!list.is_revoked(b"not a certificate"));
}

#[test]
fn comments_blanks_and_counts() {
    let text = "# header\n\n   \n01\n0x\n"; // "0x" is not hex
    let e = RevocationList::parse(text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "revocation list:5: not a hex serial or sha256:<fingerprint>: \"0x\""
    );

    let list = RevocationList::parse("# only\n\n01\n1\n00:01 # dup\nab\n").unwrap();
    assert_eq!(list.len(), 2);
    assert!(!list.is_empty());
    assert!(RevocationList::parse("").unwrap().is_empty());
    assert!(RevocationList::parse("# nothing\n\r\n").unwrap().is_empty());
}

#[test]
fn bad_lines_carry_line_numbers() {
    let cases = [
        ("01\nzz\n", 2, "not a hex serial"),
        ("\n\n\nsha256:abcd\n", 4, "64 hex digits"),
        ("sha256:\n", 1, "expected hex digits"),
        ("01 02\n", 1, "not a hex serial"),
        (":\n", 1, "expected hex digits"),
        (&format!("{}\n", "11".repeat(21)), 1, "at most 20 bytes"),
    ];
    for (text, line, reason) in cases {
        let e = RevocationList::parse(text).unwrap_err();
        match &e {
            PkiError::RevocationEntry {
                line: l, reason: r, ..
            } => {
                assert_eq!(*l, line, "{text:?}: {e}");
                assert!(r.contains(reason), "{text:?}: {e}");
            }
            other => panic!("{text:?}: {other}"),
        }
    }
    // 20 bytes with leading zeros is fine.
    RevocationList::parse(&format!("0000{}", "11".repeat(20))).unwrap();
}

#[test]
fn load_names_the_file_and_append_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("revoked.txt");
    append_revocation(&path, "AB:CD", Some("revoked for a test\nsecond line")).unwrap();
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap() + "ef").unwrap(); // no newline
    append_revocation(&path, "0123", None).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        "# revoked for a test\n# second line\nAB:CD\nef\n0123\n"
    );
    let list = RevocationList::load(&path).unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.contains_serial("abcd") && list.contains_serial("123"));

    assert!(append_revocation(&path, "nope", None).is_err());
    std::fs::write(&path, "01\nbag\n").unwrap();
    let e = RevocationList::load(&path).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2: ", path.display())),
        "{e}"
    );
}
