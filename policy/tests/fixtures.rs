//! One broken policy per rule of the file format, under `tests/fixtures/`. Each file's
//! first line is `# expect: <error>`: the exact `PolicyError` text, whose origin is the
//! file name.

use std::fs;
use std::path::Path;

use policy::Policy;

#[test]
fn every_broken_fixture_fails_with_its_expected_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut checked = 0;
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut failures = Vec::new();
    for path in entries {
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: first line must be `# expect: ...`"));
        match Policy::from_toml(&text, name) {
            Ok(_) => failures.push(format!("{name}: parsed, expected {expected}")),
            Err(e) if e.to_string() != expected => {
                failures.push(format!("{name}:\n  expected {expected}\n  got      {e}"))
            }
            Err(_) => {}
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} fixtures");
}
